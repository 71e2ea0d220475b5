import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// Every outcome of every stage, in-process against real PostgreSQL with a scripted network.
/// The end-to-end suite proves the same paths against the real EVM; this one reaches each branch
/// in milliseconds and looks at every row it writes.
@Suite("Stage machine in-process")
struct StageMachineTests {
    // MARK: create

    @Test func createStoresTheTransactionBeforeSendingItAndAdvancesWhenMined() throws {
        let h = try StageHarness()
        let id = try h.submit()
        let url = h.database.url
        let storedAtSend = Flag()
        h.network.script { state in
            state.onSend = { raw in
                // The bytes the node gets are already in PostgreSQL (another connection sees them).
                let hash = keccak256(raw).hex
                let rows = (try? PostgresConnection(url: url).query("SELECT 1 FROM crynux.job_transactions WHERE tx_hash = $1", [hash])) ?? []
                storedAtSend.set(rows.count == 1)
            }
        }
        var job = try h.runOnce(id)
        #expect(storedAtSend.value)
        #expect(job.stage == .create && job.status == .pending)
        let txs = try h.transactions(id)
        #expect(txs.count == 1 && txs[0].nonce == 0 && txs[0].purpose == .createTask)
        #expect(h.network.sent == [txs[0].raw])
        #expect(job.txNonce == 0 && job.txHash == txs[0].hash && job.walletAddress == h.wallet.address)
        #expect(job.cap == 2 && job.taskHash == TaskArguments.taskHash(PipelineHarness.sdArgs(images: 2)))
        #expect(job.feeWei == h.config.feePerResultWei * 2)
        #expect(try h.walletNonce() == 1)
        #expect(try h.sendCount(txs[0].hash) == 1)
        // Not mined yet: the first stage run asked for no receipt before sending.
        #expect(h.network.calls("receipt") == 1)

        h.network.mine(txs[0].hash, block: 9, taskId: 77)
        job = try h.runOnce(id)
        #expect(job.stage == .upload && job.taskId == 77 && job.txBlockNumber == 9 && job.txMinedAt != nil)
        #expect(try h.details(id).contains { $0.hasPrefix("task 77 created in block 9") })
        #expect(h.network.sent.count == 1)
    }

    @Test func invalidArgumentsFailBeforeAnythingIsSigned() throws {
        let h = try StageHarness()
        let id = try h.submit(#"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"x","task_config":{"num_images":12}}"#)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.retryStage == .create)
        #expect(job.lastError?.contains("num_images") == true)
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty && h.network.calls("estimateGas") == 0)
        #expect(try h.walletNonce() == 0)
    }

