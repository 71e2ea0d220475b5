import BigInt
import Ethereum
import Foundation
import Postgres

/// Applying stage outcomes fenced by the lease a claim took (`Claims.swift` takes it).
extension JobStore {
    /// Applies a stage's outcome if `job`'s lease is still ours, together with its history row and
    /// what the stage observed, in one database transaction. Returns false (writing nothing) when
    /// another worker or an operator has taken the job since. `.sign` goes through `storeSigned`.
    @discardableResult
    public static func apply(_ db: PostgresConnection, _ outcome: StageOutcome, to job: Job, worker: String,
                             observed: Observations = Observations()) throws -> Bool {
        // Most outcomes are one statement (the row and its history line), which is atomic alone:
        // BEGIN and COMMIT would double the round trips of every stage.
        var alone = observed.isEmpty
        if case .succeed(let files, _) = outcome, !files.isEmpty { alone = false }
        if outcome.facts?.touchesRelayTasks == true { alone = false }
        return alone || db.isInTransaction ? try applying(db) : try db.transaction(applying)

        func applying(_ db: PostgresConnection) throws -> Bool {
            let update: JobUpdate
            var results: [ResultFile] = []
            switch outcome {
            case .advance(let stage, let after, let facts, let note):
                update = JobUpdate(stage: stage, runAfter: after, facts: facts, detail: note, resetsAttempts: true)
            case .wait(let after, let facts, let note, let failedTry, let error):
                var update_ = JobUpdate(runAfter: after, facts: facts, detail: note, countsAsAttempt: failedTry, resetsAttempts: !failedTry)
                if let error { update_.text["last_error"] = String?.some(error) }
                update = update_
            case .fail(let reason, let retryFrom, let facts):
                update = JobUpdate(status: .failed, facts: facts, detail: reason,
                                   text: ["last_error": reason, "retry_stage": retryFrom.rawValue])
            case .cancel(let note, let facts):
                update = JobUpdate(status: .cancelled, facts: facts, detail: note, text: ["last_error": "cancelled by operator"])
            case .succeed(let files, let note):
                results = files
                update = JobUpdate(status: .succeeded, facts: JobFacts(), detail: note, text: ["last_error": String?.none],
                                   stampResultsStored: true)
            case .recreate(let note, let waitingForNodes):
                var update_ = JobUpdate(stage: .create, facts: JobFacts(), detail: note, resetsAttempts: true, restartsTask: true)
                update_.keepsNodeWait = waitingForNodes
                update = update_
            case .unsign(let note):
                update = JobUpdate(stage: .create, facts: JobFacts(), detail: note, resetsAttempts: true, forgetsTask: true)
            case .sign:
                throw PostgresError(.usage, "a .sign outcome is applied with JobStore.storeSigned")
            case .prepare(let facts, let note):
                update = JobUpdate(facts: facts, detail: note)
            }
            var keepLease = false
            if case .prepare = outcome { keepLease = true }
            guard try write(db, update, to: job, worker: worker, keepLease: keepLease) else { return false }
            try writeRelayTasks(db, prepared: update.facts.relayTasksPrepared, changes: update.facts.relayTaskChanges)
            for file in results {
                try db.execute("""
                    INSERT INTO crynux.job_results (job_id, result_index, content_type, data) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (job_id, result_index) DO UPDATE SET content_type = EXCLUDED.content_type, data = EXCLUDED.data, stored_at = now()
                    """, [job.id, try int32(file.index, "result index"), file.contentType, file.data])
            }
            try recordObservations(db, observed)
            return true
        }
    }

    /// Applies a `.prepare` and reads back what the stage goes on from, the job and its Relay
    /// tasks, in the same transaction: one commit where the write and two reads made three.
    /// nil: the lease is gone and nothing was written.
    public static func applyPrepare(_ db: PostgresConnection, _ outcome: StageOutcome, to job: Job,
                                    worker: String) throws -> (job: Job, relayTasks: [RelayTaskRecord])? {
        guard case .prepare = outcome else { throw PostgresError(.usage, "applyPrepare takes a .prepare outcome") }
        return try db.transaction { db in
            guard try apply(db, outcome, to: job, worker: worker), let stored = try self.job(db, id: job.id) else { return nil }
            return (stored, try relayTasks(db, jobId: job.id))
        }
    }

    /// Applies many plain "still waiting" outcomes (`.wait` with no facts, note, error or
    /// observation: a poll that found its task running) in one statement, each fenced by its
    /// lease as `apply` would. The same write `apply` makes for such an outcome, without a
    /// history line; one commit per poll batch instead of one per job. Returns the ids written.
    public static func applyStillWaiting(_ db: PostgresConnection, _ waits: [(job: Job, after: Double)]) throws -> Set<Int64> {
        guard !waits.isEmpty else { return [] }
        let rows = try db.query("""
            UPDATE crynux.jobs j SET run_at = now() + make_interval(secs => w.after), stage_attempts = 0,
                locked_by = NULL, locked_until = NULL, updated_at = now()
            FROM unnest($1::bigint[], $2::bigint[], $3::float8[]) AS w(id, token, after)
            WHERE j.id = w.id AND j.lease_token = w.token AND j.status = 'pending'
            RETURNING j.id
            """, ["{" + waits.map { String($0.job.id) }.joined(separator: ",") + "}",
                  "{" + waits.map { String($0.job.leaseToken) }.joined(separator: ",") + "}",
                  "{" + waits.map { String($0.after) }.joined(separator: ",") + "}"])
        return Set(try rows.map { try $0.get("id", as: Int64.self) })
    }

