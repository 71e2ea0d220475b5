import BigInt
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// Tests that turn global fault knobs run on a network of their own, one at a time.
@Suite("Pipeline under faults", .serialized)
final class FaultTests {
    let devnet: Devnet

    init() throws { devnet = try Devnet.startPrivate(["--nodes", "6"]) }
    deinit { devnet.stop() }

    @Test func aQueuedTaskSucceedsOnceNodesFreeUp() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["nodes": 0])
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 2)))
        let worker = try harness.startWorker(name: "queue", extra: ["--exit-when-idle"])
        // Wait until the job is polling a queued task.
        var queued = false
        for _ in 0..<200 where !queued {
            Thread.sleep(forTimeInterval: 0.1)
            queued = try JobStore.events(try harness.db(), jobId: id).contains { $0.detail.contains("queued") }
        }
        #expect(queued, "the task never showed as queued:\n\(worker.output)")
        try devnet.configure(["nodes": 6])
        #expect(worker.wait(timeout: 120) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        #expect(try harness.taskPendingCount() == 1)
    }

    @Test func aWorkerKilledRightAfterBroadcastingIsFinishedByAnotherWithoutASecondTask() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Transactions wait in the pending pool, so the kill lands between broadcast and receipt.
        try devnet.configure(["tx_mine_delay_ms": 4000])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1)))
        let first = try harness.startWorker(name: "doomed", extra: ["--lease-seconds", "3"])
        let sent = try harness.waitUntilBroadcast(jobId: id)
        #expect(sent, "the first worker never broadcast:\n\(first.output)")
        first.signal(SIGKILL)
        _ = first.wait(timeout: 10)

        try harness.runWorkersUntilIdle(timeout: 180)
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        #expect(try harness.taskPendingCount() == 1)
        #expect(try harness.chainNonce() == 1)
        #expect(try harness.db().query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self) == 1)
    }

    @Test func flakyRPCAndRelayStillGiveExactlyOneTaskPerJob() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["rpc_error_rate": 0.15, "rpc_http500_rate": 0.1, "relay_http500_rate": 0.2])
        defer { _ = try? devnet.configure(["rpc_error_rate": 0, "rpc_http500_rate": 0, "relay_http500_rate": 0]) }
        let db = try harness.db()
        for i in 0..<6 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 2, prompt: "flaky \(i)"))) }
        for i in 0..<2 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("flaky \(i)"))) }
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 240, extra: ["--poll-interval-max", "1", "--retry-max", "4"])
        let stats = try devnet.admin("GET", "/admin/stats") as? [String: Any]
        try devnet.configure(["rpc_error_rate": 0, "rpc_http500_rate": 0, "relay_http500_rate": 0])
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        #expect(try harness.taskPendingCount() == 8)
        #expect(try harness.chainNonce() == 8)
        // The faults really fired, and the history shows the retries.
        let fired = stats?["faults_fired"] as? [String: Any] ?? [:]
        #expect(!fired.isEmpty, "no fault fired: \(stats ?? [:])")
        let retries = try db.query("SELECT count(*) FROM crynux.job_events WHERE detail LIKE 'retrying after error%'")[0].get(0, as: Int64.self)
        #expect(retries > 0)
    }

    @Test func aDroppedCreateIsReplacedAtAHigherPriceAndOnlyOneLands() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Every transaction is accepted and forgotten until the drop rate is lifted.
        try devnet.configure(["tx_drop_rate": 1])
        defer { _ = try? devnet.configure(["tx_drop_rate": 0]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("dropped")))
        let worker = try harness.startWorker(name: "replacer", extra: ["--exit-when-idle", "--rebroadcast-after", "0.5", "--replace-after", "1.5"])
        var replaced = false
        for _ in 0..<300 where !replaced {
            Thread.sleep(forTimeInterval: 0.05)
            replaced = try harness.db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1", [id])[0].get(0, as: Int64.self) >= 2
        }
        #expect(replaced, "no replacement was signed:\n\(worker.output)")
        try devnet.configure(["tx_drop_rate": 0])
        #expect(worker.wait(timeout: 120) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        let txs = try harness.db().query("SELECT nonce, gas_price_wei::text AS price, mined_status FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at", [id])
        #expect(Set(try txs.map { try $0.get("nonce", as: Int64.self) }) == [0])
        let prices = try txs.map { try $0.get("price", as: String.self) }.compactMap { Double($0) }
        #expect(prices == prices.sorted() && Set(prices).count == prices.count, "each replacement pays more: \(prices)")
        #expect(try txs.filter { try $0.optional("mined_status", as: Bool.self) == true }.count == 1)
        #expect(try harness.taskPendingCount() == 1)
        #expect(try harness.chainNonce() == 1)
    }

    @Test func aTaskPastItsDeadlineIsCancelledForTheRefund() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // The nodes never finish it and their own watchdog is off: only we can cancel it.
        try devnet.configure(["task_timeout_s": 3, "watchdog_delay_ms": -1])
        defer { _ = try? devnet.configure(["task_timeout_s": 900, "watchdog_delay_ms": 5000]) }
        // A fee of 1 ETH, so that the refund shows in the balance next to the gas spent.
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("devnet:stuck"),
                                                                     feeWei: "1000000000000000000"))
        let balanceBefore = try harness.rpc.getBalance(harness.key.address)
        try harness.runWorkersUntilIdle(timeout: 120, extra: ["--cancel-grace", "1"])
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed)
        #expect(job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
        #expect(job.retryStage == .create)
        let purposes = try harness.db().query("SELECT purpose FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at", [id])
            .map { try $0.get("purpose", as: String.self) }
        #expect(purposes == ["create_task", "cancel_task"])
        // The fee came back: only gas was spent (well under 0.01 ETH).
        let balanceAfter = try harness.rpc.getBalance(harness.key.address)
        #expect(balanceBefore - balanceAfter < BigUInt(10).power(16), "spent \(balanceBefore - balanceAfter) wei")
    }

    @Test func sigtermMidStageHandsTheJobBackAndExitsCleanly() throws {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.configure(["tx_mine_delay_ms": 3000])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("terminated")))
        let first = try harness.startWorker(name: "terminated")
        let sent = try harness.waitUntilBroadcast(jobId: id)
        #expect(sent, "\(first.output)")
        first.signal(SIGTERM)
        #expect(first.wait(timeout: 30) == 0, "\(first.output)")
        #expect(first.output.contains("finishing stages in flight"))
        // Its lease is handed back at once (no waiting for expiry), and the next worker finishes the job.
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.lockedBy == nil && job.status == .pending)
        try harness.runWorkersUntilIdle(timeout: 120)
        #expect(try JobStore.job(try harness.db(), id: id)?.status == .succeeded)
        #expect(try harness.taskPendingCount() == 1)
        #expect(try harness.chainNonce() == 1)
    }
}
