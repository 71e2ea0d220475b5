import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// The same guarantees as era D's end-to-end tests, on a local Hydrogen network (era B): the wallet
/// approves CNX for the Task contract, createTask takes 4 arguments and no value, three nodes are
/// selected at once and there is no queue. The Hydrogen network scripts/test started (30 nodes)
/// serves this suite alone: several tests turn its global knobs, so they run one at a time and
/// put every knob back.
@Suite("Hydrogen end to end", .serialized)
struct HydrogenEndToEndTests {
    let devnet: Devnet
    static let cnx = BigUInt(10).power(18)

    init() throws { devnet = try Devnet.sharedHydrogen() }

    func harness() throws -> PipelineHarness {
        let harness = try PipelineHarness(devnet: devnet)
        try harness.setCNX(10_000 * Self.cnx)
        return harness
    }

    @Test func manyJobsThroughSeveralWorkersSharingOneWallet() throws {
        let harness = try harness()
        let db = try harness.db()
        for i in 0..<16 {
            try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 3, prompt: "hydrogen \(i)")))
        }
        for i in 0..<8 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("hydrogen \(i)?"))) }
        let logs = try harness.runWorkersUntilIdle(count: 3, timeout: 300)

        let jobs = try harness.jobs()
        let notDone = jobs.filter { $0.status != .succeeded }
        #expect(notDone.isEmpty, "not succeeded: \(notDone.map { "\($0.id) \($0.status) \($0.stage) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        for job in jobs {
            let taskId = try #require(job.taskId)
            let expected = try devnet.uploadedDigests(taskId: taskId)
            let rows = try db.query("SELECT result_index, sha256 FROM crynux.job_results WHERE job_id = $1 ORDER BY result_index", [job.id])
            #expect(rows.count == (job.kind == "sd" ? Int(job.cap ?? 0) : 1) && rows.count == expected.count, "job \(job.id)")
            for row in rows { #expect(try sha256Hex(row) == expected[try row.get("result_index", as: Int.self)], "job \(job.id)") }
            // The profile and the CNX the contract pulled (10 CNX per node × 3) are on the row.
            #expect(job.networkProfile == "hydrogen" && job.tokenFeeWei == 30 * Self.cnx, "job \(job.id)")
        }
        // One paid task per job; one approval for the whole wallet; nonces = transactions sent.
        #expect(try harness.hydrogenTasksCreated().count == 24)
        #expect(Set(jobs.compactMap(\.taskId)).count == 24)
        let purposes = try db.query("SELECT purpose, count(*) AS n FROM crynux.job_transactions GROUP BY 1")
            .reduce(into: [String: Int64]()) { $0[try $1.get("purpose")] = try $1.get("n") }
        #expect(purposes["approve"] == 1, "\(purposes)")
        let sent = purposes.values.reduce(0, +)
        #expect(try harness.chainNonce() == UInt64(sent))
        #expect(try db.query("SELECT next_nonce FROM crynux.wallets")[0].get(0, as: Int64.self) == sent)
        #expect(try db.query("SELECT count(*) FROM crynux.jobs WHERE approval_tx_hash IS NOT NULL")[0].get(0, as: Int64.self) == 1)
        // Exactly the 24 fees left the wallet.
        #expect(try harness.cnxBalance() == (10_000 - 24 * 30) * Self.cnx)
        // 24 jobs, ten tasks' worth of nodes, three workers estimating against the same free
        // nodes: admitted against the Node contract's count, no createTask reverted for want of
        // them (each such revert costs its gas), as the chain's receipts say.
        var reverted: [String] = []
        for job in jobs {
            for tx in try JobStore.allTransactions(db, jobId: job.id) where tx.purpose == .createTask {
                if let receipt = try harness.rpc.getTransactionReceipt(tx.hash), !receipt.status {
                    reverted.append("job \(job.id) \(tx.hash.hex) block \(receipt.blockNumber): \(try JobStore.events(db, jobId: job.id).map(\.detail))")
                }
            }
        }
        #expect(reverted.isEmpty && jobs.allSatisfy { $0.recreations == 0 }, "reverted createTasks: \(reverted)")
    }

    @Test func aWorkerKilledRightAfterBroadcastingIsFinishedByAnotherWithoutASecondTask() throws {
        let harness = try harness()
        // An allowance already in place: the kill lands on the createTask, not on the approval.
        try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("warm-up")))
        try harness.runWorkersUntilIdle()
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "killed")))
        try devnet.configure(["tx_mine_delay_ms": 4000])
        defer { _ = try? devnet.configure(["tx_mine_delay_ms": 0]) }
        let first = try harness.startWorker(name: "doomed", extra: ["--lease-seconds", "3"])
        #expect(try harness.waitUntilBroadcast(jobId: id, timeout: 30), "the first worker never broadcast:\n\(first.output)")
        first.signal(SIGKILL)
        _ = first.wait(timeout: 10)
        try harness.runWorkersUntilIdle(timeout: 180)
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")
        #expect(try harness.hydrogenTasksCreated().count == 2)
        let sent = try harness.db().query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self)
        #expect(try harness.chainNonce() == UInt64(sent))
        #expect(try harness.cnxBalance() == (10_000 - 2 * 30) * Self.cnx)
    }

    @Test func tooFewCNXWaitsWithNothingSpentAndResumesOnceFundedWhileTooLittleAllowanceFails() throws {
        let poor = try harness()
        try poor.setCNX(29 * Self.cnx)
        let id = try JobStore.submit(try poor.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("poor")))
        let worker = try poor.startWorker(name: "poor", extra: ["--exit-when-idle", "--funds-retry", "1"])
        let waiting = try poor.waitUntil(timeout: 60) {
            try JobStore.job(try poor.db(), id: id)?.lastError?.hasPrefix("waiting for funds") == true
        }
        #expect(waiting, "\(worker.output)")
        #expect(try poor.chainNonce() == 0 && (try JobStore.job(try poor.db(), id: id))?.status == .pending)
        try poor.setCNX(10_000 * Self.cnx)
        #expect(worker.wait(timeout: 180) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(try poor.db(), id: id))
        #expect(job.status == .succeeded, "\(job.lastError ?? "")")

        // A worker told never to approve: the contract's "Not enough allowance for task" never
        // costs a transaction.
        let unapproved = try harness()
        let other = try JobStore.submit(try unapproved.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("unapproved")))
        try unapproved.runWorkersUntilIdle(extra: ["--approve", "none"])
        let refused = try #require(try JobStore.job(try unapproved.db(), id: other))
        #expect(refused.status == .failed && refused.lastError?.hasPrefix("not enough allowance") == true, "\(refused.lastError ?? "")")
        #expect(try unapproved.chainNonce() == 0 && (try unapproved.cnxBalance()) == 10_000 * Self.cnx)
    }

    @Test func noFreeNodesWaitsWithNothingSignedThenSucceeds() throws {
        let harness = try harness()
        try devnet.configure(["nodes": 0])
        defer { _ = try? devnet.configure(["nodes": 30]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1, prompt: "no nodes")))
        let worker = try harness.startWorker(name: "nodes", extra: ["--exit-when-idle", "--admission-retry", "0.5"])
        // The contract would revert "No available nodes": the job waits in PostgreSQL.
        let waiting = try harness.waitUntil(timeout: 60) {
            try JobStore.events(try harness.db(), jobId: id).contains { $0.detail.hasPrefix("waiting for free nodes") }
        }
        #expect(waiting, "\(worker.output)")
        let creates = try harness.db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1 AND purpose = 'create_task'", [id])
        #expect(try creates[0].get(0, as: Int64.self) == 0)
        try devnet.configure(["nodes": 30])
        #expect(worker.wait(timeout: 120) == 0, "\(worker.output)")
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .succeeded && job.taskQueuedAt != nil, "\(job.lastError ?? "")")
        #expect(try harness.hydrogenTasksCreated().count == 1)
    }

    @Test func anAbortedTaskFailsWithTheOnChainReason() throws {
        let harness = try harness()
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("please devnet:abort")))
        try harness.runWorkersUntilIdle()
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed && job.abortReason == "Task error reported", "\(job.lastError ?? "")")
        #expect(job.retryStage == .create)
        // "Task error reported" pays the reporting nodes: nothing comes back.
        #expect(try harness.cnxBalance() == (10_000 - 30) * Self.cnx)
    }

    @Test func aTaskPastItsDeadlineIsCancelledForItsCNX() throws {
        let harness = try harness()
        try devnet.configure(["task_timeout_s": 3, "watchdog_delay_ms": -1])
        defer { _ = try? devnet.configure(["task_timeout_s": 900, "watchdog_delay_ms": 5000]) }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("devnet:stuck")))
        try harness.runWorkersUntilIdle(timeout: 120, extra: ["--cancel-grace", "1"])
        let job = try #require(try JobStore.job(try harness.db(), id: id))
        #expect(job.status == .failed && job.abortReason == "Task Cancelled", "\(job.lastError ?? "")")
        let purposes = try harness.db().query("SELECT purpose FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at", [id])
            .map { try $0.get("purpose", as: String.self) }
        #expect(purposes == ["approve", "create_task", "cancel_task"])
        // The whole fee came back in CNX.
        #expect(try harness.cnxBalance() == 10_000 * Self.cnx)
    }

    @Test func flakyRPCAndRelayStillGiveExactlyOneTaskPerJob() throws {
        let harness = try harness()
        try devnet.configure(["rpc_error_rate": 0.15, "rpc_http500_rate": 0.1, "relay_http500_rate": 0.2])
        defer { _ = try? devnet.configure(["rpc_error_rate": 0, "rpc_http500_rate": 0, "relay_http500_rate": 0]) }
        let db = try harness.db()
        for i in 0..<4 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: PipelineHarness.sdArgs(images: 1 + i % 2, prompt: "flaky \(i)"))) }
        for i in 0..<2 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("flaky \(i)"))) }
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 240, extra: ["--poll-interval-max", "1", "--retry-max", "4"])
        try devnet.configure(["rpc_error_rate": 0, "rpc_http500_rate": 0, "relay_http500_rate": 0])
        let jobs = try harness.jobs()
        #expect(jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(3000))")
        #expect(try harness.hydrogenTasksCreated().count == 6)
        let sent = try db.query("SELECT count(*) FROM crynux.job_transactions")[0].get(0, as: Int64.self)
        #expect(try harness.chainNonce() == UInt64(sent))
        #expect(try harness.cnxBalance() == (10_000 - 6 * 30) * Self.cnx)
        let retries = try db.query("SELECT count(*) FROM crynux.job_events WHERE detail LIKE 'retrying after error%'")[0].get(0, as: Int64.self)
        #expect(retries > 0)
    }
}