    /// Writes what a stage observed when its outcome cannot be applied (the lease is gone, or the
    /// stage failed): a send or a receipt is a fact about the chain whoever owns the job now.
    public static func recordObservations(_ db: PostgresConnection, _ observed: Observations) throws {
        // One lock order for every transaction that writes observations: the wallet row first
        // (a signature holds it already), then transaction rows sorted by hash. A stage may send
        // other jobs' transactions (an Ethermint nonce gap), so two workers' observations overlap;
        // in any other order they deadlocked, and the job waited a whole lease.
        if let wallet = observed.walletNonce {
            try reconcileWallet(db, wallet.wallet, chainId: wallet.chainId, pendingNonce: wallet.pending)
        }
        if let lost = observed.lostRecords {
            try requestReconciliation(db, lost.wallet, chainId: lost.chainId, fromNonce: lost.fromNonce)
        }
        var sends: [[UInt8]: Int] = [:]
        for hash in observed.sent { sends[hash, default: 0] += 1 }
        for (hash, count) in sends.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            try db.execute("UPDATE crynux.job_transactions SET last_sent_at = now(), send_count = send_count + $2 WHERE tx_hash = $1",
                           [hash.hex, count])
        }
        for receipt in observed.mined.sorted(by: { $0.hash.lexicographicallyPrecedes($1.hash) }) {
            try db.execute("UPDATE crynux.job_transactions SET mined_block = $2, mined_status = $3 WHERE tx_hash = $1",
                           [receipt.hash.hex, try int64(receipt.block, "block number"), receipt.succeeded])
        }
        for refusal in observed.refused.sorted(by: { $0.hash.lexicographicallyPrecedes($1.hash) }) {
            try db.execute("UPDATE crynux.job_transactions SET refused_at = now(), refusal = $2 WHERE tx_hash = $1",
                           [refusal.hash.hex, refusal.reason])
        }
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

    public static func pendingCount(_ db: PostgresConnection) throws -> Int64 {
        try db.query("SELECT count(*) FROM crynux.jobs WHERE status = 'pending'")[0].get(0, as: Int64.self)
    }

    // MARK: the fenced write

    /// A change to a claimed job. Column names come from this file only.
    struct JobUpdate {
        var status: JobStatus?
        var stage: JobStage?
        /// When the job is due again, in seconds from now (pending jobs only).
        var runAfter: Double = 0
        var facts = JobFacts()
        var detail: String?
        var countsAsAttempt = false
        /// A step that went well ends a streak of failed tries, so backoff starts low again.
        var resetsAttempts = false
        /// Text columns to set (a nil value clears the column).
        var text: [String: String?] = [:]
        var stampResultsStored = false
        /// Forget the task's on-chain facts: it is created again.
        var restartsTask = false
        /// Forget them without counting a re-creation: nothing was paid.
        var forgetsTask = false
        /// With `restartsTask`: the job's wait for free nodes goes on (`task_queued_at` kept, or set now).
        var keepsNodeWait = false
    }

    /// Writes `update` if `job`'s lease is still ours, with its history row; false when it is not.
    static func write(_ db: PostgresConnection, _ update: JobUpdate, to job: Job, worker: String, keepLease: Bool,
                      extra: [(String, (any PostgresEncodable)?)] = []) throws -> Bool {
        try write(db, update, to: job, worker: worker, keepLease: keepLease, renewLease: nil, extra: extra).written
    }

