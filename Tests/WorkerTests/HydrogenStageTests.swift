import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// The create stage on the Hydrogen network, in-process against real PostgreSQL with a scripted
/// network: the fee is pulled in CNX by allowance, and there is no queue.
@Suite("Hydrogen create stage in-process")
struct HydrogenStageTests {
    static let cnx = BigUInt(10).power(18)
    static let fee = BigUInt(30) * cnx

    /// A harness whose network is Hydrogen, with a wallet of `balance` CNX allowing `allowance`.
    static func harness(balance: BigUInt = 1_000 * cnx, allowance: BigUInt = 0,
                        configure: (inout WorkerConfig) -> Void = { _ in }) throws -> StageHarness {
        let h = try StageHarness(configure: configure)
        h.network.script {
            $0.profile = .hydrogen
            $0.token = TokenStanding(balance: balance, allowance: allowance)
            $0.nativeBalance = BigUInt(10).power(21)
            $0.tokenFee = fee
        }
        return h
    }

    static func contains(_ bytes: [UInt8], _ part: [UInt8]) -> Bool {
        guard !part.isEmpty, bytes.count >= part.count else { return false }
        return (0...(bytes.count - part.count)).contains { Array(bytes[$0..<($0 + part.count)]) == part }
    }

    @Test func aShortAllowanceSignsOneApprovalFirstThenTheCreateTask() throws {
        let h = try Self.harness()
        let first = try h.submit()
        // The first job signs and sends the approval; a second one then waits for it.
        _ = try h.runOnce(first)
        let second = try h.submit(PipelineHarness.sdArgs(images: 1))
        var txs = try h.transactions(first)
        #expect(txs.count == 1 && txs[0].purpose == .approve && txs[0].nonce == 0 && txs[0].value == 0)
        // approve(task contract, the wallet's whole balance): the bridge's habit, the default.
        // The signed bytes carry the token address and approve's calldata as they are (RLP strings).
        #expect(Self.contains(txs[0].raw, ScriptedNetwork.tokenAddress.bytes))
        #expect(Self.contains(txs[0].raw, h.network.approveCall(amount: 1_000 * Self.cnx)!.data))
        #expect(h.network.sent == [txs[0].raw])
        var job = try h.job(first)
        #expect(job.stage == .create && job.txNonce == nil && job.approvalTxHash == txs[0].hash)
        #expect(job.walletAddress == h.wallet.address && job.networkProfile == "hydrogen")
        #expect(try h.transactions(second).isEmpty)
        #expect(try h.walletNonce() == 1)

        // Still unmined: nobody signs a second approval.
        _ = try h.runOnce(second)
        #expect(try h.transactions(second).isEmpty && (try h.walletNonce()) == 1)

        // Mined, and the allowance is there: both jobs sign their createTask, after the approval's nonce.
        h.network.mine(txs[0].hash, block: 4)
        h.network.script { $0.token = TokenStanding(balance: 1_000 * Self.cnx, allowance: 1_000 * Self.cnx) }
        _ = try h.runOnce(first)
        txs = try h.transactions(first)
        #expect(txs.map(\.purpose) == [.approve, .createTask])
        #expect(Set([try h.job(first).txNonce, try h.job(second).txNonce]) == [1, 2])
        let create = txs[1]
        #expect(create.value == 0)  // nonpayable: the fee moves by transferFrom
        job = try h.job(first)
        #expect(job.feeWei == nil && job.networkProfile == "hydrogen")

        h.network.mine(create.hash, block: 5, taskId: 11)
        job = try h.runOnce(first)
        #expect(job.stage == .upload && job.taskId == 11 && job.tokenFeeWei == Self.fee)
    }

