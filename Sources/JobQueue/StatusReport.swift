import Foundation
import Postgres

/// What `crynux-worker status` shows: the queue at a glance.
public struct StatusReport: Sendable {
    public struct Count: Sendable { public let status: String; public let stage: String; public let jobs: Int64 }
    public struct WorkerLoad: Sendable { public let worker: String; public let jobs: Int64 }
    public struct Wallet: Sendable { public let address: String; public let chainId: Int64; public let nextNonce: Int64 }

    public let counts: [Count]
    public let oldestDueJobId: Int64?
    public let oldestDueSince: Date?
    public let inFlight: [WorkerLoad]
    public let wallets: [Wallet]
    public let budgets: [BudgetUse]

    public static func load(_ db: PostgresConnection) throws -> StatusReport {
        // Pending jobs through the due index, finished ones through the finished-job index: no
        // scan of the whole table, however much history it keeps.
        let counts = try (Dashboard.pendingCounts(db) + Dashboard.finishedCounts(db)).map {
            Count(status: $0.status, stage: $0.stage, jobs: $0.jobs)
        }
        let oldest = try Dashboard.oldestDue(db)
        let inFlight = try db.query("""
            SELECT locked_by, count(*) AS jobs FROM crynux.jobs
            WHERE status = 'pending' AND locked_by IS NOT NULL AND locked_until > now() GROUP BY locked_by ORDER BY locked_by
            """).map { WorkerLoad(worker: try $0.get("locked_by"), jobs: try $0.get("jobs")) }
        let wallets = try db.query("SELECT address, chain_id, next_nonce FROM crynux.wallets ORDER BY address").map {
            Wallet(address: try $0.get("address"), chainId: try $0.get("chain_id"), nextNonce: try $0.get("next_nonce"))
        }
        return StatusReport(counts: counts, oldestDueJobId: oldest?.id, oldestDueSince: oldest?.since,
                            inFlight: inFlight, wallets: wallets, budgets: try JobStore.budgetUse(db))
    }
}