    /// `write`; with `renewLease` the lease is kept for that many seconds more and the job comes
    /// back as written, in the same statement (the claim's columns).
    static func write(_ db: PostgresConnection, _ update: JobUpdate, to job: Job, worker: String, keepLease: Bool, renewLease: Double?,
                      extra: [(String, (any PostgresEncodable)?)] = []) throws -> (written: Bool, row: PostgresRow?) {
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
        if let renewLease {
            params.append(renewLease)
            sets.append("locked_until = now() + make_interval(secs => $\(params.count))")
        }
        var columns = try factColumns(update.facts) + extra
        for (column, value) in update.text.sorted(by: { $0.key < $1.key }) { columns.append((column, value)) }
        for (column, value) in columns {
            params.append(value)
            sets.append("\(column) = $\(params.count)")
        }
        for stamp in update.facts.stamps.sorted(by: { $0.rawValue < $1.rawValue }) { sets.append("\(stamp.rawValue) = now()") }
        if update.stampResultsStored { sets.append("results_stored_at = now()") }
        if update.restartsTask {
            let forget = update.keepsNodeWait
                ? forgetTask.filter { !$0.hasPrefix("task_queued_at ") } + ["task_queued_at = COALESCE(task_queued_at, now())"] : forgetTask
            sets.append(contentsOf: forget + ["recreations = recreations + 1"])
        }
        if update.forgetsTask { sets.append(contentsOf: forgetTask) }
        let change = "UPDATE crynux.jobs j SET \(sets.joined(separator: ", ")) WHERE id = $1 AND lease_token = $2"
        let returning = renewLease == nil ? "" : " RETURNING \(claimedColumns)"
        guard stageChanged || update.detail != nil else {
            if renewLease == nil { return (try db.execute(change, params) == 1, nil) }
            let row = try db.query(change + returning, params).first
            return (row != nil, row)
        }
        // The row and its history line in one statement: one round trip, and atomic without a
        // transaction of its own. No row changed (the lease is gone): no history line either.
        params += [job.status.rawValue, job.stage.rawValue, update.detail ?? "", worker]
        let n = params.count
        let history = """
            INSERT INTO crynux.job_events (job_id, from_status, from_stage, to_status, to_stage, detail, worker)
            SELECT id, $\(n - 3), $\(n - 2), $3, $4, $\(n - 1), $\(n) FROM changed
            """
        guard renewLease != nil else {
            return (try db.execute("WITH changed AS (\(change) RETURNING id) \(history)", params) == 1, nil)
        }
        let row = try db.query("""
            WITH changed AS (\(change) RETURNING \(claimedColumns)), history AS (\(history))
            SELECT * FROM changed
            """, params).first
        return (row != nil, row)
    }

    /// Applies an `.advance` whose next stage is due at once and keeps the job, as a claim
    /// would hand it over but without one: the lease is renewed for `leaseSeconds`, and the job
    /// comes back as the next stage sees it, from the same statement (with its history line).
    /// nil when the lease is gone (nothing written). Only for an advance without Relay task
    /// changes or observations (those take `apply`'s transaction).
    public static func advanceKeepingLease(_ db: PostgresConnection, _ outcome: StageOutcome, to job: Job, worker: String,
                                           leaseSeconds: Double) throws -> Job? {
        guard case .advance(let stage, let after, let facts, let note) = outcome, after <= 0, !facts.touchesRelayTasks else {
            throw PostgresError(.usage, "advanceKeepingLease takes an .advance due at once, without Relay task changes")
        }
        let update = JobUpdate(stage: stage, runAfter: 0, facts: facts, detail: note, resetsAttempts: true)
        let (written, row) = try write(db, update, to: job, worker: worker, keepLease: true, renewLease: leaseSeconds)
        guard written, let row else { return nil }
        return try Job(row: row)
    }

    /// The columns of the facts that are set, in their storage form (hex text, numeric, bigint).
    static func factColumns(_ facts: JobFacts) throws -> [(String, (any PostgresEncodable)?)] {
        var columns: [(String, (any PostgresEncodable)?)] = []
        func add(_ column: String, _ value: (any PostgresEncodable)?) { if let value { columns.append((column, value)) } }
        add("task_type", try facts.taskType.map { try int64($0, "task type") })
        add("task_hash", facts.taskHash?.hex)
        add("cap", try facts.cap.map { try int64($0, "cap") })
        add("vram_limit", try facts.vramLimit.map { try int64($0, "VRAM limit") })
        add("fee_wei", facts.feeWei?.description)
        add("wallet_address", facts.walletAddress?.bytes.hex)
        add("chain_id", try facts.chainId.map { try int64($0, "chain id") })
        add("tx_hash", facts.txHash?.hex)
        add("tx_block_number", try facts.txBlockNumber.map { try int64($0, "block number") })
        add("task_id", try facts.taskId.map { try int64($0, "task id") })
        add("task_deadline", facts.taskDeadline)
        add("result_node", facts.resultNode?.checksummed)
        add("abort_reason", facts.abortReason)
        add("refund_reason", facts.refundReason)
        add("network_profile", facts.networkProfile)
        add("token_fee_wei", facts.tokenFeeWei?.description)
        add("approval_tx_hash", facts.approvalTxHash?.hex)
        add("relay_commitment", facts.relayCommitment?.hex)
        return columns
    }

    /// The columns of a job's on-chain task, cleared when it is created anew.
    static let forgetTask = [
        "tx_nonce = NULL", "tx_hash = NULL", "tx_block_number = NULL", "task_id = NULL", "task_deadline = NULL",
        "wallet_address = NULL", "chain_id = NULL", "result_node = NULL", "abort_reason = NULL", "fee_wei = NULL",
        "refund_reason = NULL", "token_fee_wei = NULL", "tx_signed_at = NULL", "tx_mined_at = NULL", "args_uploaded_at = NULL", "task_queued_at = NULL",
        "task_finished_at = NULL", "relay_commitment = NULL",
    ]

    static func int64(_ value: UInt64, _ what: String) throws -> Int64 {
        guard let v = Int64(exactly: value) else { throw PostgresError(.usage, "\(what) \(value) does not fit in a bigint column") }
        return v
    }

    static func int32(_ value: Int, _ what: String) throws -> Int32 {
        guard let v = Int32(exactly: value) else { throw PostgresError(.usage, "\(what) \(value) does not fit in an integer column") }
        return v
    }
}
