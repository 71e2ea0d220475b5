import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres
import TestSupport

/// A fresh database, a fresh funded wallet, and a way to run worker processes against a devnet.
/// A wallet of its own lets a test count exactly its own transactions and TaskPending events.
struct PipelineHarness {
    let database: TestDatabase
    let devnet: Devnet
    let key: PrivateKey
    let rpc: EthereumClient

    init(devnet: Devnet) throws {
        self.devnet = devnet
        database = try TestDatabase.create(prefix: "pipeline")
        try Migrator.migrate(try database.connect())
        key = PrivateKey.random()
        try devnet.fund(key.address.checksummed)
        rpc = EthereumClient(url: devnet.rpcURL)
    }

    func db() throws -> PostgresConnection { try database.connect() }

    /// A worker paying with this harness's wallet, or with `keys` (written to private files).
    func startWorker(name: String, keys: [PrivateKey]? = nil, extra: [String] = []) throws -> WorkerProcess {
        var keyArguments: [String] = []
        var environment = ["CRYNUX_PRIVATE_KEY": key.hexForTests]
        if let keys {
            environment = [:]
            for key in keys { keyArguments += ["--private-key-file", try Self.keyFile(key)] }
        }
        return try WorkerProcess(
            arguments: ["--database-url", database.url, "--devnet", devnet.file, "--worker-name", name,
                        "--poll-interval", "0.3", "--poll-interval-max", "2", "--fee-per-result-wei", "1000",
                        "--keeper-interval", "1"] + keyArguments + extra,
            environment: environment)
    }

    static func keyFile(_ key: PrivateKey) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("key-\(UInt32.random(in: 0...UInt32.max))").path
        guard FileManager.default.createFile(atPath: path, contents: Data(key.hexForTests.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TestSetupError("cannot write \(path)")
        }
        return path
    }

    /// Runs `count` workers until no job is pending; returns their logs for failure messages.
    @discardableResult
    func runWorkersUntilIdle(count: Int = 1, timeout: Double = 300, keys: [PrivateKey]? = nil, extra: [String] = []) throws -> String {
        let workers = try (0..<count).map { try startWorker(name: "w\($0)", keys: keys, extra: ["--exit-when-idle"] + extra) }
        let deadline = Date().addingTimeInterval(timeout)
        var logs = ""
        var failed = false
        for worker in workers {
            // One deadline for all; once one worker fails, the rest are killed too.
            let status = failed ? worker.wait(timeout: 0) : worker.wait(timeout: max(deadline.timeIntervalSinceNow, 0))
            logs += worker.output
            if status != 0 { failed = true }
        }
        if failed { throw TestSetupError("a worker did not exit cleanly within \(Int(timeout)) s:\n\(logs.suffix(4000))") }
        return logs
    }

    /// Waits until a transaction of the job has been sent at least once; false on timeout.
    func waitUntilBroadcast(jobId: Int64, timeout: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let sent = try db().query("SELECT count(*) FROM crynux.job_transactions WHERE job_id = $1 AND send_count > 0", [jobId])[0]
                .get(0, as: Int64.self)
            if sent > 0 { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    func jobs() throws -> [Job] {
        try db().query("SELECT * FROM crynux.jobs ORDER BY id").map { try Job(row: $0) }
    }

    /// TaskPending events whose indexed creator is this test's wallet (or `wallet`).
    func taskPendingCount(of wallet: Address? = nil) throws -> Int {
        let creator = [UInt8](repeating: 0, count: 12) + (wallet ?? key.address).bytes
        let filter = LogFilter(fromBlock: .earliest, toBlock: .latest, address: Address(hex: devnet.taskContract),
                               topics: [[ABI.eventTopic("TaskPending(uint256,uint256,address,bytes32,bytes32)")], [creator]])
        return try rpc.getLogs(filter).count
    }

    func chainNonce(of wallet: Address? = nil) throws -> UInt64 { try rpc.getTransactionCount(wallet ?? key.address, block: .latest) }

    /// For a failure message: each job with more than one stored transaction, its transactions, its history and
    /// its log lines.
    func historyOfJobsWithSeveralTransactions(logs: String) throws -> String {
        let db = try db()
        let ids = try db.query("SELECT job_id FROM crynux.job_transactions GROUP BY job_id HAVING count(*) > 1 ORDER BY job_id")
            .map { try $0.get(0, as: Int64.self) }
        var text = ""
        for id in ids {
            text += "job \(id):\n"
            let columns = "purpose || ' nonce ' || nonce || ' price ' || gas_price_wei || ' sent ' || send_count || ' block ' || coalesce(mined_block::text, '-') || ' ok ' || coalesce(mined_status::text, '-') || ' signed ' || signed_at"
            for row in try db.query("SELECT \(columns) FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at", [id]) {
                text += "  tx \(try row.get(0, as: String.self))\n"
            }
            let event = "at || ' ' || to_status || '/' || to_stage || ' ' || coalesce(worker, '') || ' ' || detail"
            for row in try db.query("SELECT \(event) FROM crynux.job_events WHERE job_id = $1 ORDER BY id", [id]) {
                text += "  event \(try row.get(0, as: String.self))\n"
            }
            for line in logs.split(separator: "\n") where line.contains("job=\(id) ") || line.hasSuffix("job=\(id)") || line.contains("\"job\":\(id),") {
                text += "  log \(line)\n"
            }
        }
        return text
    }

    /// The reasons of every TaskAborted event on the chain.
    func abortReasons() throws -> [String] {
        let filter = LogFilter(fromBlock: .earliest, toBlock: .latest, address: Address(hex: devnet.taskContract),
                               topics: [[ABI.eventTopic("TaskAborted(uint256,string)")]])
        return try rpc.getLogs(filter).compactMap { try ABI.decode([.string], from: $0.data).first?.string }
    }

    /// Waits until `condition` holds; false when `timeout` passes first.
    func waitUntil(timeout: Double = 60, _ condition: () throws -> Bool) rethrows -> Bool {
        try TestSupport.waitUntil(timeout: timeout, condition)
    }

    static func sdArgs(images: Int, prompt: String = "a lighthouse at dusk") -> String {
        #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"\#(prompt)","negative_prompt":"","task_config":{"num_images":\#(images),"steps":10,"seed":\#(images * 7),"cfg":5,"safety_checker":false}}"#
    }

    static func gptArgs(_ content: String) -> String {
        #"{"model":"gpt2","messages":[{"role":"user","content":"\#(content)"}],"generation_config":{"max_new_tokens":30},"seed":42}"#
    }
}

func sha256Hex(_ row: PostgresRow) throws -> String {
    try row.get("sha256", as: [UInt8].self).map { String(format: "%02x", $0) }.joined()
}
