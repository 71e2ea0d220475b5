import Foundation
import JobQueue
import Postgres
import TestSupport
import Testing

/// The analysts' views on a known workload, their read-only role, and retention.
@Suite("Analyst views and retention")
struct AnalystAndRetentionTests {
    let database: TestDatabase
    let db: PostgresConnection
    let args = #"{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"a cat","task_config":{"num_images":1}}"#

    init() throws {
        database = try TestDatabase.create(prefix: "analyst")
        db = try database.connect()
        try Migrator.migrate(db)
    }

    /// A finished job with its steps `seconds` after the submission (nil: not reached).
    @discardableResult
    func job(kind: String = "sd", status: String, submitted: String, steps: [Double?] = [], finishedAfter: Double? = nil,
             fee: String? = nil, abort: String? = nil, error: String? = nil) throws -> Int64 {
        let id = try JobStore.submit(db, JobSubmission(kind: kind, taskArgs: args))
        func at(_ i: Int) -> String? { i < steps.count ? steps[i].map { "$2::timestamptz + interval '\($0) seconds'" } : nil }
        let sets = [("tx_mined_at", at(0)), ("args_uploaded_at", at(1)), ("task_finished_at", at(2)), ("results_stored_at", at(3))]
            .compactMap { column, value in value.map { "\(column) = \($0)" } }
        try db.execute("""
            UPDATE crynux.jobs SET status = $3, submitted_at = $2::timestamptz, fee_wei = $4::numeric, abort_reason = $5,
                last_error = $6, finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE $2::timestamptz + make_interval(secs => $7) END
                \(sets.isEmpty ? "" : ", " + sets.joined(separator: ", "))
            WHERE id = $1
            """, [id, submitted, status, fee, abort, error, finishedAfter ?? 0])
        return id
    }

    @Test func theViewsGiveTheExpectedRowsForAKnownWorkload() throws {
        let a = try job(status: "succeeded", submitted: "2026-11-01T10:00:00Z", steps: [10, 12, 42, 44], finishedAfter: 44, fee: "100")
        try job(status: "succeeded", submitted: "2026-11-01T11:00:00Z", steps: [5, 6, 18, 20], finishedAfter: 20, fee: "200")
        let c = try job(status: "failed", submitted: "2026-11-01T12:00:00Z", steps: [10, 11], finishedAfter: 900, fee: "300",
                        abort: "Task Cancelled", error: "the task is past its deadline; task 3 was cancelled on chain and its fee refunded")
        try job(kind: "gpt", status: "failed", submitted: "2026-11-01T13:00:00Z", finishedAfter: 1, error: "invalid task arguments: model")
        try job(status: "pending", submitted: "2026-11-02T09:00:00Z")

        let history = try db.query("""
            SELECT extract(epoch FROM create_duration)::float8 AS c, extract(epoch FROM upload_duration)::float8 AS u,
                   extract(epoch FROM task_duration)::float8 AS t, extract(epoch FROM fetch_duration)::float8 AS f,
                   extract(epoch FROM total_duration)::float8 AS total, outcome, fee_wei::text AS fee, refunded_wei::text AS refunded
            FROM crynux.job_history WHERE job_id = $1
            """, [a])[0]
        #expect(try history.get("c", as: Double.self) == 10 && history.get("u", as: Double.self) == 2)
        #expect(try history.get("t", as: Double.self) == 30 && history.get("f", as: Double.self) == 2 && history.get("total", as: Double.self) == 44)
        #expect(try history.get("outcome", as: String.self) == "succeeded" && history.get("fee", as: String.self) == "100")
        #expect(try history.get("refunded", as: String.self) == "0")
        let cancelled = try db.query("SELECT outcome, refunded_wei::text AS r FROM crynux.job_history WHERE job_id = $1", [c])[0]
        #expect(try cancelled.get("outcome", as: String.self) == "aborted: Task Cancelled" && cancelled.get("r", as: String.self) == "300")

        let days = try db.query("""
            SELECT day::text AS day, kind, jobs, succeeded, failed, pending, success_rate::float8 AS rate, p50_seconds, p95_seconds,
                   fees_wei::text AS fees, refunded_wei::text AS refunded
            FROM crynux.daily_summary ORDER BY day, kind
            """)
        #expect(days.count == 3)
        let (gpt, sd) = (days[0], days[1])  // by day, then kind
        #expect(try sd.get("day", as: String.self) == "2026-11-01" && sd.get("kind", as: String.self) == "sd")
        #expect(try sd.get("jobs", as: Int64.self) == 3 && sd.get("succeeded", as: Int64.self) == 2 && sd.get("failed", as: Int64.self) == 1)
        #expect(try abs(sd.get("rate", as: Double.self) - 0.6667) < 1e-9)
        #expect(try sd.get("p50_seconds", as: Double.self) == 32)  // between 20 and 44
        #expect(try abs(sd.get("p95_seconds", as: Double.self) - 42.8) < 1e-9)
        #expect(try sd.get("fees", as: String.self) == "600" && sd.get("refunded", as: String.self) == "300")
        #expect(try gpt.get("kind", as: String.self) == "gpt" && gpt.get("rate", as: Double.self) == 0 && gpt.get("fees", as: String.self) == "0")
        let later = days[2]
        #expect(try later.get("pending", as: Int64.self) == 1 && later.optional("rate", as: Double.self) == nil)
    }

