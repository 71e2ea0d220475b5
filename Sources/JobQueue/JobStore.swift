import Foundation
import Postgres

/// What a backend (or `crynux-worker submit`) asks for.
public struct JobSubmission: Sendable {
    public var kind: String
    public var taskArgs: String
    public var priority: Int = 0
    public var notBefore: Date?
    public var idempotencyKey: String?
    public var feeWei: String?
    public var vramLimit: Int?
    public var taskTypeOverride: Int?

    public init(kind: String, taskArgs: String, priority: Int = 0, notBefore: Date? = nil, idempotencyKey: String? = nil,
                feeWei: String? = nil, vramLimit: Int? = nil, taskTypeOverride: Int? = nil) {
        self.kind = kind
        self.taskArgs = taskArgs
        self.priority = priority
        self.notBefore = notBefore
        self.idempotencyKey = idempotencyKey
        self.feeWei = feeWei
        self.vramLimit = vramLimit
        self.taskTypeOverride = taskTypeOverride
    }
}

public enum CancelOutcome: Sendable, Equatable {
    case cancelled
    /// A createTask is signed, or a task exists: the worker settles that (fills the nonce, claims
    /// the refund) and then stops the job.
    case requested
    case alreadyFinished(JobStatus)
}

public enum RetryOutcome: Sendable, Equatable {
    case requeued(from: JobStage)
    case notFailed(JobStatus)
    /// The stage the failure allows needs a fact the job lacks; the sentence says which.
    case refused(String)
}

public struct JobStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// The job named does not exist (the CLI exits 3 for it).
    public let isMissingJob: Bool
    public init(_ description: String) {
        self.description = description
        isMissingJob = false
    }

    public static func noJob(_ id: Int64) -> JobStoreError { JobStoreError(missing: "no job \(id)") }

    private init(missing description: String) {
        self.description = description
        isMissingJob = true
    }
}

/// Submitting, cancelling, retrying and reporting: the operations around the pipeline.
public enum JobStore {
    public static let notifyChannel = "crynux_jobs"

    @discardableResult
    public static func submit(_ db: PostgresConnection, _ job: JobSubmission) throws -> Int64 {
        // The columns are 32-bit: a larger number is an error to report, not a trap.
        guard let priority = Int32(exactly: job.priority) else {
            throw PostgresError(.usage, "priority \(job.priority) is outside -2147483648...2147483647")
        }
        var vram: Int32?
        if let limit = job.vramLimit {
            guard let fits = Int32(exactly: limit) else { throw PostgresError(.usage, "vram_limit \(limit) is outside the 32-bit range") }
            vram = fits
        }
        let id = try db.query("SELECT crynux.submit_job($1, $2, $3, $4, $5, $6::numeric, $7) AS id",
                              [job.kind, job.taskArgs, priority, job.notBefore, job.idempotencyKey,
                               job.feeWei, vram])[0].get("id", as: Int64.self)
        if let override = job.taskTypeOverride {
            try db.execute("UPDATE crynux.jobs SET task_type_override = $2 WHERE id = $1 AND tx_nonce IS NULL",
                           [id, Int32(override)])
        }
        return id
    }

    /// `count` copies of one job in one statement (benchmarks and load tests); returns how many.
    /// Then the table's statistics: until autovacuum's next analyze (up to a minute), a planner
    /// that still thinks the table empty claims by sorting every pending row (6 ms a claim with
    /// 20,000 waiting, against 0.3 ms through the due index).
    @discardableResult
    public static func submitMany(_ db: PostgresConnection, kind: String, taskArgs: String, count: Int) throws -> Int64 {
        let added = try db.query("""
            WITH added AS (INSERT INTO crynux.jobs (kind, task_args) SELECT $1, $2 FROM generate_series(1, $3) RETURNING 1)
            SELECT count(*) FROM added
            """, [kind, taskArgs, Int64(count)])[0].get(0, as: Int64.self)
        try db.execute("ANALYZE crynux.jobs")
        return added
    }

    public static func job(_ db: PostgresConnection, id: Int64) throws -> Job? {
        try db.query("SELECT * FROM crynux.jobs WHERE id = $1", [id]).first.map { try Job(row: $0) }
    }

    /// The channel every transition to succeeded, failed or cancelled is announced on, at its
    /// commit (migration 013): `{"id", "status", "kind", "idempotency_key"?, "results"}`.
    public static let jobFinishedChannel = "crynux_job_finished"

    /// Where each of `ids` stands: nil for an id with no job.
    public static func outcomes(_ db: PostgresConnection, ids: [Int64]) throws -> [Int64: JobOutcome] {
        try db.query("""
            SELECT j.id, j.status, j.kind, j.last_error, (SELECT count(*) FROM crynux.job_results r WHERE r.job_id = j.id) AS results
            FROM crynux.jobs j WHERE j.id = ANY($1::bigint[])
            """, ["{" + ids.map(String.init).joined(separator: ",") + "}"]).reduce(into: [:]) { found, row in
            let outcome = JobOutcome(id: try row.get("id"), status: try row.get("status"), kind: try row.get("kind"),
                                     lastError: try row.optional("last_error"), results: try row.get("results"))
            found[outcome.id] = outcome
        }
    }

    public static func events(_ db: PostgresConnection, jobId: Int64) throws -> [JobEvent] {
        try db.query("""
            SELECT at, from_status, from_stage, to_status, to_stage, detail, worker
            FROM crynux.job_events WHERE job_id = $1 ORDER BY at, id
            """, [jobId]).map {
            JobEvent(at: try $0.get("at"), fromStatus: try $0.optional("from_status"), fromStage: try $0.optional("from_stage"),
                     toStatus: try $0.get("to_status"), toStage: try $0.get("to_stage"), detail: try $0.get("detail"),
                     worker: try $0.optional("worker"))
        }
    }

