import BigInt
import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// What a backend sees: crynux_job_finished from real workers on the local Lithium network, and
/// the Python example of the README (psycopg from PyPI) run as a user would.
@Suite("A backend told when its jobs end (end to end)")
struct BackendEndToEndTests {
    let devnet: Devnet
    init() throws { devnet = try Devnet.sharedLithium() }

    func harness() throws -> PipelineHarness {
        let harness = try PipelineHarness(devnet: devnet)
        try devnet.admin("POST", "/admin/lithium/accounts/\(harness.key.address.checksummed)", ["balance": String(1000 * BigUInt(10).power(18))])
        return harness
    }

    @Test func aListeningBackendHearsEveryEndOnceInTheOrderOfTheCommits() throws {
        let harness = try harness()
        let db = try harness.db()
        let setting: String = try db.query("SHOW track_commit_timestamp")[0].get(0)
        guard setting == "on" else {
            throw TestSetupError("this test reads commit timestamps: start PostgreSQL with track_commit_timestamp=on (scripts/test does)")
        }
        let listener = try harness.db()
        try listener.listen(JobStore.jobFinishedChannel)
        var ids: [Int64] = []
        for i in 0..<44 { ids.append(try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: LithiumEndToEndTests.gptArgs(500 + i)))) }
        // Three the worker refuses, three an operator cancels before any worker sees them.
        for i in 0..<3 { ids.append(try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: #"{"model":"nope \#(i)"}"#))) }
        for _ in 0..<3 {
            let id = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: LithiumEndToEndTests.gptArgs(600), notBefore: Date(timeIntervalSinceNow: 3600)))
            #expect(try JobStore.cancel(db, id: id) == .cancelled)
            ids.append(id)
        }
        let logs = try harness.runWorkersUntilIdle(count: 2, timeout: 300)
        try db.notify(JobStore.jobFinishedChannel, payload: #"{"marker":true}"#)
        var heard: [(id: Int64, status: String, results: Int)] = []
        while true {
            let note = try #require(try listener.waitForNotification(timeout: 30), "the marker never arrived")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(note.payload.utf8)) as? [String: Any])
            if object["marker"] != nil { break }
            heard.append(((object["id"] as? NSNumber)?.int64Value ?? -1, object["status"] as? String ?? "", (object["results"] as? NSNumber)?.intValue ?? -1))
        }
        // Each job once, with the status and results count its row has.
        #expect(heard.count == ids.count && Set(heard.map(\.id)) == Set(ids), "heard \(heard.count) of \(ids.count)\n\(logs.suffix(2000))")
        let rows = try db.query("""
            SELECT id, status, (SELECT count(*) FROM crynux.job_results r WHERE r.job_id = j.id) AS results,
                   pg_xact_commit_timestamp(xmin) AS committed
            FROM crynux.jobs j ORDER BY committed, id
            """)
        var byId: [Int64: (status: String, results: Int64)] = [:]
        for row in rows { byId[try row.get("id")] = (try row.get("status"), try row.get("results")) }
        for h in heard { #expect(byId[h.id]?.status == h.status && byId[h.id]?.results == Int64(h.results), "job \(h.id)") }
        #expect(heard.filter { $0.status == "succeeded" }.count == 44 && heard.filter { $0.status == "failed" }.count == 3)
        // In the order of their commits (each finished row's last change is its end).
        let committed = try rows.map { try $0.get("id", as: Int64.self) }
        #expect(heard.map(\.id) == committed, "notifications out of commit order")
    }

    /// Four workers, 200 jobs, a budget of 30 tasks' fees per 8 s: summed on the Relay's own
    /// ledger, no window holds more than the budget of the jobs' own tasks (a validation group's
    /// two more tasks are counted but not held back: holding them could lose the first task's
    /// fee), the rest waited and finished as the window moved on, and nothing was lost.
    @Test func fourWorkersUnderABudgetNeverSpendPastItInAnyWindow() throws {
        let harness = try harness()
        let db = try harness.db()
        let fee = BigUInt(10).power(18), window = 8.0
        for i in 0..<200 { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: LithiumEndToEndTests.gptArgs(700 + i))) }
        let logs = try harness.runWorkersUntilIdle(count: 4, timeout: 600,
                                                   extra: ["--budget", "30cnx/8s", "--gpt-fee-wei", String(fee), "--keeper-interval", "1"])
        let jobs = try harness.jobs()
        #expect(jobs.count == 200 && jobs.allSatisfy { $0.status == .succeeded }, "\(jobs.filter { $0.status != .succeeded }.map { "\($0.id) \($0.status) \($0.lastError ?? "")" })\n\(logs.suffix(2000))")
        // The Relay's ledger: every charge with its time; which were a job's own task is ours to say.
        let account = try #require(try devnet.admin("GET", "/admin/lithium/accounts/\(harness.key.address.checksummed)") as? [String: Any])
        var members: [String: Int] = [:]
        for row in try db.query("SELECT commitment, member::int AS member FROM crynux.relay_tasks") {
            members[try row.get("commitment")] = Int(try row.get("member", as: Int32.self))
        }
        var charges: [(at: Double, own: Bool, amount: BigUInt)] = []
        for event in account["events"] as? [[String: Any]] ?? [] where (event["type"] as? NSNumber)?.intValue == 4 {
            let reason = event["reason"] as? String ?? "", commitment = String(reason.drop(while: { $0 != "-" }).dropFirst())
            charges.append(((event["time"] as? NSNumber)?.doubleValue ?? 0, members[commitment] == 0, BigUInt(event["amount"] as? String ?? "") ?? 0))
        }
        charges.sort { $0.at < $1.at }
        #expect(charges.filter(\.own).count == 200, "\(charges.count) charges")
        // Every window of the budget's length (less a second for the create request's way to the
        // Relay, whose clock stamps the charge after ours stamped the payment) ending at a charge.
        var fullest = BigUInt(0)
        for end in charges {
            let inWindow = charges.filter { $0.own && $0.at <= end.at && $0.at > end.at - (window - 1) }.reduce(BigUInt(0)) { $0 + $1.amount }
            fullest = max(fullest, inWindow)
        }
        #expect(fullest <= 30 * fee, "the fullest window held \(fullest / fee) CNX")
        #expect(fullest >= 20 * fee, "the fullest window held \(fullest / fee) CNX")
        // The workers said so when the budget filled: a warning at 80 %.
        #expect(logs.contains("the budget of 30 CNX per 8s of wallet \(harness.key.address.checksummed) is "), "\(logs.suffix(2000))")
        // The rest waited for the window to move: 200 tasks at 30 per 8 s take six windows or more.
        let span = (charges.last?.at ?? 0) - (charges.first?.at ?? 0)
        #expect(span >= 6 * window, "200 tasks in \(span) s")
    }

    @Test func thePythonExampleSubmitsWaitsAndSavesTheImages() throws {
        let harness = try harness()
        let worker = try harness.startWorker(name: "example")
        defer { worker.signal(SIGTERM); _ = worker.wait(timeout: 30) }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("backend-\(UInt32.random(in: 0...UInt32.max))")
        let process = Process()
        process.executableURL = Devnet.repositoryRoot.appendingPathComponent("scripts/examples/backend")
        process.arguments = [out.path, "a backend's lighthouse"]
        process.environment = ProcessInfo.processInfo.environment.merging(["DATABASE_URL": harness.database.url, "BACKEND_TIMEOUT_S": "240"]) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(output)\n\(worker.output.suffix(2000))")
        let db = try harness.db()
        let job = try #require(try db.query("SELECT id FROM crynux.jobs WHERE idempotency_key = $1", ["example-a backend's lighthouse"]).first)
        let id: Int64 = try job.get("id")
        #expect(output.hasPrefix("job \(id)\n"), "\(output)")
        let stored = try JobStore.results(db, jobIds: [id])
        #expect(stored.count == 2)
        for (_, file) in stored {
            let path = out.appendingPathComponent("job-\(id)-\(file.index).png")
            let written = try [UInt8](Data(contentsOf: path))
            #expect(written == file.data && written.starts(with: [0x89, 0x50, 0x4E, 0x47]), "\(path.path)")
            #expect(output.contains(path.path))
        }
    }
}
