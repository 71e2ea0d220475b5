import Foundation
import Postgres

/// A change to a claimed job, written only if the worker still holds its lease.
public struct JobUpdate {
    public var status: JobStatus?
    public var stage: JobStage?
    /// When the job is due again, in seconds from now (pending jobs only).
    public var runAfter: Double
    /// Extra columns to set. Names come from code, never from input.
    public var fields: [(String, (any PostgresEncodable)?)]
    /// A line for the job's history; a change of status or stage always gets one.
    public var detail: String?
    /// Whether this counts as a failed try of the stage (for backoff and stage limits).
    public var countsAsAttempt: Bool
    /// A step that went well ends a streak of failed tries, so backoff starts low again.
    public var resetsAttempts: Bool

    public init(status: JobStatus? = nil, stage: JobStage? = nil, runAfter: Double = 0,
                fields: [(String, (any PostgresEncodable)?)] = [], detail: String? = nil, countsAsAttempt: Bool = false,
                resetsAttempts: Bool = false) {
        self.status = status
        self.stage = stage
        self.runAfter = runAfter
        self.fields = fields
        self.detail = detail
        self.countsAsAttempt = countsAsAttempt
        self.resetsAttempts = resetsAttempts
    }
}

/// Claiming due jobs under a lease, and fenced writes back.
public enum JobLeases {
    /// Claims up to `limit` due jobs for `worker`, with `FOR UPDATE SKIP LOCKED` so concurrent
    /// workers never wait on each other, and commits at once: no transaction stays open while
    /// the stage does its network work. Each claim bumps the job's lease token.
    public static func claim(_ db: PostgresConnection, worker: String, limit: Int, leaseSeconds: Double) throws -> [Job] {
        try db.query("""
            WITH due AS (
                SELECT id FROM crynux.jobs
                WHERE status = 'pending' AND run_at <= now()
                  AND (locked_until IS NULL OR locked_until < now())
                ORDER BY priority DESC, stage_rank DESC, run_at, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED)
            UPDATE crynux.jobs j
            SET locked_by = $2, locked_until = now() + make_interval(secs => $3), lease_token = j.lease_token + 1
            FROM due WHERE j.id = due.id
            RETURNING j.*
            """, [Int64(limit), worker, leaseSeconds]).map { try Job(row: $0) }
    }

    /// Writes `update` if `job`'s lease is still ours; returns false (writing nothing) if another
    /// worker or an operator has taken the job since. Releases the lease unless `keepLease`.
    @discardableResult
    public static func apply(_ db: PostgresConnection, _ update: JobUpdate, to job: Job, worker: String,
                             keepLease: Bool = false) throws -> Bool {
        let newStatus = update.status ?? job.status
        let newStage = update.stage ?? job.stage
        let stageChanged = newStage != job.stage || newStatus != job.status
        var params: [(any PostgresEncodable)?] = [job.id, job.leaseToken, newStatus.rawValue, newStage.rawValue,
                                                  update.runAfter, update.countsAsAttempt, stageChanged, update.resetsAttempts]
        var sets = [
            "status = $3", "stage = $4",
            "run_at = CASE WHEN $3 = 'pending' THEN now() + make_interval(secs => $5) ELSE NULL END",
            "finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END",
            "stage_attempts = CASE WHEN $7 OR $8 THEN 0 WHEN $6 THEN stage_attempts + 1 ELSE stage_attempts END",
            "stage_entered_at = CASE WHEN $7 THEN now() ELSE stage_entered_at END",
            "updated_at = now()",
        ]
        if !keepLease { sets += ["locked_by = NULL", "locked_until = NULL"] }
        for (column, value) in update.fields {
            params.append(value)
            sets.append("\(column) = $\(params.count)")
        }
        let changed = try db.execute("UPDATE crynux.jobs SET \(sets.joined(separator: ", ")) WHERE id = $1 AND lease_token = $2", params)
        guard changed == 1 else { return false }
        if stageChanged || update.detail != nil {
            try JobStore.appendEvent(db, jobId: job.id, from: (job.status.rawValue, job.stage.rawValue),
                                     to: (newStatus.rawValue, newStage.rawValue), detail: update.detail ?? "", worker: worker)
        }
        return true
    }

    /// Gives back every lease `worker` holds, making those jobs due now (graceful shutdown).
    @discardableResult
    public static func releaseAll(_ db: PostgresConnection, worker: String) throws -> Int {
        try db.execute("""
            UPDATE crynux.jobs SET locked_by = NULL, locked_until = NULL, lease_token = lease_token + 1,
                run_at = least(run_at, now()), updated_at = now()
            WHERE locked_by = $1 AND status = 'pending'
            """, [worker])
    }
}