    @Test func theAnalystRoleReadsButCannotWriteAndIsCutShort() throws {
        try job(status: "succeeded", submitted: "2026-11-01T10:00:00Z", steps: [1, 2, 3, 4], finishedAfter: 4, fee: "1")
        let settings = try db.query("""
            SELECT unnest(setconfig) AS s FROM pg_db_role_setting WHERE setrole = 'crynux_analyst'::regrole
            """).map { try $0.get("s", as: String.self) }
        #expect(Set(settings).isSuperset(of: ["statement_timeout=60s", "idle_in_transaction_session_timeout=60s"]), "\(settings)")
        try db.execute("SET ROLE crynux_analyst")
        #expect(try db.query("SELECT count(*) FROM crynux.job_history")[0].get(0, as: Int64.self) == 1)
        #expect(try db.query("SELECT count(*) FROM crynux.daily_summary")[0].get(0, as: Int64.self) == 1)
        #expect(throws: PostgresError.self) { try db.execute("UPDATE crynux.jobs SET priority = 1") }
        try db.execute("RESET ROLE")
    }

    /// The documented place for analysis: the views on a streaming hot standby, read-only there.
    @Test func theViewsRunOnTheReplica() throws {
        let id = try job(status: "succeeded", submitted: "2026-11-03T10:00:00Z", steps: [1, 2, 3, 4], finishedAfter: 4, fee: "7")
        // The database and the job reach the standby by streaming; wait for them (a loaded
        // machine replays every test database's creation first: it has taken over 30 s).
        let url = try database.replicaURL()
        let deadline = Date().addingTimeInterval(180)
        var replica: PostgresConnection?
        var seen = false
        while !seen && Date() < deadline {
            replica = replica ?? (try? PostgresConnection(url: url))
            seen = (try? replica?.query("SELECT count(*) FROM crynux.job_history WHERE job_id = $1", [id])[0].get(0, as: Int64.self)) == 1
            if !seen { Thread.sleep(forTimeInterval: 0.05) }
        }
        let standby = try #require(replica, "no connection to the replica at \(url)")
        // Without the job there, the rest cannot be read (and must not crash the test process).
        try #require(seen, "the job never reached the replica")
        #expect(try standby.query("SELECT pg_is_in_recovery()")[0].get(0, as: Bool.self))
        let day = try #require(try standby.query("SELECT jobs, fees_wei::text AS fees FROM crynux.daily_summary WHERE day = '2026-11-03'").first)
        #expect(try day.get("jobs", as: Int64.self) == 1 && day.get("fees", as: String.self) == "7")
        #expect(throws: PostgresError.self) { try standby.execute("DELETE FROM crynux.jobs") }
    }

    @Test func pruneDeletesExactlyWhatIsPastItsRetentionInBatches() throws {
        let day = 86_400.0
        func ago(_ seconds: Double) -> String { ISO8601DateFormatter().string(from: Date(timeIntervalSinceNow: -seconds)) }
        let oldSucceeded = try (0..<5).map { _ in try job(status: "succeeded", submitted: ago(10 * day), steps: [1, 2, 3, 4], finishedAfter: 4) }
        let recent = try job(status: "succeeded", submitted: ago(day), steps: [1, 2, 3, 4], finishedAfter: 4)
        let oldFailed = try job(status: "failed", submitted: ago(40 * day), finishedAfter: 1)
        let youngFailed = try job(status: "failed", submitted: ago(20 * day), finishedAfter: 1)
        let pending = try job(status: "pending", submitted: ago(50 * day))
        // A failed job whose transaction may still be mined: its nonce is still followed.
        let unmined = try job(status: "failed", submitted: ago(40 * day), finishedAfter: 1)
        try db.execute("""
            INSERT INTO crynux.job_transactions (tx_hash, job_id, purpose, wallet_address, nonce, gas_price_wei, gas_limit, value_wei, raw_tx)
            VALUES ('0x' || repeat('ab', 32), $1, 'create_task', '0x' || repeat('5a', 20), 7, 1, 21000, 0, '\\x00')
            """, [unmined])
        for id in oldSucceeded + [recent] {
            try db.execute("INSERT INTO crynux.job_results (job_id, result_index, content_type, data) VALUES ($1, 0, 'image/png', '\\x89')", [id])
        }

        // Only the result files first: rows and history stay.
        var counts = try JobStore.prune(db, succeededBefore: Date(timeIntervalSinceNow: -7 * day), failedBefore: nil, keepHistory: true, batch: 2)
        #expect(counts.results == 5 && counts.jobs == 0 && counts.batches == 3)
        #expect(try db.query("SELECT count(*) FROM crynux.jobs")[0].get(0, as: Int64.self) == 10)
        #expect(try db.query("SELECT count(*) FROM crynux.job_results")[0].get(0, as: Int64.self) == 1)

        counts = try JobStore.prune(db, succeededBefore: Date(timeIntervalSinceNow: -7 * day), failedBefore: Date(timeIntervalSinceNow: -30 * day),
                                    keepHistory: false, batch: 2)
        #expect(counts.jobs == 6 && counts.batches == 3)
        let left = Set(try db.query("SELECT id FROM crynux.jobs").map { try $0.get("id", as: Int64.self) })
        #expect(left == [recent, youngFailed, pending, unmined])
        #expect(!left.contains(oldFailed))
        // Their history went with them; the kept jobs' stayed.
        #expect(try db.query("SELECT count(DISTINCT job_id) FROM crynux.job_events")[0].get(0, as: Int64.self) == 4)
    }
}
