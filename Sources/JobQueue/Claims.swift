import BigInt
import Ethereum
import Foundation
import Postgres

/// Claiming due jobs under a lease: `FOR UPDATE SKIP LOCKED`, committed at once.
extension JobStore {
    /// Claims up to `limit` due jobs for `worker`, with `FOR UPDATE SKIP LOCKED` so concurrent
    /// workers never wait on each other, and commits at once: no transaction stays open while
    /// the stage does its network work. Each claim bumps the job's lease token. A job belongs to
    /// the wallet that signed its first transaction: only a worker holding that key (one of
    /// `wallets`; nil: any) may claim it; a job not signed yet goes to any worker. A job of a
    /// network profile (signed for it, or pinned to it) goes only to a worker of that `profile`.
    public static func claim(_ db: PostgresConnection, worker: String, wallets: [Address]? = nil, profile: String? = nil, limit: Int,
                             leaseSeconds: Double) throws -> [Job] {
        try claimNoting(db, worker: worker, wallets: wallets, profile: profile, limit: limit, leaseSeconds: leaseSeconds).jobs
    }

    /// `claim`, and when it took fewer than `limit` jobs (nothing more is due), the seconds until
    /// the next pending job can be claimed (a leased job from its lease's end), in the same round trip: an
    /// idle worker's look at the queue is one statement, not two.
    ///
    /// With `pollLimit`, `limit` counts the jobs of every stage but poll, and up to `pollLimit`
    /// due polls come on top: they go out as one JSON-RPC batch and are written back in one
    /// statement, so a thousand tasks in flight cost a request and a write per tick, not one per
    /// few jobs.
    public static func claimNoting(_ db: PostgresConnection, worker: String, wallets: [Address]? = nil, profile: String? = nil,
                                   limit: Int, pollLimit: Int? = nil, leaseSeconds: Double) throws
        -> (jobs: [Job], nextDueIn: Double?, expiredLeases: Int) {
        let held: String? = wallets.map { "{" + $0.map(\.bytes.hex).joined(separator: ",") + "}" }
        // A due job that still names a holder was left when its lease ran out (a worker died or
        // stalled): claiming it is a rescue, counted for the operator.
        let dueRows = """
            SELECT id, locked_by IS NOT NULL AS lease_expired FROM crynux.jobs
                WHERE status = 'pending' AND run_at <= now()
                  AND (locked_until IS NULL OR locked_until < now())
                  AND ($4::text[] IS NULL OR wallet_address IS NULL OR wallet_address = ANY($4::text[]))
                  AND ($5::text IS NULL OR network_profile IS NULL OR network_profile = $5)
            """
        let order = "ORDER BY priority DESC, stage_rank DESC, run_at, id"
        var params: [(any PostgresEncodable)?] = [Int64(limit), worker, leaseSeconds, held, profile]
        let due: String
        let short: String  // fewer claimed than asked: nothing more is due, say when something is
        if let pollLimit {
            params.append(Int64(pollLimit))
            let poll = JobStage.poll.claimRank
            due = """
                others AS (\(dueRows) AND stage_rank <> \(poll) \(order) LIMIT $1 FOR UPDATE SKIP LOCKED),
                polls AS (\(dueRows) AND stage_rank = \(poll) \(order) LIMIT $6 FOR UPDATE SKIP LOCKED),
                due AS (SELECT id, lease_expired FROM others UNION ALL SELECT id, lease_expired FROM polls),
                """
            short = "(SELECT count(*) FROM others) < $1 AND (SELECT count(*) FROM polls) < $6"
        } else {
            due = "due AS (\(dueRows) \(order) LIMIT $1 FOR UPDATE SKIP LOCKED),"
            short = "(SELECT count(*) FROM due) < $1"
        }
        // The next-due subquery sees the rows as they were before this statement: the jobs
        // claimed here are left out, or they would look due at once.
        let rows = try db.query("""
            WITH \(due)
            claimed AS (
                UPDATE crynux.jobs j
                SET locked_by = $2, locked_until = now() + make_interval(secs => $3), lease_token = j.lease_token + 1
                FROM due WHERE j.id = due.id
                RETURNING \(claimedColumns), due.lease_expired)
            SELECT claimed.*, next.wait AS next_due_in
            FROM (SELECT CASE WHEN \(short) THEN (
                      SELECT extract(epoch FROM min(greatest(run_at, locked_until)) - now())::float8 FROM crynux.jobs
                      WHERE status = 'pending' AND id NOT IN (SELECT id FROM due)) END AS wait) AS next
            LEFT JOIN claimed ON true
            """, params, planEachTime: true)
        let nextDue = try rows.first?.optional("next_due_in", as: Double.self)
        let expired = try rows.filter { try $0.optional("lease_expired", as: Bool.self) == true }.count
        let jobs = try rows.compactMap { row -> Job? in
            guard try row.optional("id", as: Int64.self) != nil else { return nil }  // nothing claimed
            // A row no stage can read (a value that does not fit) fails with the reason, instead
            // of stopping every worker that claims it in turn.
            do {
                return try Job(row: row)
            } catch {
                try failUnreadable(db, id: try row.get("id"), reason: "\(error)", worker: worker)
                return nil
            }
        }
        return (jobs, nextDue, expired)
    }

