import Foundation
import Postgres

/// The read-only queries behind the monitoring port: the dashboard page, a job's page, its result
/// files, the database gauges and the health check. Each reads an index, never the whole table:
/// pending jobs through the due index, finished ones through `jobs_finished_idx`.
public enum Dashboard {
    public struct Count: Sendable, Equatable {
        public let status: String
        public let stage: String
        public let jobs: Int64
    }

    public struct JobLine: Sendable {
        public let id: Int64
        public let kind: String
        public let status: String
        public let stage: String
        public let taskId: Int64?
        public let submittedAt: Date
        public let finishedAt: Date?
        public let lastError: String?
        public let results: Int64
    }

    public struct ResultInfo: Sendable {
        public let index: Int32
        public let contentType: String
        public let bytes: Int64
    }

    /// Pending jobs per stage.
    public static func pendingCounts(_ db: PostgresConnection) throws -> [Count] {
        try db.query("""
            SELECT stage, count(*) AS jobs FROM crynux.jobs WHERE status = 'pending' GROUP BY stage ORDER BY stage
            """).map { Count(status: "pending", stage: try $0.get("stage"), jobs: try $0.get("jobs")) }
    }

    /// Finished jobs per status and the stage they ended in, those finished since `since` (all when nil).
    public static func finishedCounts(_ db: PostgresConnection, since: Date? = nil) throws -> [Count] {
        try db.query("""
            SELECT status, stage, count(*) AS jobs FROM crynux.jobs
            WHERE finished_at IS NOT NULL AND finished_at >= coalesce($1::timestamptz, '-infinity')
            GROUP BY status, stage ORDER BY status, stage
            """, [since]).map { Count(status: try $0.get("status"), stage: try $0.get("stage"), jobs: try $0.get("jobs")) }
    }

    /// The longest-waiting due job that no worker holds: its id, since when it is due, and for how
    /// many seconds (by the database's clock); nil when none waits.
    public static func oldestDue(_ db: PostgresConnection) throws -> (id: Int64, since: Date, seconds: Double)? {
        try db.query("""
            SELECT id, run_at, extract(epoch FROM now() - run_at)::float8 AS seconds FROM crynux.jobs
            WHERE status = 'pending' AND run_at <= now() AND (locked_until IS NULL OR locked_until < now())
            ORDER BY run_at LIMIT 1
            """).first.map { (try $0.get("id"), try $0.get("run_at"), try $0.get("seconds")) }
    }

    private static let lineColumns = """
        j.id, j.kind, j.status, j.stage, j.task_id, j.submitted_at, j.finished_at, j.last_error,
        (SELECT count(*) FROM crynux.job_results r WHERE r.job_id = j.id) AS results
        """

    private static func line(_ row: PostgresRow) throws -> JobLine {
        JobLine(id: try row.get("id"), kind: try row.get("kind"), status: try row.get("status"), stage: try row.get("stage"),
                taskId: try row.optional("task_id"), submittedAt: try row.get("submitted_at"), finishedAt: try row.optional("finished_at"),
                lastError: try row.optional("last_error"), results: try row.get("results"))
    }

    /// The newest jobs.
    public static func recentJobs(_ db: PostgresConnection, limit: Int = 25) throws -> [JobLine] {
        try jobs(db, JobFilter(), limit: limit)
    }

    /// Which jobs a list shows: any of the fields may be left out.
    public struct JobFilter: Sendable, Equatable {
        public var status: String?
        public var kind: String?
        public var profile: String?
        /// Keyset paging: jobs with a smaller id than this one (the last of the page before).
        public var before: Int64?

        public init(status: String? = nil, kind: String? = nil, profile: String? = nil, before: Int64? = nil) {
            self.status = status
            self.kind = kind
            self.profile = profile
            self.before = before
        }
    }

    /// The newest jobs that pass `filter`, newest first (by id, through the primary key).
    public static func jobs(_ db: PostgresConnection, _ filter: JobFilter, limit: Int) throws -> [JobLine] {
        try db.query("""
            SELECT \(lineColumns) FROM crynux.jobs j
            WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2)
              AND ($3::text IS NULL OR j.network_profile = $3) AND ($4::bigint IS NULL OR j.id < $4)
            ORDER BY j.id DESC LIMIT $5
            """, [filter.status, filter.kind, filter.profile, filter.before, Int64(limit)]).map(line)
    }

    /// Jobs a search text names: a job id or task id (a number), a transaction hash, a Relay
    /// task's commitment or id (0x and 64 hex digits), or an idempotency key.
    public static func search(_ db: PostgresConnection, _ text: String, limit: Int = 50) throws -> [JobLine] {
        let q = text.trimmingCharacters(in: .whitespaces)
        guard !q.isEmpty else { return [] }
        let number = Int64(q)
        let hash = q.count == 66 && q.lowercased().hasPrefix("0x") && q.dropFirst(2).allSatisfy(\.isHexDigit) ? q.lowercased() : nil
        return try db.query("""
            SELECT \(lineColumns) FROM crynux.jobs j WHERE j.id IN (
                SELECT id FROM crynux.jobs WHERE id = $1 OR task_id = $1 OR idempotency_key = $3
                UNION SELECT job_id FROM crynux.job_transactions WHERE tx_hash = $2
                UNION SELECT job_id FROM crynux.relay_tasks WHERE commitment = $2 OR task_id = $2)
            ORDER BY j.id DESC LIMIT $4
            """, [number, hash, q, Int64(limit)]).map(line)
    }