    /// Stops a job. A job that signed a createTask or has a task on chain is only marked: a
    /// signed nonce must still be used (the worker fills it instead of paying, when it can) and a
    /// task's fee is claimed back (a queued task is cancelled at once, one whose arguments never
    /// reached the Relay after its deadline); the worker then ends the job as cancelled.
    public static func cancel(_ db: PostgresConnection, id: Int64, reason: String = "cancelled by operator") throws -> CancelOutcome {
        try db.transaction { db in
            guard let job = try db.query("SELECT status, stage, tx_nonce, task_id, relay_commitment FROM crynux.jobs WHERE id = $1 FOR UPDATE",
                                         [id]).first else {
                throw JobStoreError.noJob(id)
            }
            let status = JobStatus(rawValue: try job.get("status")) ?? .pending
            guard status == .pending else { return .alreadyFinished(status) }
            let stage: String = try job.get("stage")
            // A Relay task (Lithium) is settled the same way: cancelled while queued, for its refund.
            let onChain = try !job.isNull("tx_nonce") || !job.isNull("task_id") || !job.isNull("relay_commitment")
            if onChain {
                try db.execute("""
                    UPDATE crynux.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()), run_at = least(run_at, now()),
                        updated_at = now() WHERE id = $1
                    """, [id])
                try appendEvent(db, jobId: id, from: (status.rawValue, stage), to: (status.rawValue, stage),
                                detail: "cancel requested (\(reason)); the worker settles what is on chain first")
                try db.notify(notifyChannel)
                return .requested
            }
            try db.execute("""
                UPDATE crynux.jobs SET status = 'cancelled', run_at = NULL, finished_at = now(), updated_at = now(),
                    locked_by = NULL, locked_until = NULL, lease_token = lease_token + 1, last_error = $2
                WHERE id = $1
                """, [id, reason])
            try appendEvent(db, jobId: id, from: (status.rawValue, stage), to: ("cancelled", stage), detail: reason)
            return .cancelled
        }
    }

    /// Puts a failed job back in the queue at the stage its failure allows: the failed stage
    /// while its on-chain task can still deliver, or `create` (a new paid task) only when the
    /// old one is certainly dead. A stage that needs a fact the job lacks (a task id) is refused.
    public static func retry(_ db: PostgresConnection, id: Int64) throws -> RetryOutcome {
        try db.transaction { db in
            guard let row = try db.query("""
                SELECT status, stage, retry_stage, task_id, tx_hash, relay_commitment FROM crynux.jobs WHERE id = $1 FOR UPDATE
                """, [id]).first else {
                throw JobStoreError.noJob(id)
            }
            let read = RowReader(row)
            let status = try read.enumValue("status", JobStatus.self) ?? .pending
            guard status == .failed else { return .notFailed(status) }
            let stage = try read.enumValue("stage", JobStage.self) ?? .create
            let from = try read.enumValue("retry_stage", JobStage.self) ?? stage
            if from.needsTaskId, try row.isNull("task_id"), try row.isNull("relay_commitment") {
                let tx: String? = try row.optional("tx_hash")
                return .refused("job \(id) cannot be retried from \(from.rawValue): it has no task id"
                    + (tx.map { " (its createTask \($0) was mined without a TaskPending event); look at that transaction before paying for another task" } ?? ""))
            }
            // A new on-chain task starts from scratch; a live one keeps its on-chain facts.
            let resetChain = from == .create ? ", " + forgetTask.joined(separator: ", ") : ""
            try db.execute("""
                UPDATE crynux.jobs SET status = 'pending', stage = $2, run_at = now(), stage_attempts = 0,
                    stage_entered_at = now(), finished_at = NULL, last_error = NULL, retry_stage = NULL,
                    cancel_requested_at = NULL, locked_by = NULL, locked_until = NULL, lease_token = lease_token + 1,
                    updated_at = now() \(resetChain)
                WHERE id = $1
                """, [id, from.rawValue])
            try appendEvent(db, jobId: id, from: (status.rawValue, stage.rawValue), to: ("pending", from.rawValue),
                            detail: from == .create ? "retry: new on-chain task (the previous one is dead)" : "retry from \(from.rawValue)")
            try db.notify(notifyChannel)
            return .requeued(from: from)
        }
    }

    /// Stored result files of the given jobs (every job's when `ids` is empty), in job and index order.
    public static func results(_ db: PostgresConnection, jobIds ids: [Int64]) throws -> [(jobId: Int64, file: ResultFile)] {
        let rows = ids.isEmpty
            ? try db.query("SELECT job_id, result_index, content_type, data FROM crynux.job_results ORDER BY job_id, result_index")
            : try db.query("""
                SELECT job_id, result_index, content_type, data FROM crynux.job_results
                WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, result_index
                """, ["{" + ids.map(String.init).joined(separator: ",") + "}"])
        return try rows.map { row in
            (try row.get("job_id"), ResultFile(index: try row.get("result_index"), contentType: try row.get("content_type"),
                                               data: try row.get("data")))
        }
    }

    static func appendEvent(_ db: PostgresConnection, jobId: Int64, from: (String, String)?, to: (String, String),
                            detail: String, worker: String? = nil) throws {
        try db.execute("""
            INSERT INTO crynux.job_events (job_id, from_status, from_stage, to_status, to_stage, detail, worker)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            """, [jobId, from?.0, from?.1, to.0, to.1, detail, worker])
    }
}

/// A job's status, as `wait` reports it.
public struct JobOutcome: Sendable, Equatable {
    public let id: Int64
    public let status: String
    public let kind: String
    public let lastError: String?
    public let results: Int64

    public var ended: Bool { status != JobStatus.pending.rawValue }
}