    @Test func twoWorkersShortOfAllowanceAtOnceSignOnlyOneApproval() throws {
        let h = try Self.harness()
        let a = try h.submit()
        try h.runOnce(a)
        let approval = try #require(try h.transactions(a).first)
        // A second job decided to approve before it saw the first approval: the store refuses it.
        let b = try h.submit(PipelineHarness.sdArgs(images: 3))
        try h.db.execute("UPDATE crynux.jobs SET run_at = now() WHERE id = $1", [b])
        let claimed = try #require(try JobStore.claim(h.db, worker: StageHarness.worker, limit: 1, leaseSeconds: 60).first)
        #expect(claimed.id == b)
        let draft = TransactionDraft(purpose: .approve, wallet: h.wallet.address, to: ScriptedNetwork.tokenAddress,
                                     data: h.network.approveCall(amount: Self.fee)!.data,
                                     value: 0, gasLimit: 100_000, gasPrice: 1, tip: nil)
        #expect(throws: ApprovalInFlight.self) {
            try JobStore.storeSigned(h.db, draft, facts: JobFacts(), note: "second approval", for: claimed, worker: StageHarness.worker) {
                try h.wallet.sign(draft, nonce: $0)
            }
        }
        #expect(try h.walletNonce() == 1)
        // Once the first one is filled (never mined), a new approval may be signed.
        try h.db.execute("UPDATE crynux.job_transactions SET refused_at = now(), refusal = 'test' WHERE tx_hash = $1", [approval.hash.hex])
        #expect(try JobStore.pendingApproval(h.db, wallet: h.wallet.address) == nil)
    }

    @Test func anApprovalSignedAndMinedAfterAStageLookedKeepsItFromSigningAnother() throws {
        // Job b looked (no approval yet, allowance 0), then a's approval was signed and mined
        // before b signed: b's reading of the allowance is stale, and the store refuses.
        let h = try Self.harness()
        let a = try h.submit()
        try h.runOnce(a)
        let approval = try #require(try h.transactions(a).first)
        try h.db.execute("UPDATE crynux.job_transactions SET mined_block = 4, mined_status = true WHERE tx_hash = $1", [approval.hash.hex])
        #expect(try JobStore.pendingApproval(h.db, wallet: h.wallet.address) == nil)
        #expect(try JobStore.latestApproval(h.db, wallet: h.wallet.address) == approval.hash)
        let b = try h.submit(PipelineHarness.sdArgs(images: 3))
        try h.db.execute("UPDATE crynux.jobs SET run_at = now() WHERE id = $1", [b])
        let claimed = try #require(try JobStore.claim(h.db, worker: StageHarness.worker, limit: 1, leaseSeconds: 60).first)
        var draft = TransactionDraft(purpose: .approve, wallet: h.wallet.address, to: ScriptedNetwork.tokenAddress,
                                     data: h.network.approveCall(amount: Self.fee)!.data, value: 0, gasLimit: 100_000, gasPrice: 1, tip: nil)
        let sign = { (draft: TransactionDraft) in
            try JobStore.storeSigned(h.db, draft, facts: JobFacts(), note: "approval", for: claimed, worker: StageHarness.worker) {
                try h.wallet.sign(draft, nonce: $0)
            }
        }
        #expect(throws: ApprovalInFlight.self) { try sign(draft) }
        #expect(try h.walletNonce() == 1)
        // A stage that saw that approval (its allowance since spent) may sign the next one.
        draft.lastApprovalSeen = approval.hash
        let second = try sign(draft)
        let latest = try JobStore.latestApproval(h.db, wallet: h.wallet.address)
        #expect(second.nonce == 1 && latest == second.hash)
    }

    @Test func aRevertedApprovalFailsTheJobInsteadOfBeingSignedAgain() throws {
        let h = try Self.harness()
        let id = try h.submit()
        try h.runOnce(id)
        let approval = try #require(try h.transactions(id).first)
        h.network.mine(approval.hash, block: 4, succeeded: false)
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.hasPrefix("approve \(approval.hash.hex) reverted") == true, "\(job.lastError ?? "")")
        #expect(try h.transactions(id).count == 1 && (try h.walletNonce()) == 1)
    }

    /// Eight jobs, an allowance for two: the standing read at `latest` does not yet pay for the
    /// createTasks on their way, so the store counts them under the wallet's lock. Two are signed;
    /// the rest wait unsigned (each one more would revert and burn gas) and go on once those are mined.
    @Test func createTasksOnTheirWayCountAgainstTheAllowanceAndBalance() throws {
        let h = try Self.harness(balance: 1_000 * Self.cnx, allowance: 2 * Self.fee)
        let ids = try (0..<8).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "allowance \($0)")) }
        for id in ids { _ = try h.runOnce(id) }
        let signed = try ids.filter { !(try h.transactions($0)).isEmpty }
        #expect(signed.count == 2)
        let waiting = try #require(ids.first { !signed.contains($0) })
        #expect(try h.job(waiting).lastError?.contains("not yet mined already take what it holds or allows") == true)
        // Mined, and the allowance spent: the standing now says what is left.
        for id in signed { h.network.mine(try h.transactions(id)[0].hash, taskId: UInt64(id)); _ = try h.runOnce(id) }
        h.network.script { $0.token = TokenStanding(balance: 1_000 * Self.cnx - 2 * Self.fee, allowance: 3 * Self.fee) }
        for id in ids where !signed.contains(id) { _ = try h.runOnce(id) }
        #expect(try ids.filter { !(try h.transactions($0)).isEmpty }.count == 5)
    }

    /// --max-gas-share-of-fee is a share of the CNX fee on Hydrogen (the createTask's value is
    /// 0 there, so no replacement was ever allowed).
    @Test func theGasShareOfTheFeeIsOfTheCNXFee() throws {
        let h = try Self.harness(allowance: 10 * Self.fee) {
            $0.rebroadcastAfter = 0; $0.replaceAfter = 1; $0.maxGasShareOfFee = 0.5; $0.createDeadline = 1e6
        }
        let id = try h.submit()
        _ = try h.runOnce(id)
        try h.age(id, seconds: 60)
        _ = try h.runOnce(id)
        let creates = try h.transactions(id).filter { $0.purpose == .createTask }
        #expect(creates.count == 2 && creates[creates.count - 1].gasPrice > creates[0].gasPrice, "\(creates.map(\.gasPrice))")
    }

    @Test func tooFewCNXWaitsWithNothingSignedAndResumesOnceFunded() throws {
        let h = try Self.harness(balance: 29 * Self.cnx)
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.stageAttempts == 0)
        #expect(job.lastError?.hasPrefix("waiting for funds: the wallet \(h.wallet.address.checksummed) holds 29 CNX in tokens and a task costs 30 CNX") == true,
                "\(job.lastError ?? "")")
        job = try h.runOnce(id)
        #expect(job.status == .pending && job.stageAttempts == 0)
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty && (try h.walletNonce()) == 0)
        // The first wait is in the job's history, the second is not.
        #expect(try JobStore.events(h.db, jobId: id).filter { $0.detail.hasPrefix("waiting for funds") }.count == 1)
        h.network.script { $0.token = TokenStanding(balance: 1_000 * Self.cnx, allowance: 0) }
        _ = try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.approve])
    }

    @Test func withoutApprovalsAShortAllowanceFailsTheJobWithNothingSigned() throws {
        let h = try Self.harness(allowance: 10 * Self.cnx) { $0.approval = ApprovalPolicy.none }
        let id = try h.submit()
        let job = try h.runOnce(id)
        #expect(job.status == .failed)
        #expect(job.lastError?.hasPrefix("not enough allowance: the wallet \(h.wallet.address.checksummed) allows the Task contract 10 CNX and a task costs 30 CNX") == true,
                "\(job.lastError ?? "")")
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
    }

    @Test func tooLittleGasForTheApprovalWaitsWithNothingSigned() throws {
        let h = try Self.harness()
        h.network.script { $0.token = TokenStanding(balance: 1_000 * Self.cnx, allowance: 0); $0.nativeBalance = 1_000 }
        let id = try h.submit()
        let job = try h.runOnce(id)
        #expect(job.status == .pending && job.lastError?.hasPrefix("waiting for funds") == true && job.lastError?.contains("for gas") == true,
                "\(job.lastError ?? "")")
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
        h.network.script { $0.token = TokenStanding(balance: 1_000 * Self.cnx, allowance: 0); $0.nativeBalance = BigUInt(10).power(21) }
        _ = try h.runOnce(id)
        #expect(try h.transactions(id).map(\.purpose) == [.approve])
    }

    @Test func noFreeNodesWaitsUnsignedThenFailsAfterTheQueueTimeout() throws {
        let h = try Self.harness(allowance: 1_000 * Self.cnx) { $0.queueTimeout = 60 }
        h.network.script { $0.estimate = .reverts("No available nodes") }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.taskQueuedAt != nil)
        #expect(try h.details(id).contains { $0.hasPrefix("waiting for free nodes: createTask would revert (No available nodes)") })
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
        try h.db.execute("UPDATE crynux.jobs SET task_queued_at = now() - interval '61 seconds' WHERE id = $1", [id])
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.hasPrefix("no free nodes for 60 s") == true, "\(job.lastError ?? "")")
        #expect(try h.walletNonce() == 0)
    }

    @Test func aCreateThatRevertsForWantOfNodesWaitsForNodesAgainUpToTheQueueTimeout() throws {
        // Other creators took the nodes between our reading and the block: the job waits for free
        // nodes again however often that happens (not bounded by --max-recreations), but no
        // longer than --queue-timeout from its first wait.
        let h = try Self.harness(allowance: 1_000 * Self.cnx) { $0.maxRecreations = 1; $0.queueTimeout = 60 }
        h.network.script { $0.revertReason = "No kind of gpu vram meets condition" }
        let id = try h.submit()
        var job = try h.runOnce(id)
        for round in 1...3 {
            let tx = try #require(try h.transactions(id).filter { $0.purpose == .createTask }.last)
            h.network.mine(tx.hash, succeeded: false)
            job = try h.runOnce(id)
            // Back to an unsigned create, the reverted transaction kept, the wait for nodes started once.
            #expect(job.recreations == round && job.status == .pending && job.stage == .create && job.txNonce == nil && job.taskQueuedAt != nil)
            job = try h.runOnce(id)
            #expect(try h.transactions(id).filter { $0.purpose == .createTask }.count == round + 1 && job.txNonce == UInt64(round))
        }
        #expect(try h.details(id).contains { $0.hasSuffix("too few free nodes by its block; waiting for free nodes again") })
        // Past the queue timeout since the first wait: the next lost race fails the job.
        let waitStarted = try #require(job.taskQueuedAt)
        try h.db.execute("UPDATE crynux.jobs SET task_queued_at = task_queued_at - interval '61 seconds' WHERE id = $1", [id])
        h.network.mine(try #require(try h.transactions(id).last).hash, succeeded: false)
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "createTask reverted: No kind of gpu vram meets condition; no free nodes for 60 s",
                "\(job.lastError ?? "")")
        #expect(job.taskQueuedAt.map { $0 < waitStarted } == true)
        // An ordinary revert still fails the job at once.
        let other = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "ordinary revert"))
        h.network.script { $0.revertReason = "Invalid task type" }
        _ = try h.runOnce(other)
        h.network.mine(try #require(try h.transactions(other).first).hash, succeeded: false)
        job = try h.runOnce(other)
        #expect(job.status == .failed && job.lastError == "createTask reverted: Invalid task type")
    }

    @Test func anSDTaskOnItsWayCountsThreeTimesAgainstTheRoomOfGPTTasks() throws {
        // Three GPT tasks' worth of nodes (three of each of three models): an SD task on its way
        // may take one node of each model, and then no GPT task can start.
        let h = try Self.harness(allowance: 1_000 * Self.cnx)
        h.network.script { $0.freeNodeTasks = 3; $0.freeNodesBlock = 10 }
        let sd = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "takes three models"))
        _ = try h.runOnce(sd)
        #expect(try h.transactions(sd).count == 1)
        let gpt = try h.submit(kind: "gpt", PipelineHarness.gptArgs("needs one model"))
        _ = try h.runOnce(gpt)
        #expect(try h.transactions(gpt).isEmpty)
        #expect(try h.details(gpt).contains { $0.contains("the free nodes can start 3 such task(s) and our createTasks on their way may take 3") })
        // Another SD task fits: its three nodes may come from anywhere.
        let second = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "any three"))
        _ = try h.runOnce(second)
        #expect(try h.transactions(second).count == 1)
    }

    @Test func createTasksAreAdmittedAgainstTheFreeNodesLessOursOnTheirWay() throws {
        // Every worker's estimate sees the same free nodes: the Node contract's count, less our
        // createTasks not yet mined or mined after it was read, admits only what can start.
        let h = try Self.harness(allowance: 1_000 * Self.cnx)
        h.network.script { $0.freeNodeTasks = 2; $0.freeNodesBlock = 10 }
        let ids = try (0..<5).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "nodes \($0)")) }
        for id in ids { _ = try h.runOnce(id) }
        let signed = try ids.filter { !(try h.transactions($0)).isEmpty }
        #expect(signed.count == 2)
        let waiting = ids.filter { !signed.contains($0) }
        for id in waiting {
            let job = try h.job(id)
            #expect(job.status == .pending && job.txNonce == nil && job.taskQueuedAt != nil)
            let details = try h.details(id)
            #expect(details.contains("waiting for free nodes: the free nodes can start 2 such task(s) and our createTasks on their way may take 2; nothing was sent"),
                    "\(details)")
        }
        // Mined after the block the count was read at: still taking the nodes it counted as free.
        for id in signed { h.network.mine(try h.transactions(id)[0].hash, block: 11, taskId: UInt64(id)); _ = try h.runOnce(id) }
        for id in waiting { _ = try h.runOnce(id) }
        #expect(try waiting.allSatisfy { try h.transactions($0).isEmpty })
        // Read at their block: the nodes they took are busy, one task's worth is free again.
        h.network.script { $0.freeNodeTasks = 1; $0.freeNodesBlock = 11 }
        for id in waiting { _ = try h.runOnce(id) }
        #expect(try waiting.filter { !(try h.transactions($0)).isEmpty }.count == 1)
        // The free nodes read as none: nothing more is signed, and the wait keeps its start.
        h.network.script { $0.freeNodeTasks = 0; $0.freeNodesBlock = 12 }
        for id in waiting { _ = try h.runOnce(id) }
        #expect(try waiting.filter { !(try h.transactions($0)).isEmpty }.count == 1)
    }

    @Test func anAllowanceRevertDespiteEnoughStandingIsReadAgainThenNamed() throws {
        // Another createTask of the wallet mined between the readings, or a contract that
        // charges more than the expected fee: a few more readings, then a clear failure.
        let h = try Self.harness(allowance: 1_000 * Self.cnx)
        h.network.script { $0.estimate = .reverts("Not enough allowance for task") }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stageAttempts == 1 && job.lastError?.contains("reading the wallet's standing again") == true)
        for _ in 0..<3 { job = try h.runOnce(id) }
        #expect(job.status == .failed && job.lastError?.contains("raise --token-task-fee-wei") == true, "\(job.lastError ?? "")")
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
    }

    @Test func aJobPinnedToAProfileGoesOnlyToWorkersOfThatProfile() throws {
        let h = try Self.harness()
        let id = try h.submit()
        try h.db.execute("UPDATE crynux.jobs SET network_profile = 'era-d' WHERE id = $1", [id])
        #expect(try JobStore.claim(h.db, worker: "h", profile: "hydrogen", limit: 5, leaseSeconds: 60).isEmpty)
        #expect(try JobStore.claim(h.db, worker: "d", profile: "era-d", limit: 5, leaseSeconds: 60).map(\.id) == [id])
    }
}
