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
        var sent = false
        for _ in 0..<300 where !sent {
            Thread.sleep(forTimeInterval: 0.05)
            sent = try harness.db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1 AND send_count > 0", [id])[0]
                .get(0, as: Int64.self) > 0
        }
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
}
