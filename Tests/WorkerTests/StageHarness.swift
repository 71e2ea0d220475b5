import BigInt
import Crynux
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport
@testable import Worker

/// The stage machine in-process: real PostgreSQL, a scripted network, one wallet.
struct StageHarness {
    let database: TestDatabase
    let db: PostgresConnection
    let network = ScriptedNetwork()
    let wallet: Wallet
    let wallets: [Wallet]
    let config: WorkerConfig
    let pipeline: Pipeline
    static let worker = "stage-test"

    init(wallets count: Int = 1, configure: (inout WorkerConfig) -> Void = { _ in }) throws {
        database = try TestDatabase.create(prefix: "stages")
        db = try database.connect()
        try Migrator.migrate(db)
        let keys = (0..<count).map { _ in PrivateKey.random() }
        var config = WorkerConfig(databaseURL: database.url, rpcURL: "http://127.0.0.1:9/rpc", relayURL: "http://127.0.0.1:9",
                                  expectedChainId: nil, taskContract: network.taskAddress,
                                  taskQueueContract: Address(bytes: [UInt8](repeating: 0x22, count: 20)), keys: keys,
                                  workerName: Self.worker)
        config.retryBase = 0.01
        config.retryMax = 0.05
        configure(&config)
        self.config = config
        let wallets = keys.map { Wallet(key: $0, chainId: 10_000) }
        self.wallets = wallets
        wallet = wallets[0]
        for wallet in wallets { try JobStore.reconcileWallet(db, wallet.address, chainId: 10_000, pendingNonce: 0) }
        pipeline = Pipeline(network: network, wallets: wallets, config: config, worker: Self.worker,
                            log: WorkerLog(name: Self.worker, quiet: true))
    }

    @discardableResult
    func submit(kind: String = "sd", _ args: String = PipelineHarness.sdArgs(images: 2), feeWei: String? = nil) throws -> Int64 {
        try JobStore.submit(db, JobSubmission(kind: kind, taskArgs: args, feeWei: feeWei))
    }

    /// Makes the pending jobs due now and runs one claim of them through the pipeline.
    @discardableResult
    func runOnce(_ id: Int64) throws -> Job {
        try db.execute("UPDATE crynux.jobs SET run_at = now() WHERE status = 'pending'")
        let jobs = try JobStore.claim(db, worker: Self.worker, wallets: wallets.map(\.address), limit: 16, leaseSeconds: 60)
        pipeline.run(db, jobs, stopping: { false })
        return try job(id)
    }

    func job(_ id: Int64) throws -> Job {
        guard let job = try JobStore.job(db, id: id) else { throw TestSetupError("no job \(id)") }
        return job
    }

    /// A job moved straight to `stage` with the given facts, as the stages before it would leave it.
    func jobAt(_ stage: JobStage, kind: String = "sd", args: String = PipelineHarness.sdArgs(images: 2),
               facts: JobFacts = JobFacts(txBlockNumber: 3, taskId: 42)) throws -> Int64 {
        let id = try submit(kind: kind, args)
        // Only this job is due for the set-up claim.
        try db.execute("UPDATE crynux.jobs SET run_at = now() + interval '1 hour' WHERE id <> $1 AND status = 'pending'", [id])
        let claimed = try JobStore.claim(db, worker: "setup", limit: 1, leaseSeconds: 60)
        guard let job = claimed.first, job.id == id else { throw TestSetupError("could not claim job \(id)") }
        var facts = facts
        facts.cap = facts.cap ?? (kind == "sd" ? 2 : 1)
        guard try JobStore.apply(db, .advance(to: stage, facts: facts, note: "set up at \(stage.rawValue)"), to: job, worker: "setup") else {
            throw TestSetupError("could not move job \(id) to \(stage.rawValue)")
        }
        return id
    }

    func details(_ id: Int64) throws -> [String] { try JobStore.events(db, jobId: id).map(\.detail) }

    func transactions(_ id: Int64) throws -> [StoredTransaction] {
        try db.query("SELECT * FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at, tx_hash", [id]).map {
            try StoredTransaction(row: $0)
        }
    }

    func sendCount(_ hash: [UInt8]) throws -> Int {
        try db.query("SELECT send_count FROM crynux.job_transactions WHERE tx_hash = $1", [hash.hex])[0].get(0)
    }

    func walletNonce(_ index: Int = 0) throws -> UInt64? { try JobStore.nextNonce(db, wallet: wallets[index].address) }

    /// Pretends the job's transactions were sent and signed long ago (re-broadcast and replacement timers).
    func age(_ id: Int64, seconds: Int) throws {
        try db.execute("""
            UPDATE crynux.job_transactions SET signed_at = signed_at - make_interval(secs => $2),
                last_sent_at = last_sent_at - make_interval(secs => $2) WHERE job_id = $1
            """, [id, Double(seconds)])
    }

    func ageStage(_ id: Int64, seconds: Int) throws {
        try db.execute("UPDATE crynux.jobs SET stage_entered_at = stage_entered_at - make_interval(secs => $2) WHERE id = $1",
                       [id, Double(seconds)])
    }
}
