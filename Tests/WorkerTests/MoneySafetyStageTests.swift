import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing
@testable import Worker

/// Money safety, in-process: admission control, evictions, several wallets, bounded fee bumps,
/// filled nonces, refunds, adoption of tasks whose records were lost.
@Suite("Money safety in-process")
struct MoneySafetyStageTests {
    // MARK: admission control

    @Test func aFullQueueKeepsTheBacklogInPostgres() throws {
        let h = try StageHarness()
        h.network.script { $0.queue = QueueState(size: 50, limit: 50) }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.txNonce == nil && job.stageAttempts == 0)
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty)
        // The last tenth is left to other creators, whose next tasks would evict ours from a full queue.
        h.network.script { $0.queue = QueueState(size: 45, limit: 50) }
        job = try h.runOnce(id)
        #expect(job.txNonce == nil && h.network.sent.isEmpty)
        h.network.script { $0.queue = QueueState(size: 44, limit: 50) }
        job = try h.runOnce(id)
        #expect(job.txNonce == 0 && h.network.sent.count == 1)
    }

    // MARK: funds

    @Test func aWalletShortOfFeeAndGasWaitsUnsignedThenResumesOnceFunded() throws {
        let h = try StageHarness()
        // 2 results at 4.1 CNX each (the default fee) plus gas: 1 CNX is not enough.
        h.network.script { $0.nativeBalance = BigUInt(10).power(18) }
        let id = try h.submit()
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.txNonce == nil && job.stageAttempts == 0)
        #expect(job.lastError?.hasPrefix("waiting for funds: the wallet \(h.wallet.address.checksummed) holds 1 CNX and the createTask may cost") == true,
                "\(job.lastError ?? "")")
        // The node refusing the estimate for want of funds is the same wait, not a failure.
        h.network.script { $0.estimate = .reverts("insufficient funds for transfer") }
        job = try h.runOnce(id)
        #expect(job.status == .pending && job.stageAttempts == 0 && job.lastError?.hasPrefix("waiting for funds") == true)
        #expect(try h.transactions(id).isEmpty && h.network.sent.isEmpty && (try h.walletNonce()) == 0)
        #expect(try JobStore.events(h.db, jobId: id).filter { $0.detail.hasPrefix("waiting for funds") }.count == 1)
        h.network.script {
            $0.nativeBalance = BigUInt(10).power(24)
            $0.estimate = .gas(200_000)
        }
        job = try h.runOnce(id)
        let purposes = try h.transactions(id).map(\.purpose)
        #expect(job.txNonce == 0 && purposes == [.createTask] && h.network.sent.count == 1)
    }

    @Test func createTasksOnTheirWayCountAgainstTheRoomLeft() throws {
        let h = try StageHarness()
        h.network.script { $0.queue = QueueState(size: 43, limit: 50) }  // room for 2 below the reserve of 5
        let ids = try (0..<4).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "job \($0)")) }
        try h.runOnce(ids[0])  // all four are due and claimed together
        let signed = try ids.filter { try h.job($0).txNonce != nil }
        #expect(signed.count == 2)
        #expect(try h.walletNonce() == 2)
        // Once they are mined (and in the queue), the count is the chain's.
        for id in signed { h.network.mine(try h.transactions(id)[0].hash, taskId: UInt64(id)) }
        h.network.script { $0.queue = QueueState(size: 45, limit: 50, readBlock: 7) }
        try h.runOnce(ids[0])
        #expect(try ids.filter { try h.job($0).txNonce != nil }.count == 2)
        // Mined in block 7, they are missing from a size read at block 6 (a node a block behind):
        // still counted, however the clocks of worker, database and node disagree.
        try h.db.execute("UPDATE crynux.jobs SET tx_mined_at = tx_mined_at - interval '1 minute'")
        h.network.script { $0.queue = QueueState(size: 44, limit: 50, readBlock: 6) }
        try h.runOnce(ids[0])
        #expect(try ids.filter { try h.job($0).txNonce != nil }.count == 2)
        // Read at their block, the size has them.
        h.network.script { $0.queue = QueueState(size: 44, limit: 50, readBlock: 7) }
        try h.runOnce(ids[0])
        #expect(try ids.filter { try h.job($0).txNonce != nil }.count == 3)
    }

    @Test func anEvictedTaskIsCreatedAgainAFewTimesThenFails() throws {
        let h = try StageHarness { $0.maxRecreations = 1 }
        let id = try h.jobAt(.poll, facts: JobFacts(feeWei: 20, txBlockNumber: 3, taskId: 42))
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.outcomes[42] = .aborted(reason: "Task fee is too low") }
        var job = try h.runOnce(id)
        #expect(job.status == .pending && job.stage == .create && job.recreations == 1)
        #expect(job.taskId == nil && job.txNonce == nil && job.feeWei == nil)
        #expect(try h.details(id).last?.contains("evicted from the full queue") == true)
        try h.runOnce(id)
        let tx = try h.transactions(id)[0]
        h.network.mine(tx.hash, taskId: 43)
        job = try h.runOnce(id)
        #expect(job.stage == .upload && job.taskId == 43)
        try h.db.execute("UPDATE crynux.jobs SET stage = 'poll' WHERE id = $1", [id])
        h.network.script { $0.tasks[43] = TaskState(phase: .absent); $0.outcomes[43] = .aborted(reason: "Task fee is too low") }
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "task 43 was aborted on chain: Task fee is too low")
    }

    @Test func aFeeBelowOneWeiPerResultIsRefusedUnsigned() throws {
        let h = try StageHarness()
        let id = try h.submit(PipelineHarness.sdArgs(images: 4), feeWei: "3")
        let job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError?.contains("below one wei per result") == true)
        #expect(try h.transactions(id).isEmpty && h.network.calls("createConditions") == 0)
    }

    // MARK: several wallets

    @Test func aJobStaysWithTheWalletThatSignedIt() throws {
        let h = try StageHarness(wallets: 2)
        let ids = try (0..<4).map { try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "w \($0)")) }
        try h.runOnce(ids[0])
        var byWallet: [Address: Int] = [:]
        for id in ids {
            let job = try h.job(id)
            let tx = try #require(try h.transactions(id).first)
            #expect(tx.wallet == job.walletAddress)
            byWallet[tx.wallet, default: 0] += 1
        }
        #expect(try byWallet.count == 2 && (h.walletNonce(0)) == 2 && (h.walletNonce(1)) == 2)
        // A worker holding only the other key never claims them.
        let other = Address(bytes: [UInt8](repeating: 0x77, count: 20))
        try h.db.execute("UPDATE crynux.jobs SET run_at = now()")
        #expect(try JobStore.claim(h.db, worker: "other", wallets: [other], limit: 10, leaseSeconds: 60).isEmpty)
        // Uploads are signed by the job's own wallet.
        let first = try h.job(ids[0])
        h.network.mine(try h.transactions(ids[0])[0].hash, taskId: 5)
        try h.runOnce(ids[0])
        try h.runOnce(ids[0])
        #expect(h.network.read { $0.signers } == [first.walletAddress!])
    }

    // MARK: bounded fee bumps

    @Test func replacementsStopAtTheCeilingAndThenSendTheSameBytes() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0; $0.replaceAfter = 1; $0.gasPriceCeilingFactor = 2; $0.createDeadline = 1e6 }
        let id = try h.submit()
        try h.runOnce(id)
        let first = try h.transactions(id)[0]
        for _ in 0..<6 {
            try h.age(id, seconds: 3600)
            try h.runOnce(id)
        }
        let txs = try h.transactions(id)
        #expect(txs.allSatisfy { $0.gasPrice <= first.gasPrice * 2 })
        #expect(txs.count == 4)  // 1, 1.25, 1.5625, 1.953125 × the first price; 2.44 would pass the ceiling
        #expect(zip(txs, txs.dropFirst()).allSatisfy { $1.gasPrice * 100 >= $0.gasPrice * 110 })
        #expect(h.network.sent.count > txs.count)
    }

    @Test func eip1559ReplacementsRaiseTheTipToo() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0; $0.replaceAfter = 1; $0.useEIP1559 = true }
        let id = try h.submit()
        try h.runOnce(id)
        try h.age(id, seconds: 3600)
        try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.count == 2)
        let (first, second) = (txs[0], txs[1])
        #expect(second.gasPrice * 100 >= first.gasPrice * 110)
        let (firstTip, secondTip) = (try #require(first.tip), try #require(second.tip))
        #expect(secondTip * 100 >= firstTip * 110)
    }

    @Test func anUnderpricedReplacementIsNotTheLatest() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0; $0.replaceAfter = 1; $0.createDeadline = 1e6 }
        let id = try h.submit()
        try h.runOnce(id)
        let first = try h.transactions(id)[0]
        try h.age(id, seconds: 3600)
        h.network.script { $0.sendVerdicts = [.underpriced("replacement transaction underpriced")] }
        var job = try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.count == 2 && txs[1].refusedAt != nil && txs[0].refusedAt == nil)
        #expect(job.txHash == first.hash)
        // The next send is the one in the pool again.
        try h.age(id, seconds: 1)
        try h.db.execute("UPDATE crynux.job_transactions SET signed_at = now() WHERE tx_hash = $1", [first.hash.hex])
        job = try h.runOnce(id)
        #expect(h.network.sent.last == first.raw)
    }

    // MARK: every nonce used

    @Test func aCreateRefusedForGoodHasItsNonceFilled() throws {
        let h = try StageHarness()
        h.network.script { $0.sendVerdicts = [.refusedForGood("insufficient funds for gas * price + value")] }
        let id = try h.submit()
        var job = try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.count == 2 && txs[0].refusedAt != nil && txs[1].purpose == .fillNonce && txs[1].nonce == txs[0].nonce)
        #expect(txs[1].value == 0 && txs[1].gasLimit == 21_000 && h.network.sent.last == txs[1].raw)
        #expect(try h.walletNonce() == 1)
        h.network.mine(txs[1].hash)
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.retryStage == .create && job.lastError?.contains("no task was created") == true)
    }

    @Test func aCancelBeforeMiningFillsTheNonceInsteadOfPaying() throws {
        let h = try StageHarness()
        let id = try h.submit()
        try h.runOnce(id)
        #expect(try JobStore.cancel(h.db, id: id) == .requested)
        try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.count == 2 && txs[1].purpose == .fillNonce && txs[1].gasPrice > txs[0].gasPrice)
        h.network.mine(txs[1].hash)
        let job = try h.runOnce(id)
        #expect(job.status == .cancelled && job.taskId == nil)
    }

    @Test func aCreateNotMinedByItsDeadlineIsFilled() throws {
        let h = try StageHarness { $0.createDeadline = 60; $0.replaceAfter = 3600 }
        let id = try h.submit()
        try h.runOnce(id)
        try h.age(id, seconds: 61)
        try h.runOnce(id)
        let txs = try h.transactions(id)
        #expect(txs.last?.purpose == .fillNonce)
        // The createTask landed after all: the task is the job's.
        h.network.mine(txs[0].hash, taskId: 12)
        #expect(try h.runOnce(id).taskId == 12)
    }

    @Test func theKeeperFollowsTransactionsNoStageFollows() throws {
        let h = try StageHarness { $0.rebroadcastAfter = 0; $0.replaceAfter = 60 }
        let keeper = WalletKeeper(network: h.network, config: h.config, log: WorkerLog(name: "k", quiet: true))
        // A cancelTask of a job that has failed since: sent again, then filled.
        let id = try h.jobAt(.poll)
        try h.db.execute("UPDATE crynux.jobs SET task_deadline = now() - interval '1 hour' WHERE id = $1", [id])
        h.network.script { $0.tasks[42] = TaskState(phase: .running, deadline: 1) }
        try h.runOnce(id)
        let cancel = try #require(try h.transactions(id).first)
        try h.db.execute("""
            UPDATE crynux.jobs SET status = 'failed', finished_at = now(), run_at = NULL WHERE id = $1
            """, [id])
        try keeper.pass(h.db, h.wallet)
        #expect(h.network.sent.filter { $0 == cancel.raw }.count == 2)
        try h.age(id, seconds: 61)
        try keeper.pass(h.db, h.wallet)
        let fill = try #require(try h.transactions(id).last)
        #expect(fill.purpose == .fillNonce && fill.nonce == cancel.nonce && h.network.sent.last == fill.raw)
        h.network.mine(fill.hash)
        let sentBefore = h.network.sent.count
        try keeper.pass(h.db, h.wallet)
        #expect(h.network.sent.count == sentBefore)
        // A nonce reserved and lost: filled.
        try h.db.execute("UPDATE crynux.wallets SET next_nonce = next_nonce + 1")
        h.network.script { $0.minedNonce = 1; $0.pendingNonce = 1 }
        try keeper.pass(h.db, h.wallet)
        let gapFill = try h.db.query("SELECT count(*) FROM crynux.job_transactions WHERE job_id IS NULL AND nonce = 1 AND purpose = 'fill_nonce'")[0]
            .get(0, as: Int64.self)
        #expect(gapFill == 1)
    }

    // MARK: every refund claimed

    @Test func aTaskQueuedTooLongIsCancelledForItsRefund() throws {
        let h = try StageHarness { $0.queueTimeout = 60 }
        let id = try h.jobAt(.poll)
        h.network.script { $0.tasks[42] = TaskState(phase: .absent); $0.queued = [42] }
        try h.runOnce(id)
        try h.db.execute("UPDATE crynux.jobs SET task_queued_at = now() - interval '61 seconds' WHERE id = $1", [id])
        var job = try h.runOnce(id)
        let cancel = try #require(try h.transactions(id).first)
        #expect(cancel.purpose == .cancelTask && job.refundReason == "queued on chain for longer than 60 s")
        h.network.mine(cancel.hash)
        h.network.script { $0.queued = []; $0.outcomes[42] = .aborted(reason: "Task Cancelled") }
        job = try h.runOnce(id)
        #expect(job.status == .failed && job.lastError == "queued on chain for longer than 60 s; task 42 was cancelled on chain and its fee refunded")
    }

    // MARK: records lost, tasks adopted

    @Test func aTaskWhoseRecordWasLostIsAdoptedNotPaidAgain() throws {
        let h = try StageHarness()
        let args = PipelineHarness.sdArgs(images: 1, prompt: "lost")
        let id = try h.submit(args)
        let other = try h.submit(args)  // the same arguments: only one of them paid
        h.network.script {
            $0.createdTasks = [CreatedTask(taskId: 900, taskHash: TaskArguments.taskHash(args), txHash: keccak256([1]), block: 77,
                                           time: UInt64(Date().timeIntervalSince1970), fee: 5)]
        }
        #expect(try Adoption.adopt(h.db, h.network, h.wallet.address, chainId: h.wallet.chainId, fromNonce: 0, log: WorkerLog(name: "a", quiet: true)) == 1)
        let adopted = try h.job(id)
        #expect(adopted.stage == .upload && adopted.taskId == 900 && adopted.walletAddress == h.wallet.address && adopted.feeWei == 5)
        #expect(try h.job(other).stage == .create && (h.job(other)).taskId == nil)
        // A second look adopts nothing twice.
        #expect(try Adoption.adopt(h.db, h.network, h.wallet.address, chainId: h.wallet.chainId, fromNonce: 0, log: WorkerLog(name: "a", quiet: true)) == 0)
    }

    /// The database goes back in time under a running worker (a failover to a lagging replica):
    /// the job's createTask was mined, the record of it is gone. The job signs again at the nonce
    /// the restored wallet row hands out, meets its own lost transaction there, is unsigned, and
    /// the reconciliation adopts its task instead of it paying for a second one. Meanwhile a job
    /// of another wallet signs nothing.
    @Test func aRunningWorkerWhoseDatabaseWentBackAdoptsItsLostTaskInsteadOfPayingAgain() throws {
        let h = try StageHarness(wallets: 2)
        let args = PipelineHarness.sdArgs(images: 1, prompt: "failover")
        var id = try h.submit(args)
        if h.pipeline.wallet(for: try h.job(id)).address != h.wallets[0].address { id = try h.submit(args) }
        _ = try h.runOnce(id)
        let lost = try #require(try h.transactions(id).first)
        h.network.mine(lost.hash, taskId: 900)
        // The failover: the job's rows are as before it signed, the wallet rows as before.
        try h.db.execute("DELETE FROM crynux.job_transactions")
        try h.db.execute("DELETE FROM crynux.job_events WHERE job_id = $1 AND detail LIKE '%nonce 0%'", [id])
        try h.db.execute("UPDATE crynux.jobs SET \(["tx_nonce", "tx_hash", "wallet_address", "chain_id", "fee_wei", "tx_signed_at"].map { "\($0) = NULL" }.joined(separator: ", ")) WHERE id = $1", [id])
        try h.db.execute("UPDATE crynux.wallets SET next_nonce = 0")
        let otherWallet = try h.submit(PipelineHarness.sdArgs(images: 1, prompt: "another wallet's job"))
        h.network.script {
            $0.pendingNonce = 1; $0.minedNonce = 1; $0.nonceUsers[0] = lost.hash; $0.gasPrice += 7
            $0.createdTasks = [CreatedTask(taskId: 900, taskHash: TaskArguments.taskHash(args), txHash: lost.hash, block: 7,
                                           time: UInt64(Date().timeIntervalSince1970), fee: lost.value)]
            $0.sendVerdicts = [.nonceTooLow]
        }
        var job = try h.runOnce(id)
        #expect(job.stage == .create && job.txNonce == nil && job.status == .pending, "\(job.lastError ?? "")")
        // Nothing new is signed, for any wallet, until the reconciliation.
        _ = try h.runOnce(otherWallet)
        #expect(try h.transactions(otherWallet).isEmpty && (try h.job(otherWallet)).lastError?.hasPrefix("waiting: the database lost records") == true)
        try Reconciliation(network: h.network, config: h.config, log: WorkerLog(name: "r", quiet: true))
            .pass(h.db, chainId: h.wallet.chainId, ours: h.wallets.map(\.address))
        job = try h.job(id)
        #expect(job.stage == .upload && job.taskId == 900 && job.txHash == lost.hash)
        // One createTask on chain for the job: the one signed before the failover.
        let signedAfter = try h.transactions(id).filter { $0.purpose == .createTask }
        #expect(signedAfter.allSatisfy { $0.nonce == 0 }, "\(signedAfter.map(\.nonce))")
        _ = try h.runOnce(otherWallet)
        #expect(try h.transactions(otherWallet).count == 1)
    }

    /// A transaction row no code can read (written by hand, or before the CHECKs of migration 4)
    /// fails its job with the reason, instead of the job looping on lease expiry and the wallet's
    /// keeper failing on every pass.
    @Test func anUnreadableTransactionRowFailsItsJobNotTheWorker() throws {
        let h = try StageHarness()
        let id = try h.submit()
        _ = try h.runOnce(id)
        let tx = try #require(try h.transactions(id).first)
        try h.db.execute("ALTER TABLE crynux.job_transactions DROP CONSTRAINT job_transactions_numbers_valid")
        try h.db.execute("UPDATE crynux.job_transactions SET gas_limit = -1 WHERE tx_hash = $1", [tx.hash.hex])
        try h.db.execute("UPDATE crynux.jobs SET run_at = now() WHERE id = $1", [id])
        _ = try? h.runOnce(id)
        let job = try h.job(id)
        #expect(job.status == .failed && job.lastError?.hasPrefix("the job's transaction \(tx.hash.hex) cannot be read") == true, "\(job.lastError ?? "")")
        // The keeper, which now follows that transaction (its job has ended), passes over it.
        let keeper = WalletKeeper(network: h.network, config: h.config, log: WorkerLog(name: "k", quiet: true))
        try keeper.pass(h.db, h.wallet)
        try keeper.pass(h.db, h.wallet)
    }

    /// A worker holding only wallet B compares wallet A too (adoption needs no key): A's lost
    /// records are marked and mended by B's worker, and meanwhile B signs nothing new. A lost
    /// `wallets` row is lost records too.
    @Test func aWorkerHoldingAnotherWalletMarksAndMendsTheLostRecordsOfA() throws {
        let h = try StageHarness()
        let a = Address(bytes: [UInt8](repeating: 0xA1, count: 20))
        try JobStore.reconcileWallet(h.db, a, chainId: h.wallet.chainId, pendingNonce: 2)
        h.network.script { $0.pendingNonce = 5; $0.minedNonce = 2 }  // A's pool not mined yet
        try h.db.execute("UPDATE crynux.wallets SET next_nonce = 5 WHERE address = $1", [h.wallet.address.bytes.hex])
        let reconciliation = Reconciliation(network: h.network, config: h.config, log: WorkerLog(name: "b", quiet: true))
        try reconciliation.pass(h.db, chainId: h.wallet.chainId, ours: [h.wallet.address])
        #expect(try JobStore.pendingReconciliation(h.db, a)?.fromNonce == 2)
        let id = try h.submit()
        _ = try h.runOnce(id)
        #expect(try h.transactions(id).isEmpty)
        h.network.script { $0.minedNonce = 5 }
        try reconciliation.pass(h.db, chainId: h.wallet.chainId, ours: [h.wallet.address])
        #expect(try JobStore.pendingReconciliation(h.db, a) == nil && (try JobStore.nextNonce(h.db, wallet: a)) == 5)
        _ = try h.runOnce(id)
        #expect(try h.transactions(id).count == 1)
        // The row of our own wallet lost: marked from nonce 0.
        try h.db.execute("DELETE FROM crynux.wallets WHERE address = $1", [h.wallet.address.bytes.hex])
        try reconciliation.pass(h.db, chainId: h.wallet.chainId, ours: [h.wallet.address])
        #expect(try JobStore.nextNonce(h.db, wallet: h.wallet.address) == 5)
    }

    // MARK: idle threads

    @Test func aJobLeasedByADeadWorkerIsNotDueUntilItsLeaseEnds() throws {
        let h = try StageHarness()
        _ = try h.submit()
        _ = try JobStore.claim(h.db, worker: "dead", limit: 1, leaseSeconds: 30)
        // Another worker's claim takes nothing, and says the job is due when the lease ends.
        let look = try JobStore.claimNoting(h.db, worker: "idle", limit: 1, leaseSeconds: 30)
        let wait = try #require(look.nextDueIn)
        #expect(look.jobs.isEmpty && wait > 25 && wait <= 30)
    }
}