    /// Arguments larger than this are never loaded by a claim: the Relay refuses request bodies
    /// over 32 MiB, and the arguments travel in one (escaped, so never shorter). A claim of 8 such
    /// rows would otherwise hold them twice over (libpq's result and the strings).
    public static let claimedArgumentsLimit: Int64 = 32 << 20

    /// Every column of a job, but the arguments only for the stages that use them: a poll or a
    /// fetch of a job with 30 MB of arguments does not carry them around. Their size comes from
    /// the TOAST header, without reading them.
    static let claimedColumns = """
        j.id, j.kind, CASE WHEN j.stage IN ('create', 'upload', 'validate') AND octet_length(j.task_args) <= \(claimedArgumentsLimit)
            THEN j.task_args END AS task_args, octet_length(j.task_args)::bigint AS task_args_bytes, j.priority, j.status,
        j.stage, j.run_at, j.stage_attempts, j.stage_entered_at, j.cancel_requested_at, j.locked_by, j.locked_until,
        j.lease_token, j.fee_wei_override, j.vram_limit_override, j.task_type_override, j.task_type, j.task_hash, j.cap,
        j.vram_limit, j.fee_wei, j.wallet_address, j.chain_id, j.tx_nonce, j.tx_hash, j.tx_block_number, j.task_id,
        j.task_deadline, j.result_node, j.abort_reason, j.submitted_at, j.tx_signed_at, j.tx_mined_at, j.args_uploaded_at,
        j.task_queued_at, j.task_finished_at, j.finished_at, j.last_error, j.retry_stage, j.recreations, j.refund_reason,
        j.network_profile, j.token_fee_wei, j.approval_tx_hash, j.relay_commitment
        """

    static func failUnreadable(_ db: PostgresConnection, id: Int64, reason: String, worker: String, what: String = "the job's row") throws {
        let sentence = "\(what) cannot be read (\(reason)); it needs a person"
        try db.transaction { db in
            try db.execute("""
                UPDATE crynux.jobs SET status = 'failed', finished_at = now(), run_at = NULL, locked_by = NULL, locked_until = NULL,
                    lease_token = lease_token + 1, last_error = $2, updated_at = now() WHERE id = $1 AND status = 'pending'
                """, [id, sentence])
            try db.execute("""
                INSERT INTO crynux.job_events (job_id, from_status, from_stage, to_status, to_stage, detail, worker)
                SELECT id, 'pending', stage, 'failed', stage, $2, $3 FROM crynux.jobs WHERE id = $1
                """, [id, sentence, worker])
        }
    }
}
