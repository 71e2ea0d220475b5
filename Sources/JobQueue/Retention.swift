import Foundation
import Postgres

/// Retention: finished jobs go in small batches, each its own short transaction, so a prune
/// never holds a lock a worker waits for (rows a worker holds are skipped, not waited on).
extension JobStore {
    public struct PruneCounts: Sendable, Equatable {
        public var jobs = 0
        public var results = 0
        public var batches = 0
        public init() {}
    }

    /// Deletes succeeded jobs finished before `succeededBefore` and failed or cancelled ones
    /// finished before `failedBefore` (nil: none of that kind), with their history, transactions
    /// and results; with `keepHistory`, only their result files (the row and its history stay).
    /// A job with a transaction that may still be mined is kept: its nonce is still followed.
    public static func prune(_ db: PostgresConnection, succeededBefore: Date?, failedBefore: Date?, keepHistory: Bool,
                             batch: Int = 1000) throws -> PruneCounts {
        var counts = PruneCounts()
        guard succeededBefore != nil || failedBefore != nil else { return counts }
        let finished = """
            ((j.status = 'succeeded' AND $1::timestamptz IS NOT NULL AND j.finished_at < $1)
             OR (j.status IN ('failed', 'cancelled') AND $2::timestamptz IS NOT NULL AND j.finished_at < $2))
            AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions t
                            WHERE t.job_id = j.id AND t.mined_block IS NULL AND t.refused_at IS NULL
                              AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions m WHERE m.wallet_address = t.wallet_address
                                              AND m.nonce = t.nonce AND m.mined_block IS NOT NULL))
            """
        let params: [(any PostgresEncodable)?] = [succeededBefore, failedBefore, Int64(max(batch, 1))]
        while true {
            let deleted: Int
            if keepHistory {
                // Oldest jobs first (lowest ids), so a batch finds its rows at the start of the index.
                deleted = try db.execute("""
                    WITH doomed AS (
                        SELECT r.job_id, r.result_index FROM crynux.job_results r JOIN crynux.jobs j ON j.id = r.job_id
                        WHERE \(finished) ORDER BY r.job_id, r.result_index LIMIT $3 FOR UPDATE OF r SKIP LOCKED)
                    DELETE FROM crynux.job_results r USING doomed d WHERE r.job_id = d.job_id AND r.result_index = d.result_index
                    """, params)
                counts.results += deleted
            } else {
                let rows = try db.query("""
                    WITH doomed AS (
                        SELECT j.id FROM crynux.jobs j WHERE \(finished) ORDER BY j.id LIMIT $3 FOR UPDATE SKIP LOCKED),
                    files AS (SELECT count(*) AS n FROM crynux.job_results WHERE job_id IN (SELECT id FROM doomed)),
                    gone AS (DELETE FROM crynux.jobs WHERE id IN (SELECT id FROM doomed) RETURNING id)
                    SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT n FROM files) AS results
                    """, params)
                deleted = Int(try rows[0].get("jobs", as: Int64.self))
                counts.jobs += deleted
                counts.results += Int(try rows[0].get("results", as: Int64.self))
            }
            guard deleted > 0 else { return counts }
            counts.batches += 1
        }
    }
}