    @Test func aCreateThatWouldRevertIsRefusedUnsigned() throws {
        let h = try StageHarness()
        h.network.script { $0.estimate = .reverts("Invalid task type") }
        let id = try h.submit()
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "createTask would revert (Invalid task type); no transaction was sent")
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
        #expect(try h.walletNonce() == 0)
    }

    @Test func aCancelBeforeSigningCancelsWithoutATransaction() throws {
        let h = try StageHarness()
        let id = try h.submit()
        #expect(try JobStore.cancel(h.db, id: id) == .cancelled)
        #expect(try h.runOnce(id).status == .cancelled)
        #expect(h.network.calls("estimateGas") == 0 && h.network.sent.isEmpty)
    }

    @Test func aRevertedCreateFailsWithTheReplayedReasonAndMayBeCreatedAgain() throws {
        let h = try StageHarness()
        let id = try h.submit()
        try h.runOnce(id)
        let tx = try h.transactions(id)[0]
        h.network.mine(tx.hash, succeeded: false)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.retryStage == .create)
        #expect(job.lastError == "createTask reverted: Invalid task type")
        // Out of gas is named as such, not replayed.
        let other = try h.submit(PipelineHarness.sdArgs(images: 1))
        try h.runOnce(other)
        let otherTx = try #require(try h.transactions(other).first)
        h.network.mine(otherTx.hash, succeeded: false, gasUsed: otherTx.gasLimit)
        #expect(try h.runOnce(other).lastError == "createTask reverted: out of gas (all \(otherTx.gasLimit) gas used)")
    }

    @Test func aCreateMinedWithoutATaskFailsAndIsNotRetriedFromPoll() throws {
        let h = try StageHarness()
        let id = try h.submit()
        try h.runOnce(id)
        h.network.mine(try h.transactions(id)[0].hash)  // no TaskPending
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.taskId == nil && job.retryStage == .poll)
        #expect(job.lastError?.contains("no event of the Task contract names its task") == true)
        guard case .refused(let reason) = try JobStore.retry(h.db, id: id) else {
            Issue.record("retry of a job without a task id was not refused")
            return
        }
        #expect(reason.contains("no task id"))
        #expect(try h.job(id).status == .failed)
    }

    @Test func anUnminedCreateIsSentAgainOnlyAfterTheRebroadcastDelay() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 10; $0.replaceAfter = 3600 }
        let id = try h.submit()
        try h.runOnce(id)
        let tx = try h.transactions(id)[0]
        #expect(try h.runOnce(id).stage == .create)
        #expect(h.network.sent.count == 1)
        try h.age(id, seconds: 11)
        try h.runOnce(id)
        #expect(h.network.sent == [tx.raw, tx.raw])
        #expect(try h.transactions(id).count == 1 && (h.sendCount(tx.hash)) == 2)
    }

    @Test func aDroppedCreateIsReplacedWithTheSameNonceAndEitherMayLand() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 1; $0.replaceAfter = 5 }
        let id = try h.submit()
        try h.runOnce(id)
        let first = try h.transactions(id)[0]
        try h.age(id, seconds: 6)
        var job = try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.count == 2 && txs[1].nonce == first.nonce && txs[1].gasPrice > first.gasPrice)
        #expect(h.network.sent.last == txs[1].raw)
        #expect(try h.walletNonce() == 1)
        #expect(try h.details(id).contains { $0.contains("replaced at gas price") })
        h.network.mine(txs[1].hash, taskId: 5)
        job = try h.runOnce(id)
        #expect(job.stage == .upload && job.taskId == 5 && job.txHash == txs[1].hash)
    }

    @Test func nonceTooLowWithOurReceiptIsMined() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0 }
        let id = try h.submit()
        try h.runOnce(id)
        let tx = try h.transactions(id)[0]
        // The receipt shows up only after the node says the nonce is used.
        h.network.script { $0.sendVerdicts = [.nonceTooLow] }
        h.network.script { state in
            state.onSend = { [network = h.network] _ in network.mine(tx.hash, taskId: 8) }
        }
        #expect(try h.runOnce(id).taskId == 8)
    }

    @Test func nonceTooLowWithoutOurReceiptKeepsLookingUntilTheChainShowsAnotherTransaction() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0 }
        let id = try h.submit()
        try h.runOnce(id)
        let ours = try h.transactions(id)[0]
        // A lagging node: the nonce is used, but by what is not visible yet. Never payable again on that alone.
        h.network.script { $0.sendVerdicts = [.nonceTooLow]; $0.pendingNonce = 12 }
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.stageAttempts == 1)
        #expect(job.lastError?.contains("does not show by which transaction yet") == true)
        // The chain shows our own transaction at that nonce: wait for its receipt.
        h.network.script { $0.sendVerdicts = [.nonceTooLow]; $0.nonceUsers[0] = ours.hash }
        job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create)
        // Another transaction used it, one the database does not know (records were lost; it may
        // be this very job's lost createTask): ours can never be mined. The job is unsigned again
        // and nothing new is signed until the wallet is reconciled.
        h.network.script { $0.sendVerdicts = [.nonceTooLow]; $0.nonceUsers[0] = keccak256([9]) }
        job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.txNonce == nil && job.recreations == 0)
        #expect(try h.walletNonce() == 12)
        #expect(try JobStore.pendingReconciliation(h.db, h.wallet.address)?.fromNonce == 0)
        job = try h.runOnce(id)
        #expect(job.txNonce == nil && job.lastError?.contains("nothing is signed until its lost tasks are adopted") == true)
        // Reconciled (the chain settled, nothing to adopt): it signs at the chain's next nonce.
        h.network.script { $0.minedNonce = 12 }
        try Reconciliation(network: h.network, config: h.config, log: WorkerLog(name: "r", quiet: true))
            .pass(h.db, chainId: h.wallet.chainId, ours: [h.wallet.address])
        #expect(try JobStore.pendingReconciliation(h.db, h.wallet.address) == nil)
        job = try h.runOnce(id)
        #expect(job.txNonce == 12)
    }

    @Test func aRefusedSendWaitsAsAFailedTry() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0 }
        let id = try h.submit()
        h.network.script { $0.sendVerdicts = [.rejected("insufficient funds for gas * price + value")] }
        let job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.stageAttempts == 1)
        #expect(job.lastError == "node refused createTask: insufficient funds for gas * price + value")
    }

    @Test func aNetworkFailureIsRetriedWithBackoffAndCounted() throws {
        let h = try StageHarness()
        let id = try h.submit()
        h.network.script { $0.failing["createConditions"] = 2 }
        #expect(try h.runOnce(id).stageAttempts == 1)
        let job = try h.runOnce(id)
        #expect(job.stageAttempts == 2 && job.lastError?.contains("scripted failure of createConditions") == true)
        #expect(try h.transactions(id).isEmpty)
        // A step that goes well ends the streak.
        #expect(try h.runOnce(id).stageAttempts == 0)
    }

    @Test func aCancelAfterTheTaskWasCreatedClaimsTheRefund() throws {
        let h = try StageHarness()
        let id = try h.submit()
        try h.runOnce(id)
        #expect(try JobStore.cancel(h.db, id: id) == .requested)
        h.network.mine(try h.transactions(id)[0].hash, taskId: 31)
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .poll && job.taskId == 31 && job.refundReason == "cancelled by operator")
        // Queued: cancelled at once, for the whole fee.
        h.network.script { $0.tasks[31] = TaskState(phase: .absent); $0.queued = [31] }
        job = try h.runOnce(id)
        let cancels = try h.transactions(id).filter { $0.purpose == .cancelTask }
        #expect(cancels.count == 1 && h.network.sent.last == cancels[0].raw)
        h.network.mine(cancels[0].hash)
        h.network.script { $0.queued = []; $0.outcomes[31] = .aborted(reason: "Task Cancelled") }
        job = try h.runOnce(id)
        #expect(job.status == .cancelled && job.abortReason == "Task Cancelled")
        #expect(h.network.calls("upload") == 0)
    }

    @Test func aCancelWhileTheTaskRunsClaimsTheRefundPastItsDeadline() throws {
        // The promise `cancel` makes for a running task: it runs on, and past its deadline the
        // worker cancels it on chain for the refund (nodes' watchdogs may be gone).
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        let deadline = UInt64(Date().timeIntervalSince1970) + 900
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: deadline) }
        #expect(try JobStore.cancel(h.db, id: id) == .requested)
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .poll && job.refundReason == "cancelled by operator", "\(job.lastError ?? "")")
        #expect(try h.transactions(id).isEmpty)
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: UInt64(Date().timeIntervalSince1970) - 3600) }
        job = try h.runOnce(id)
        let story = try h.details(id)
        #expect(try h.transactions(id).filter { $0.purpose == .cancelTask }.count == 1, "\(story)")
    }

    @Test func aWaitForNodesOnHydrogenIsNotTakenForAQueuedTaskOnEraD() throws {
        // task_queued_at said "waiting for free nodes since" on a Hydrogen worker; an era-D worker
        // signing the job's createTask starts that clock anew for its queue.
        let h = try StageHarness()
        let id = try h.submit()
        try h.db.execute("UPDATE crynux.jobs SET task_queued_at = now() - interval '2 hours' WHERE id = $1", [id])
        let job = try h.runOnce(id)
        #expect(job.txNonce != nil && job.taskQueuedAt == nil)
    }

    // MARK: upload

    @Test func uploadAdvancesWhenTheRelayHasTheArguments() throws {
        let h = try StageHarness()
        let first = try h.jobAt(.upload)
        let second = try h.jobAt(.upload, facts: JobFacts(taskId: 43))
        h.network.script { $0.uploads = [.uploaded, .alreadyUploaded] }
        try h.runOnce(first)
        for id in [first, second] {
            let job = try h.job(id)
            #expect(job.stage == .poll && job.argsUploadedAt != nil)
        }
        #expect(h.network.read { $0.uploaded.map(\.1) } == [PipelineHarness.sdArgs(images: 2), PipelineHarness.sdArgs(images: 2)])
    }

    @Test func uploadWaitsWhileTheRelayHasNotSeenTheTask() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.upload)
        h.network.script { $0.uploads = [.notYetOnChain] }
        let job = try h.runOnce(id)
        #expect(job.stage == .upload && job.status == .pending && job.stageAttempts == 0)
    }

    @Test func uploadFailsWhenRefusedOrTooLate() throws {
        let h = try StageHarness { $0.uploadDeadline = 60 }
        let refused = try h.jobAt(.upload)
        h.network.script { $0.uploads = [.rejected("prompt: is required")] }
        var job = try h.runOnce(refused)
        // The paid task will never get its arguments: cancelled on chain for the refund, the job
        // saying why (it used to fail with the fee left behind).
        #expect(job.status == .pending && job.stage == .poll && job.refundReason == "the relay refused the task arguments: prompt: is required")
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.queued = [42] }
        job = try h.runOnce(refused)
        let cancel = try #require(try h.transactions(refused).last)
        #expect(cancel.purpose == .cancelTask)
        h.network.mine(cancel.hash)
        h.network.script { $0.queued = []; $0.outcomes[42] = .aborted(reason: "Task Cancelled") }
        job = try h.runOnce(refused)
        #expect(job.status == .failed && job.retryStage == .create
                && job.lastError == "the relay refused the task arguments: prompt: is required; task 42 was cancelled on chain and its fee refunded")
        let late = try h.jobAt(.upload, facts: JobFacts(taskId: 44))
        try h.ageStage(late, seconds: 61)
        job = try h.runOnce(late)
        // The task will never get its arguments: it is cancelled on chain for the refund.
        #expect(job.status == .pending && job.stage == .poll)
        #expect(job.refundReason?.hasPrefix("the relay did not accept the task arguments within 60 s") == true)
    }

    @Test func uploadWithoutATaskIdFailsClearly() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.upload, facts: JobFacts())
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "job is in upload without a task id")
        #expect(h.network.calls("upload") == 0)
    }

    @Test func uploadOfACancelledJobGoesForTheRefund() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.upload)
        try h.db.execute("UPDATE crynux.jobs SET cancel_requested_at = now() WHERE id = $1", [id])
        let job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .poll && job.refundReason == "cancelled by operator")
        #expect(h.network.calls("upload") == 0)
    }

    // MARK: poll

    @Test func pollWaitsWhileRunningAndRecordsTheDeadline() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        let deadline = UInt64(Date().timeIntervalSince1970) + 900
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: deadline) }
        let job = try h.runOnce(id)
        #expect(job.stage == .poll && job.status == .pending)
        #expect(job.taskDeadline.map { UInt64($0.timeIntervalSince1970) } == deadline)
    }

    @Test func pollAdvancesOnSuccess() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        let node = Address(bytes: [UInt8](repeating: 0xAB, count: 20))
        h.network.script { $0.tasks[42] = TaskState(phase: .succeeded(resultNode: node)) }
        let job = try h.runOnce(id)
        #expect(job.stage == .fetch && job.resultNode == node && job.taskFinishedAt != nil)
    }

    @Test func onEraDASucceededTaskIsFetchedOnceDeletedForItsUploadedResults() throws {
        let h = try StageHarness()
        h.network.script { $0.deletesOnUpload = true }
        let id = try h.jobAt(.poll)
        let node = Address(bytes: [UInt8](repeating: 0xAB, count: 20))
        h.network.script { $0.tasks[42] = TaskState(phase: .succeeded(resultNode: node)) }
        var job = try h.runOnce(id)
        // Succeeded, but the results are not on the Relay yet: the Relay is not asked.
        #expect(job.stage == .poll && job.resultNode == node && job.taskFinishedAt != nil)
        job = try h.runOnce(id)
        #expect(job.stage == .poll && h.network.calls("download") == 0)
        // Deleted on chain (TaskResultUploaded): fetch, without a log query or a queue look-up.
        h.network.script { $0.tasks[42] = TaskState(phase: .absent) }
        job = try h.runOnce(id)
        #expect(job.stage == .fetch && h.network.calls("finishedOutcome") == 0 && h.network.calls("isQueued") == 0)
        #expect(try h.details(id).last == "task 42: results uploaded (deleted on chain)")
        // A result node that never reports the upload: after resultsUploadWait the Relay is asked anyway.
        let slow = try h.jobAt(.poll, facts: JobFacts(txBlockNumber: 3, taskId: 43))
        h.network.script { $0.tasks[43] = TaskState(phase: .succeeded(resultNode: node)) }
        try h.runOnce(slow)
        try h.db.execute("UPDATE crynux.jobs SET task_finished_at = now() - interval '61 seconds' WHERE id = $1", [slow])
        #expect(try h.runOnce(slow).stage == .fetch)
    }

    @Test func pollFailsAnAbortedTaskWithTheLoggedReason() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        h.network.script { $0.tasks[42] = TaskState(phase: .aborted) }
        #expect(try h.runOnce(id).status == .pending)  // the log is not there yet
        h.network.script { $0.outcomes[42] = .aborted(reason: "Task error reported") }
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.retryStage == .create && job.abortReason == "Task error reported")
        #expect(job.lastError == "task 42 was aborted on chain: Task error reported")
    }

    @Test func pollOfADeletedTaskReadsItsOutcomeFromTheLogs() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        let node = Address(bytes: [UInt8](repeating: 0xCD, count: 20))
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.outcomes[42] = .succeeded(resultNode: node) }
        let job = try h.runOnce(id)
        #expect(job.stage == .fetch && job.resultNode == node)
        #expect(h.network.calls("isQueued") == 0)
    }

    @Test func aQueuedTaskIsNotedOnceAndWaits() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.queued = [42] }
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.taskQueuedAt != nil && job.stageAttempts == 0)
        job = try h.runOnce(id)
        #expect(try h.details(id).filter { $0.contains("is queued on chain") }.count == 1)
    }

    @Test func aTaskNeitherRunningQueuedNorFinishedFailsAfterTenTries() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll)
        h.network.script { $0.tasks[42] = TaskState(phase: .absent) }
        for attempt in 1...10 {
            #expect(try h.runOnce(id).stageAttempts == attempt)
        }
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.retryStage == .poll && job.lastError == "task 42 is neither running, queued nor finished on chain")
    }

    @Test func anOverdueTaskIsCancelledForTheRefundOnce() throws {
        let h = try StageHarness { $0.cancelGrace = 0; $0.rebroadcastAfter = 10 }
        let id = try h.jobAt(.poll)
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: UInt64(Date().timeIntervalSince1970) - 10) }
        var job = try h.runOnce(id)
        let cancels = try h.transactions(id).filter { $0.purpose == .cancelTask }
        #expect(cancels.count == 1 && job.status == .pending && job.stage == .poll)
        #expect(h.network.sent == [cancels[0].raw])
        #expect(try h.walletNonce() == 1)
        // Polled again before the re-broadcast delay: nothing new is signed or sent.
        job = try h.runOnce(id)
        #expect(try h.transactions(id).count == 1 && h.network.sent.count == 1)
        // The cancel lands; the task's abort ends the job.
        h.network.mine(cancels[0].hash)
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.outcomes[42] = .aborted(reason: "Task Cancelled") }
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.abortReason == "Task Cancelled")
    }

    @Test func aCancelThatWouldRevertKeepsPolling() throws {
        let h = try StageHarness { $0.cancelGrace = 0 }
        let id = try h.jobAt(.poll)
        h.network.script {
            $0.tasks[42] = TaskState(phase: .running, deadline: UInt64(Date().timeIntervalSince1970) - 10)
            $0.estimate = .reverts("Task has not exceeded the deadline yet")
        }
        let job = try h.runOnce(id)
        #expect(try job.status == .pending && job.stage == .poll && (h.transactions(id)).isEmpty)
        #expect(try h.details(id).last == "cancelTask would revert (Task has not exceeded the deadline yet); polling on")
    }

    @Test func pollsGoOutAsOneBatchAndOneTasksErrorStaysItsOwn() throws {
        let h = try StageHarness()
        let ids = try (0..<3).map { try h.jobAt(.poll, facts: JobFacts(taskId: UInt64(100 + $0))) }
        let node = Address(bytes: [UInt8](repeating: 0x01, count: 20))
        h.network.script { $0.tasks[101] = TaskState(phase: .succeeded(resultNode: node)); $0.failing["getTask 102"] = 1 }
        try h.runOnce(ids[0])
        #expect(h.network.calls("readTasks") == 1)
        #expect(try h.job(ids[0]).stage == .poll && (h.job(ids[0])).stageAttempts == 0)
        #expect(try h.job(ids[1]).stage == .fetch)
        #expect(try h.job(ids[2]).stageAttempts == 1 && (h.job(ids[2])).lastError == "getTask 102 failed")
    }

    @Test func pollWithoutATaskIdFailsInsteadOfLooping() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.poll, facts: JobFacts())
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "job is in poll without a task id")
        #expect(try JobStore.retry(h.db, id: id) != .requeued(from: .poll))
    }

    // MARK: fetch

    @Test func fetchStoresEveryResultAndSucceeds() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.fetch)
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47] + Array(repeating: 7, count: 100)
        h.network.script { $0.results[42] = [.data(png, contentType: "image/png"), .data([1, 2, 3], contentType: "image/png")] }
        let job = try h.runOnce(id)
        #expect(job.status == .succeeded && job.lastError == nil)
        let stored = try JobStore.results(h.db, jobIds: [id])
        #expect(stored.map(\.file.index) == [0, 1] && stored[0].file.data == png && stored[1].file.data == [1, 2, 3])
        #expect(try h.details(id).last == "stored 2 result(s), 107 bytes")
    }

    @Test func fetchWaitsUntilTheResultsAreUploaded() throws {
        let h = try StageHarness()
        let id = try h.jobAt(.fetch, kind: "gpt", args: PipelineHarness.gptArgs("hi"))
        let job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .fetch && job.stageAttempts == 0)
        #expect(try JobStore.results(h.db, jobIds: [id]).isEmpty)
        h.network.script { $0.results[42] = [.data(Array(#"{"choices":[]}"#.utf8), contentType: "application/json")] }
        #expect(try h.runOnce(id).status == .succeeded)
        #expect(h.network.calls("download") == 2)
    }

    @Test func fetchFailsWhenRefusedOrTooLate() throws {
        let h = try StageHarness { $0.fetchDeadline = 60 }
        let refused = try h.jobAt(.fetch)
        h.network.script { $0.results[42] = [.rejected("Task not found")] }
        var job = try h.runOnce(refused)
        #expect(job.status == .failed && job.retryStage == .fetch && job.lastError == "the relay refused result 0 of task 42: Task not found")
        let late = try h.jobAt(.fetch, facts: JobFacts(taskId: 50))
        try h.ageStage(late, seconds: 61)
        job = try h.runOnce(late)
        #expect(job.status == .failed && job.lastError?.hasPrefix("the results of task 50 could not be downloaded within 60 s") == true)
    }

    // MARK: lease lost mid-stage

    @Test func anOutcomeAfterTheLeaseWasTakenIsDroppedButWhatWasSentIsKept() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0 }
        let id = try h.submit()
        try h.runOnce(id)
        let tx = try h.transactions(id)[0]
        let url = h.database.url
        // While this worker sends, another one takes the job over.
        h.network.script { state in
            state.onSend = { _ in
                _ = try? PostgresConnection(url: url).execute("UPDATE crynux.jobs SET lease_token = lease_token + 1, locked_by = 'other' WHERE id = $1", [id])
            }
        }
        let before = try h.details(id).count
        let job = try h.runOnce(id)
        #expect(job.lockedBy == "other" && job.stage == .create && job.stageAttempts == 0)
        #expect(try h.details(id).count == before)
        #expect(try h.sendCount(tx.hash) == 2)
    }

    @Test func aSignatureAfterTheLeaseWasTakenIsRolledBackWithItsNonce() throws {
        let h = try StageHarness()
        let id = try h.submit()
        let url = h.database.url
        h.network.script { state in
            state.onCall = { name in
                guard name == "createConditions" else { return }
                _ = try? PostgresConnection(url: url).execute("UPDATE crynux.jobs SET lease_token = lease_token + 1 WHERE id = $1", [id])
            }
        }
        let job = try h.runOnce(id)
        #expect(try job.txNonce == nil && (h.transactions(id)).isEmpty && h.network.sent.isEmpty)
        #expect(try h.walletNonce() == 0)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var stored = false
    func set(_ value: Bool) { lock.withLock { stored = value } }
    var value: Bool { lock.withLock { stored } }
}
