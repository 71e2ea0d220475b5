import BigInt
import Foundation
import JobQueue
import Postgres
import StrictJSON
import TestSupport
import Testing

/// The operator's command line: every verb explains itself with an example, `status` and `show`
/// speak JSON as well as tables, and the exit codes are the documented ones.
@Suite("Command line")
struct CommandLineTests {
    let database: TestDatabase
    var env: [String: String] { ["DATABASE_URL": database.url] }

    init() throws {
        database = try TestDatabase.create(prefix: "cli")
        try Migrator.migrate(try database.connect())
    }

    @Test func everyVerbsHelpHasAnExample() throws {
        let verbs = ["migrate", "run", "submit", "wait", "status", "show", "cancel", "retry", "results", "prune", "bench-queue"]
        let top = try Products.runWorker(["--help"])
        #expect(top.status == 0)
        for verb in verbs { #expect(top.output.contains(verb), "\(verb) missing from the overview") }
        #expect(top.output.contains("Exit codes: 0 done; 1 failed") && top.output.contains("3 no such job") && top.output.contains("64 a usage error"))
        for verb in verbs {
            let help = try Products.runWorker([verb, "--help"])
            #expect(help.status == 0, "\(verb): \(help.output)")
            #expect(help.output.contains("Example") && help.output.contains("crynux-worker \(verb)"), "\(verb) --help has no example:\n\(help.output)")
        }
    }

    /// `wait` blocks on crynux_job_finished until every job ended, and its exit code says how
    /// they ended: 0 all succeeded, 4 one failed, 5 one was cancelled, 6 timed out, 3 no such job.
    @Test func waitBlocksUntilTheJobsEndAndExitsByHowTheyEnded() throws {
        let db = try database.connect()
        let ids = try (0..<4).map { try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: "{\"n\":\($0)}")) }
        func end(_ id: Int64, _ status: String, _ error: String? = nil) throws {
            try db.execute("UPDATE crynux.jobs SET status = $2, finished_at = now(), last_error = $3 WHERE id = $1", [id, status, error])
        }
        // Started while both jobs are pending; they end only once it listens.
        let waiting = try WorkerProcess(arguments: ["--timeout", "2m", "--json", String(ids[0]), String(ids[1])], environment: env, command: "wait")
        let listening = try waitUntil(timeout: 30) {
            try db.query("SELECT 1 FROM pg_stat_activity WHERE state = 'idle' AND query LIKE '%crynux.job_results r WHERE r.job_id%'").count > 0
        }
        #expect(listening, "wait never listened: \(waiting.output)")
        try end(ids[0], "succeeded")
        #expect(waiting.process.isRunning, "\(waiting.output)")
        try end(ids[1], "succeeded")
        #expect(waiting.wait(timeout: 30) == 0, "\(waiting.output)")
        let array = try #require(try JSONSerialization.jsonObject(with: Data(waiting.output.utf8)) as? [[String: Any]])
        #expect(array.map { ($0["id"] as? NSNumber)?.int64Value } == [ids[0], ids[1]] && array.allSatisfy { $0["status"] as? String == "succeeded" })