    /// One bucket of the last hours: jobs finished in it by outcome, what was committed to be
    /// spent (as budgets count it), and how many jobs were pending at its end.
    public struct Bucket: Sendable, Equatable {
        public let start: Date
        public let succeeded: Int64
        public let failed: Int64
        public let cancelled: Int64
        public let spentWei: String
        public let pending: Int64
    }

    /// The last `hours` in buckets of `minutes`, oldest first. Reads the pending jobs and those
    /// finished in the range (both through their indexes) once, and the payments of the range:
    /// each job falls in one bucket by its submission and one by its end, and the queue depth at
    /// a bucket's end is the running sum of the first less the running sum of the second.
    public static func timeline(_ db: PostgresConnection, hours: Int = 24, minutes: Int = 15) throws -> [Bucket] {
        try db.query("""
            WITH step AS (SELECT make_interval(mins => $2) AS size,
                                 date_bin(make_interval(mins => $2), now() - make_interval(hours => $1), 'epoch') AS first),
            buckets AS (SELECT t AS start FROM step, generate_series(step.first, now(), step.size) AS t),
            open AS (
                SELECT submitted_at, finished_at, status FROM crynux.jobs WHERE status = 'pending'
                UNION ALL
                SELECT submitted_at, finished_at, status FROM crynux.jobs
                WHERE finished_at IS NOT NULL AND finished_at >= (SELECT first FROM step)),
            submitted AS (SELECT greatest(date_bin(step.size, o.submitted_at, 'epoch'), step.first) AS start, count(*) AS n
                          FROM open o, step GROUP BY 1),
            ended AS (SELECT date_bin(step.size, o.finished_at, 'epoch') AS start,
                             count(*) FILTER (WHERE o.status = 'succeeded') AS succeeded,
                             count(*) FILTER (WHERE o.status = 'failed') AS failed,
                             count(*) FILTER (WHERE o.status = 'cancelled') AS cancelled
                      FROM open o, step WHERE o.finished_at IS NOT NULL GROUP BY 1),
            paid AS (SELECT date_bin(step.size, p.at, 'epoch') AS start, sum(p.amount_wei) AS wei
                     FROM step, crynux.payments_since((SELECT first FROM step)) p GROUP BY 1)
            SELECT b.start, coalesce(e.succeeded, 0) AS succeeded, coalesce(e.failed, 0) AS failed,
                   coalesce(e.cancelled, 0) AS cancelled, coalesce(p.wei, 0)::text AS spent,
                   (sum(coalesce(s.n, 0)) OVER w - sum(coalesce(e.succeeded + e.failed + e.cancelled, 0)) OVER w)::bigint AS pending
            FROM buckets b
            LEFT JOIN submitted s ON s.start = b.start LEFT JOIN ended e ON e.start = b.start LEFT JOIN paid p ON p.start = b.start
            WINDOW w AS (ORDER BY b.start)
            ORDER BY b.start
            """, [Int32(hours), Int32(minutes)]).map {
            Bucket(start: try $0.get("start"), succeeded: try $0.get("succeeded"), failed: try $0.get("failed"),
                   cancelled: try $0.get("cancelled"), spentWei: try $0.get("spent"), pending: try $0.get("pending"))
        }
    }

    /// The latest failures, newest first, with their reasons.
    public static func recentFailures(_ db: PostgresConnection, limit: Int = 15) throws -> [JobLine] {
        try db.query("""
            SELECT \(lineColumns) FROM crynux.jobs j
            WHERE j.finished_at IS NOT NULL AND j.status = 'failed' ORDER BY j.finished_at DESC LIMIT $1
            """, [Int64(limit)]).map(line)
    }

    /// A job's stored results, without their bytes.
    public static func results(_ db: PostgresConnection, jobId: Int64) throws -> [ResultInfo] {
        try db.query("""
            SELECT result_index, content_type, octet_length(data)::bigint AS bytes FROM crynux.job_results
            WHERE job_id = $1 ORDER BY result_index
            """, [jobId]).map {
            ResultInfo(index: try $0.get("result_index"), contentType: try $0.get("content_type"), bytes: try $0.get("bytes"))
        }
    }

    /// One result file of a job; nil when there is none.
    public static func result(_ db: PostgresConnection, jobId: Int64, index: Int32) throws -> ResultFile? {
        try db.query("SELECT content_type, data FROM crynux.job_results WHERE job_id = $1 AND result_index = $2", [jobId, index])
            .first.map { ResultFile(index: Int(index), contentType: try $0.get("content_type"), data: try $0.get("data")) }
    }

    /// The monitoring connection reads only, and never for long: a page that would take more than
    /// five seconds fails instead of holding a snapshot (and vacuum) back.
    public static func prepareSession(_ db: PostgresConnection) throws {
        try db.executeScript("SET statement_timeout = '5s'; SET default_transaction_read_only = on")
    }

    /// The health check's question: does the database answer, with this build's schema?
    public static func ping(_ db: PostgresConnection) throws {
        _ = try db.query("SELECT 1 FROM crynux.jobs LIMIT 0")
    }
}
