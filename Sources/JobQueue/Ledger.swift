import BigInt
import Ethereum
import Foundation
import Postgres

/// Transactions and nonces: every transaction is durable, with its nonce reserved in the wallet
/// row, before any byte of it reaches the network.
extension JobStore {
    /// Signs `draft` with the wallet's next nonce (or the replaced transaction's) and, in one
    /// database transaction, stores the signed bytes, writes `facts` to the job and a history line,
    /// keeping the lease. Throws `LeaseLost` (rolling everything back, the nonce too) when the
    /// lease is gone. `sign` gets the nonce and returns the signed transaction's hash and bytes;
    /// it must not touch the network (the wallet row is locked while it runs).
    public static func record(_ db: PostgresConnection, _ draft: TransactionDraft, facts: JobFacts, note: String, for job: Job,
                              worker: String, observed: Observations = Observations(),
                              sign: (UInt64) throws -> (hash: [UInt8], raw: [UInt8])) throws -> StoredTransaction {
        try db.transaction { db in
            let nonce: UInt64
            if let reuse = draft.replacingNonce {
                nonce = reuse
            } else {
                guard let row = try db.query("SELECT next_nonce FROM crynux.wallets WHERE address = $1 FOR UPDATE",
                                             [draft.wallet.bytes.hex]).first else {
                    throw PostgresError(.usage, "wallet \(draft.wallet.checksummed) is not registered in crynux.wallets")
                }
                nonce = try RowReader(row).unsigned("next_nonce") ?? 0
                try db.execute("UPDATE crynux.wallets SET next_nonce = next_nonce + 1, updated_at = now() WHERE address = $1",
                               [draft.wallet.bytes.hex])
            }
            let signed = try sign(nonce)
            // The job's own tx columns describe its createTask; other transactions live only in job_transactions.
            let txColumns: [(String, (any PostgresEncodable)?)] = draft.purpose == .createTask
                ? [("tx_nonce", try int64(nonce, "nonce")), ("tx_hash", signed.hash.hex)] : []
            let update = JobUpdate(facts: facts, detail: "\(note): nonce \(nonce), tx \(signed.hash.hex)")
            guard try write(db, update, to: job, worker: worker, keepLease: true, extra: txColumns) else { throw LeaseLost() }
            let row = try db.query("""
                INSERT INTO crynux.job_transactions
                    (tx_hash, job_id, purpose, wallet_address, nonce, gas_price_wei, gas_limit, value_wei, raw_tx)
                VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8::numeric, $9)
                RETURNING *
                """, [signed.hash.hex, job.id, draft.purpose.rawValue, draft.wallet.bytes.hex, try int64(nonce, "nonce"),
                      draft.gasPrice.description, try int64(draft.gasLimit, "gas limit"), draft.value.description, signed.raw])[0]
            try record(db, observed)
            return try StoredTransaction(row: row)
        }
    }

    /// The job's transactions of `purpose` in its current attempt, oldest first: a retried job
    /// keeps its earlier (dead) transactions, so createTask ones are matched by the job's nonce
    /// and cancel ones by time.
    public static func transactions(_ db: PostgresConnection, of job: Job, purpose: TransactionPurpose) throws -> [StoredTransaction] {
        try db.query("""
            SELECT * FROM crynux.job_transactions
            WHERE job_id = $1 AND purpose = $2 AND ($3::bigint IS NULL OR nonce = $3) AND ($4::timestamptz IS NULL OR signed_at >= $4)
            ORDER BY signed_at, tx_hash
            """, [job.id, purpose.rawValue, purpose == .createTask ? try job.txNonce.map { try int64($0, "nonce") } : nil,
                  purpose == .cancelTask ? job.txSignedAt : nil]).map { try StoredTransaction(row: $0) }
    }

    /// Makes sure the wallet row exists and is not behind the chain: a nonce the chain has already
    /// seen used (by us earlier, or by anyone else) is never handed out again.
    public static func reconcileWallet(_ db: PostgresConnection, _ wallet: Address, chainId: UInt64, pendingNonce: UInt64) throws {
        try db.execute("""
            INSERT INTO crynux.wallets (address, chain_id, next_nonce) VALUES ($1, $2, $3)
            ON CONFLICT (address) DO UPDATE
                SET next_nonce = greatest(crynux.wallets.next_nonce, EXCLUDED.next_nonce),
                    chain_id = EXCLUDED.chain_id, updated_at = now()
            """, [wallet.bytes.hex, try int64(chainId, "chain id"), try int64(pendingNonce, "nonce")])
    }

    /// The wallet's next nonce as the database hands it out; nil for an unknown wallet.
    public static func nextNonce(_ db: PostgresConnection, wallet: Address) throws -> UInt64? {
        guard let row = try db.query("SELECT next_nonce FROM crynux.wallets WHERE address = $1", [wallet.bytes.hex]).first else {
            return nil
        }
        return try RowReader(row).unsigned("next_nonce")
    }
}