extension PipelineHarness {
    var tokenAddress: Address {
        get throws {
            guard let token = devnet.tokenContract.flatMap(Address.init(hex:)) else { throw TestSetupError("devnet.json has no token_contract") }
            return token
        }
    }

    /// Sets this harness's wallet's CNX balance (Hydrogen).
    func setCNX(_ wei: BigUInt) throws {
        try devnet.admin("POST", "/admin/cnx", ["address": key.address.checksummed, "balance": wei.description])
    }

    func cnxBalance() throws -> BigUInt {
        let data = ABI.selector("balanceOf(address)") + [UInt8](repeating: 0, count: 12) + key.address.bytes
        return BigUInt(Data(try rpc.call(CallRequest(to: try tokenAddress, data: data))))
    }

    /// The distinct ids of the tasks this wallet created: each Hydrogen task logs three
    /// TaskCreated events (one per selected node), creator in topic1, task id the first data word.
    func hydrogenTasksCreated() throws -> Set<BigUInt> {
        let topic = ABI.eventTopic("TaskCreated(uint256,uint256,address,address,bytes32,bytes32,uint256)")
        let filter = LogFilter(fromBlock: .earliest, toBlock: .latest, address: Address(hex: devnet.taskContract),
                               topics: [[topic], [[UInt8](repeating: 0, count: 12) + key.address.bytes]])
        return Set(try rpc.getLogs(filter).map { BigUInt(Data($0.data.prefix(32))) })
    }
}