        try end(ids[2], "failed", "createTask reverted: Invalid task type")
        let failed = try Products.runWorker(["wait", String(ids[0]), String(ids[2])], environment: env)
        #expect(failed.status == 4 && failed.output.contains("\(ids[2]) failed: createTask reverted: Invalid task type"), "\(failed.output)")
        let timedOut = try Products.runWorker(["wait", "--timeout", "1s", String(ids[0]), String(ids[3])], environment: env)
        #expect(timedOut.status == 6 && timedOut.output.contains("\(ids[3]) still pending after 1s"), "\(timedOut.output)")
        #expect(try JobStore.cancel(db, id: ids[3]) == .cancelled)
        #expect(try Products.runWorker(["wait", String(ids[0]), String(ids[3])], environment: env).status == 5)
        #expect(try Products.runWorker(["wait", String(ids[2]), String(ids[3])], environment: env).status == 4)
        let missing = try Products.runWorker(["wait", String(ids[0]), "999999"], environment: env)
        #expect(missing.status == 3 && missing.output.contains("no job 999999"), "\(missing.output)")
        #expect(try Products.runWorker(["wait", "--timeout", "soon", String(ids[0])], environment: env).status == 64)
    }

    /// A SIGTERM while the worker still waits for its node at start is the stop asked for: exit 0.
    @Test func aStopWhileStartingIsClean() throws {
        var env = self.env
        env["CRYNUX_PRIVATE_KEY"] = String(repeating: "1", count: 64)
        let zero = "0x" + String(repeating: "0", count: 39) + "1"
        let worker = try WorkerProcess(arguments: ["--profile", "era-d", "--rpc-url", "http://127.0.0.1:9", "--relay-url", "http://127.0.0.1:9",
                                                   "--task-contract", zero, "--task-queue-contract", zero], environment: env)
        #expect(worker.waitForOutput(containing: "failed (", timeout: 30), "\(worker.output)")
        worker.signal(SIGTERM)
        #expect(worker.wait(timeout: 30) == 0, "\(worker.output)")
        #expect(worker.output.contains("stopped while starting"), "\(worker.output)")
    }

    /// Numbers that do not fit are usage errors named by their flag, never a trap (they trapped
    /// where they became a timer or a 32-bit column).
    @Test func numbersThatDoNotFitAreRefusedByName() throws {
        var env = self.env
        env["CRYNUX_PRIVATE_KEY"] = String(repeating: "1", count: 64)
        for (flag, value) in [("--shutdown-grace", "inf"), ("--lease-seconds", "1e300"), ("--poll-interval", "nan"), ("--concurrency", "0")] {
            let run = try Products.runWorker(["run", "--relay-url", "http://127.0.0.1:9", flag, value], environment: env)
            #expect(run.status == 64 && run.output.contains(flag), "\(flag) \(value): \(run.status) \(run.output)")
        }
        let submit = try Products.runWorker(["submit", "--kind", "gpt", "--priority", "99999999999", "--file", "/dev/null"], environment: self.env)
        #expect(submit.status == 64 && submit.output.contains("--priority"), "\(submit.status) \(submit.output)")
        // Below the command line, the store refuses it too.
        #expect(throws: PostgresError.self) {
            try JobStore.submit(try database.connect(), JobSubmission(kind: "gpt", taskArgs: "{}", priority: Int(Int32.max) + 1))
        }
    }

    @Test func statusIsAnAlignedTableAndJSON() throws {
        let db = try database.connect()
        let args = #"{"base_model":"m","prompt":"status","task_config":{"num_images":1}}"#
        for _ in 0..<12 { try JobStore.submit(db, JobSubmission(kind: "sd", taskArgs: args)) }
        let failed = try JobStore.submit(db, JobSubmission(kind: "gpt", taskArgs: #"{"model":"m","messages":[]}"#))
        try db.execute("""
            UPDATE crynux.jobs SET status = 'failed', stage = 'upload', run_at = NULL, finished_at = now(), last_error = 'x' WHERE id = $1
            """, [failed])

        let table = try Products.runWorker(["status"], environment: env)
        #expect(table.status == 0, "\(table.output)")
        let lines = table.output.split(separator: "\n", omittingEmptySubsequences: false).prefix(5).map(String.init)
        #expect(lines[0].split(separator: " ") == ["status", "create", "upload", "poll", "validate", "fetch", "total"])
        #expect(lines[1].split(separator: " ") == ["pending", "12", "0", "0", "0", "0", "12"])
        #expect(lines[3].split(separator: " ") == ["failed", "0", "1", "0", "0", "0", "1"])
        // Aligned: every column ends where its header ends.
        let ends = { (line: String) in line.indices.filter { i in line[i] != " " && (line.index(after: i) == line.endIndex || line[line.index(after: i)] == " ") }.map { line.distance(from: line.startIndex, to: $0) } }
        for line in lines.dropFirst() { #expect(Array(ends(line).dropFirst()) == Array(ends(lines[0]).dropFirst()), "\(table.output)") }

        let json = try Products.runWorker(["status", "--json"], environment: env)
        #expect(json.status == 0)
        let object = try JSON.parse(json.output)
        #expect(object["jobs"]?["pending"]?["create"]?.intValue == 12 && object["jobs"]?["failed"]?["upload"]?.intValue == 1, "\(json.output)")
        #expect(object["oldest_due"]?["job"]?.intValue != nil)
        #expect(object["budgets"]?.arrayValue?.isEmpty == true, "\(json.output)")

        // Budgets: each one's use, in the table and the JSON.
        try JobStore.setBudgets(db, [Budget(wallet: nil, window: 3600, limit: BigUInt(10).power(19))])
        let budgets = try Products.runWorker(["status"], environment: env)
        #expect(budgets.output.contains("budgets:\n  budget       used   limit  share\n  total/hour  0 CNX  10 CNX    0 %"), "\(budgets.output)")
        let withBudget = try JSON.parse(try Products.runWorker(["status", "--json"], environment: env).output)
        let first = withBudget["budgets"]?.arrayValue?.first
        #expect(first?["limit_wei"]?.stringValue == "10000000000000000000" && first?["used_wei"]?.stringValue == "0" && first?["budget"]?.stringValue == "total/hour")
    }

    @Test func showSpeaksJSONAndAMissingJobExitsThree() throws {
        let id = try JobStore.submit(try database.connect(), JobSubmission(kind: "gpt", taskArgs: #"{"model":"m","messages":[]}"#))
        let show = try Products.runWorker(["show", String(id), "--json"], environment: env)
        #expect(show.status == 0, "\(show.output)")
        let object = try JSON.parse(show.output)
        #expect(object["facts"]?["status"]?.stringValue == "pending" && object["events"]?.arrayValue?.first?["detail"]?.stringValue == "submitted")

        for verb in ["show", "cancel", "retry"] {
            let missing = try Products.runWorker([verb, "999999"], environment: env)
            #expect(missing.status == 3 && missing.output.contains("no job 999999"), "\(verb): \(missing.status) \(missing.output)")
        }
        let usage = try Products.runWorker(["status", "--no-such-option"], environment: env)
        #expect(usage.status == 64)
        let unreachable = try Products.runWorker(["status"], environment: ["DATABASE_URL": "postgres://nobody@127.0.0.1:\(closedPort())/none"])
        #expect(unreachable.status == 1, "\(unreachable.output)")
    }
}
