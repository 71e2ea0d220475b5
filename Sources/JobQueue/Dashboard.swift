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
        try db.query("SELECT \(lineColumns) FROM crynux.jobs j ORDER BY j.id DESC LIMIT $1", [Int64(limit)]).map(line)
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
