import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// The real era-D network's habits, end to end against the local network with its strict knobs:
/// the Relay's schema, an Ethermint node, a relay that never sees a task, a cancel simulated at the
/// latest block's time, the queue's prices. On a network of its own, one test at a time.
@Suite("Network fidelity end to end", .serialized)
final class NetworkFidelityEndToEndTests {
    let devnet: Devnet

    init() throws { devnet = try Devnet.startPrivate(["--task-duration-ms", "300", "--results-upload-delay-ms", "100"]) }
    deinit { devnet.stop() }

    static let objectBaseModel = #"{"base_model":{"name":"crynux-ai/stable-diffusion-v1-5"},"prompt":"object form","task_config":{"num_images":1}}"#

    private func history(_ harness: PipelineHarness, _ id: Int64) throws -> [String] {
        try JobStore.events(try harness.db(), jobId: id).map(\.detail)
    }

    @Test func theRelaysSchemaDecidesBeforeAnyMoneyMoves() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // The era-D Relay's schema (the devnet's default): an object base_model would be paid, then refused.
        let refused = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: Self.objectBaseModel))
        try harness.runWorkersUntilIdle(timeout: 60)
        let job = try #require(try JobStore.job(try harness.db(), id: refused))
        #expect(job.status == .failed && job.lastError?.contains("stable-diffusion-task@68b52d2") == true, "\(job.lastError ?? "")")
        #expect(try harness.chainNonce() == 0 && harness.taskPendingCount() == 0)

        // A network whose Relay has the newer schema, and a worker told so: the same arguments go through.
        try devnet.configure(["sd_schema": "8fcf6e7"])
        defer { _ = try? devnet.configure(["sd_schema": "68b52d2"]) }
        let accepted = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: Self.objectBaseModel))
        try harness.runWorkersUntilIdle(timeout: 120, extra: ["--sd-schema", "8fcf6e7"])
        let done = try #require(try JobStore.job(try harness.db(), id: accepted))
        #expect(done.status == .succeeded, "\(done.lastError ?? "")")
        #expect(try harness.taskPendingCount() == 1)
    }

    @Test func anEthermintNodeWithALogRangeLimit() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Its wordings, no replacement of a pooled transaction, no nonce gaps, and eth_getLogs over
        // at most 3 blocks. Transactions wait 4 s in the pool and some are dropped, so that the
        // worker sends the same bytes again ("tx already in mempool") and tries replacements
        // ("invalid nonce; got N, expected N+1" while the first one is pooled).
        try devnet.configure(["rpc_flavor": "ethermint", "logs_max_block_range": 3, "tx_drop_rate": 0.2, "tx_mine_delay_ms": 4000])
        defer { _ = try? devnet.configure(["rpc_flavor": "geth", "logs_max_block_range": 10000, "tx_drop_rate": 0, "tx_mine_delay_ms": 0]) }
        let db = try harness.db()
        let ids = try (0..<6).map { i in
            try JobStore.submit(db, JobSubmission(kind: i % 3 == 2 ? "gpt" : "sd",
                                                  taskArgs: i % 3 == 2 ? PipelineHarness.gptArgs("ethermint \(i)")
                                                                       : PipelineHarness.sdArgs(images: 1 + i % 2, prompt: "ethermint \(i)")))
        }
        // Two processes on one wallet: nonces collide, and the node says so in its own words.
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 240, extra: ["--rebroadcast-after", "1", "--replace-after", "3"])
        for id in ids {
            let job = try #require(try JobStore.job(db, id: id))
            #expect(job.status == .succeeded, "job \(id): \(job.lastError ?? "")\n\(logs.suffix(3000))")
        }
        #expect(try harness.taskPendingCount() == ids.count)
        let transactions = try db.query("SELECT count(*) FROM crynux.job_transactions WHERE tx_hash IS NOT NULL AND mined_status IS NOT NULL")[0]
            .get(0, as: Int64.self)
        #expect(try harness.chainNonce() == UInt64(transactions))
        // Replacements were tried, and every answer was understood: "already in mempool" is
        // accepted, a used nonce is "too low"; only a gap (a nonce above the next) may read as a
        // refusal, which passes once the gap closes.
        let replacements = try db.query("""
            SELECT count(*) FROM crynux.job_transactions t
            WHERE purpose = 'create_task' AND EXISTS (SELECT 1 FROM crynux.job_transactions o
                WHERE o.job_id = t.job_id AND o.nonce = t.nonce AND o.signed_at < t.signed_at)
            """)[0].get(0, as: Int64.self)
        #expect(replacements > 0)
        let refusals = logs.split(separator: "\n").filter { $0.contains("node refused createTask") }
        #expect(!refusals.contains { $0.contains("already in mempool") }, "\(refusals)")
        for line in refusals {
            let gap = line.range(of: "invalid nonce; got ").map { line[$0.upperBound...] }
                .map { $0.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) } }
            #expect(gap.map { $0.count == 2 && $0[0] > $0[1] } == true, "not a gap: \(line)")
        }
    }

    @Test func aTaskTheRelayNeverSeesIsCancelledForItsRefund() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Like the Go relay after it skipped a block: "Task not found on the Blockchain" forever.
        try devnet.configure(["relay_blind_rate": 1, "task_timeout_s": 4, "watchdog_delay_ms": -1])
        defer { _ = try? devnet.configure(["relay_blind_rate": 0, "task_timeout_s": 900, "watchdog_delay_ms": 5000]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("never seen"),
                                                                     feeWei: "1000000000000000000"))
        let before = try harness.rpc.getBalance(harness.key.address)
        try harness.runWorkersUntilIdle(timeout: 120, extra: ["--upload-deadline", "3", "--cancel-grace", "1"])
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
        #expect(job.lastError?.contains("the relay did not accept the task arguments") == true, "\(job.lastError ?? "")")
        // The 1 ETH fee came back; only gas was spent.
        let after = try harness.rpc.getBalance(harness.key.address)
        #expect(before - after < BigUInt(10).power(16), "spent \(before - after) wei")
    }

    @Test func aCancelSimulatedBeforeTheDeadlineBlockWaitsForIt() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // No empty blocks: the chain's clock stands still until a transaction (or /admin/mine) makes
        // a block. An Ethermint node: its estimate reports the revert without code 3 or data.
        try devnet.configure(["idle_block_ms": 0, "task_timeout_s": 2, "watchdog_delay_ms": -1, "rpc_flavor": "ethermint"])
        defer { _ = try? devnet.configure(["idle_block_ms": 1000, "task_timeout_s": 900, "watchdog_delay_ms": 5000, "rpc_flavor": "geth"]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("devnet:stuck"),
                                                                     feeWei: "1000000000000000000"))
        let worker = try harness.startWorker(name: "waits", extra: ["--cancel-grace", "0", "--poll-interval-max", "1", "--exit-when-idle"])
        let refusedFirst = try harness.waitUntil(timeout: 60) {
            try self.history(harness, id).contains { $0.contains("cancelTask would revert (Task has not exceeded the deadline yet)") }
        }
        #expect(refusedFirst, "\(worker.output)")
        #expect(try harness.db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1 AND purpose = 'cancel_task'", [id])[0]
            .get(0, as: Int64.self) == 0)
        // Newer blocks (one every half second, as a live chain makes them): the same cancel now
        // passes, once a block's time is past the deadline (`block.timestamp > timeout`).
        var lastMined = Date.distantPast
        let cancelled = try harness.waitUntil(timeout: 60) {
            if -lastMined.timeIntervalSinceNow >= 0.5 {
                _ = try devnet.admin("POST", "/admin/mine")
                lastMined = Date()
            }
            return try JobStore.job(try harness.db(), id: id)?.status != .pending
        }
        #expect(cancelled, "\(worker.output)")
        #expect(worker.wait(timeout: 60) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
    }

    @Test func aCancelThatFreesNodesStartsAQueuedTaskInsideIt() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // Three nodes of one GPU model: one task runs, the next queues.
        try devnet.configure(["nodes": 3, "node_gpu_kinds": 1, "task_timeout_s": 3, "watchdog_delay_ms": -1])
        defer { _ = try? devnet.configure(["nodes": 12, "node_gpu_kinds": 2, "task_timeout_s": 900, "watchdog_delay_ms": 5000]) }
        let db = try harness.db()
        let stuck = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("devnet:stuck"),
                                                          feeWei: "1000000000000000000"))
        let worker = try harness.startWorker(name: "frees", extra: ["--cancel-grace", "0", "--poll-interval-max", "1"])
        defer { worker.signal(SIGTERM); _ = worker.wait(timeout: 30) }
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: stuck)?.taskId != nil }, "\(worker.output)")
        let queued = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "waits for nodes")))
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: queued)?.taskQueuedAt != nil }, "\(worker.output)")
        // The stuck task passes its deadline; its cancel frees the nodes, and the contract starts
        // the queued task inside that same transaction: the cancel's gas covered it.
        #expect(try harness.waitUntil(timeout: 120) {
            try JobStore.job(db, id: queued)?.status == .succeeded && JobStore.job(db, id: stuck)?.status != .pending
        }, "\(worker.output)")
        let job = try #require(try JobStore.job(db, id: stuck))
        #expect(job.status == .failed && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
        let cancelHash = try #require(try db.query("SELECT tx_hash FROM crynux.job_transactions WHERE job_id = $1 AND purpose = 'cancel_task'",
                                                   [stuck]).first?.get("tx_hash", as: String.self))
        let hash = try #require([UInt8](hex: cancelHash))
        let receipt = try #require(try harness.rpc.getTransactionReceipt(hash))
        let started = ABI.eventTopic("TaskStarted(uint256,uint256,address,address,bytes32,bytes32,uint256)")
        let queuedTask = try #require(try JobStore.job(db, id: queued)?.taskId)
        let startedHere = receipt.logs.filter { $0.topics.first == started && $0.data.count >= 32 && Array($0.data[0..<32]) == ABI.uintWord(queuedTask) }
        #expect(receipt.status && startedHere.count == 3, "cancel receipt: status \(receipt.status), \(receipt.logs.count) logs, gas \(receipt.gasUsed)")
    }

    @Test func aPriceBelowTheCheapestQueuedTaskIsWarnedAbout() throws {
        let harness = try PipelineHarness(devnet: devnet)
        // No nodes: every task queues.
        try devnet.configure(["nodes": 0])
        defer { _ = try? devnet.configure(["nodes": 12]) }
        let db = try harness.db()
        let dear = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "dear"),
                                                         feeWei: "1000000"))
        let worker = try harness.startWorker(name: "prices")
        defer { worker.signal(SIGTERM); _ = worker.wait(timeout: 30) }
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: dear)?.taskQueuedAt != nil }, "\(worker.output)")
        // 2 results for 10 wei: 5 wei each, against 1,000,000 for the queued task.
        let cheap = try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 2, prompt: "cheap"), feeWei: "10"))
        #expect(try harness.waitUntil(timeout: 60) { try JobStore.job(db, id: cheap)?.txNonce != nil }, "\(worker.output)")
        let signed = try history(harness, cheap).first { $0.hasPrefix("signed createTask") } ?? ""
        #expect(signed.contains("warning: its price of 5 wei per result is below the cheapest queued task's (1000000)"), "\(signed)")
        #expect(try history(harness, dear).first { $0.hasPrefix("signed createTask") }?.contains("warning") == false)
        #expect(worker.waitForOutput(containing: "below the cheapest queued task", timeout: 5))
    }
}
