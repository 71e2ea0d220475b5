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
    public static func storeSigned(_ db: PostgresConnection, _ draft: TransactionDraft, facts: JobFacts, note: String, for job: Job,
                              worker: String, observed: Observations = Observations(),
                              sign: (UInt64) throws -> (hash: [UInt8], raw: [UInt8])) throws -> StoredTransaction {
        try db.transaction { db in
            if let admission = draft.admission {
                // All workers and wallets agree on one count of our tasks the queue's size did not
                // include: signed and not yet mined, or mined after it was read (with 5 s for the
                // two clocks). Over-counting only delays; under-counting could evict our own.
                try db.execute("SELECT pg_advisory_xact_lock($1)", [admissionLockKey])
                let counts = try admissionCounts(db, sinceBlock: admission.readBlock, sdWeight: admission.sdWeight)
                guard counts.onTheWay < Int64(clamping: admission.room) else { throw AdmissionDenied() }
            }
            let nonce: UInt64
            if let reuse = draft.replacingNonce {
                nonce = reuse
            } else {
                // A new nonce is a new payment (or leads to one): none while any wallet's lost
                // records are being reconciled, or a job whose lost task is on chain pays again.
                if let pending = try db.query("""
                    SELECT address, reconcile_from FROM crynux.wallets WHERE reconcile_from IS NOT NULL ORDER BY address LIMIT 1
                    """).first {
                    throw ReconciliationPending(wallet: try pending.get("address"), fromNonce: try RowReader(pending).unsigned("reconcile_from") ?? 0)
                }
                guard let row = try db.query("SELECT next_nonce FROM crynux.wallets WHERE address = $1 FOR UPDATE",
                                             [draft.wallet.bytes.hex]).first else {
                    throw PostgresError(.usage, "wallet \(draft.wallet.checksummed) is not registered in crynux.wallets")
                }
                nonce = try RowReader(row).unsigned("next_nonce") ?? 0
                if let standing = draft.tokenStanding {
                    // Under the wallet row's lock: the standing read at `latest` does not yet pay
                    // for our createTasks still on their way (over-counting one just mined only delays).
                    let onTheWay = try createTasksOnTheWay(db, wallet: draft.wallet)
                    guard BigUInt(onTheWay + 1) * standing.fee <= standing.available else { throw TokensCommitted(onTheWay: onTheWay) }
                }
                if draft.purpose == .createTask {
                    // A new createTask is a new payment: value, gas limit × price, and Hydrogen's CNX.
                    try checkBudgets(db, wallet: draft.wallet,
                                     amount: draft.value + BigUInt(draft.gasLimit) * draft.gasPrice + (draft.tokenStanding?.fee ?? 0))
                }
                try db.execute("UPDATE crynux.wallets SET next_nonce = next_nonce + 1, updated_at = now() WHERE address = $1",
                               [draft.wallet.bytes.hex])
            }
            let signed = try sign(nonce)
            // The job's own tx columns describe its first createTask (the mined one replaces the
            // hash later); other transactions live only in job_transactions.
            var txColumns: [(String, (any PostgresEncodable)?)] = draft.purpose == .createTask && draft.replacingNonce == nil
                ? [("tx_nonce", try int64(nonce, "nonce")), ("tx_hash", signed.hash.hex)] : []
            // task_queued_at means "first seen queued on chain" on era D, "first wait for free
            // nodes" on Hydrogen: a job that waited on a Hydrogen worker before an era-D one took
            // it must not look queued too long the moment its task is queued.
            if draft.purpose == .createTask, draft.replacingNonce == nil, facts.networkProfile == "era-d" {
                txColumns.append(("task_queued_at", nil))
            }
            if draft.purpose == .approve {
                // One approval of a wallet on its way at a time, checked with the wallet row locked
                // (above): two workers short of allowance at once sign only one. And none if
                // another was signed since the stage looked (it may be mined already, its
                // allowance not yet in what the stage read).
                if try pendingApproval(db, wallet: draft.wallet) != nil || (try latestApproval(db, wallet: draft.wallet)) != draft.lastApprovalSeen {
                    throw ApprovalInFlight()
                }
                txColumns.append(("approval_tx_hash", signed.hash.hex))
            }
            let update = JobUpdate(facts: facts, detail: "\(note): nonce \(nonce), tx \(signed.hash.hex)")
            guard try write(db, update, to: job, worker: worker, keepLease: true, extra: txColumns) else { throw LeaseLost() }
            let stored = try insert(db, draft, nonce: nonce, signed: signed, jobId: job.id)
            try recordObservations(db, observed)
            return stored
        }
    }

    /// The wallet's createTasks signed and neither mined, refused, nor given up (their job still
    /// waits for them in create): one per nonce.
    static func createTasksOnTheWay(_ db: PostgresConnection, wallet: Address) throws -> Int {
        Int(try db.query("""
            SELECT count(DISTINCT t.nonce) FROM crynux.job_transactions t JOIN crynux.jobs j ON j.id = t.job_id
            WHERE t.wallet_address = $1 AND t.purpose = 'create_task' AND t.mined_block IS NULL AND t.refused_at IS NULL
              AND j.status = 'pending' AND j.stage = 'create' AND j.tx_nonce = t.nonce
              AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions m
                              WHERE m.wallet_address = t.wallet_address AND m.nonce = t.nonce AND m.mined_block IS NOT NULL)
            """, [wallet.bytes.hex])[0].get(0, as: Int64.self))
    }

    /// The wallet's transaction to send at each nonce in `[from, below)`: the newest not refused
    /// and not known mined, one per nonce, in nonce order (what an Ethermint node needs before a
    /// later nonce; every worker stores them, so any worker can send them).
    public static func sendableTransactions(_ db: PostgresConnection, wallet: Address, fromNonce from: UInt64, below: UInt64) throws
        -> [StoredTransaction] {
        try db.query("""
            SELECT DISTINCT ON (t.nonce) t.* FROM crynux.job_transactions t
            WHERE t.wallet_address = $1 AND t.nonce >= $2 AND t.nonce < $3 AND t.mined_block IS NULL AND t.refused_at IS NULL
            ORDER BY t.nonce, t.signed_at DESC
            """, [wallet.bytes.hex, try int64(from, "nonce"), try int64(below, "nonce")]).compactMap { try readable($0, db) }
    }

    static let admissionLockKey: Int64 = 0x4352_594E_0001

    /// Our createTasks the queue's size read at block `block` does not include (signed and not
    /// yet mined, or mined in a later block), and the jobs waiting in create with nothing signed:
    /// the backlog that waits for room. Blocks, not clocks (worker, database and node clocks may
    /// disagree by more than any margin).
    public static func admissionCounts(_ db: PostgresConnection, sinceBlock block: UInt64, sdWeight: Int64 = 1) throws
        -> (onTheWay: Int64, waiting: Int64) {
        let row = try db.query("""
            SELECT sum(CASE WHEN kind = 'sd' THEN $2 ELSE 1 END)
                       FILTER (WHERE (stage = 'create' AND tx_nonce IS NOT NULL) OR tx_block_number > $1)::bigint AS on_the_way,
                   count(*) FILTER (WHERE stage = 'create' AND tx_nonce IS NULL) AS waiting
            FROM crynux.jobs WHERE status = 'pending'
            """, [try int64(min(block, UInt64(Int64.max)), "block"), sdWeight])[0]
        return (try row.optional("on_the_way") ?? 0, try row.get("waiting"))
    }

    private static func insert(_ db: PostgresConnection, _ draft: TransactionDraft, nonce: UInt64, signed: (hash: [UInt8], raw: [UInt8]),
                               jobId: Int64?) throws -> StoredTransaction {
        let row = try db.query("""
            INSERT INTO crynux.job_transactions
                (tx_hash, job_id, purpose, wallet_address, nonce, gas_price_wei, priority_fee_wei, gas_limit, value_wei, raw_tx, signed_at, token_fee_wei)
            VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::numeric, $8, $9::numeric, $10, clock_timestamp(),
                    -- Hydrogen's CNX a createTask commits; a replacement commits the same CNX.
                    CASE WHEN $3 = 'create_task' THEN coalesce($11::numeric, (
                        SELECT max(o.token_fee_wei) FROM crynux.job_transactions o
                        WHERE o.wallet_address = $4 AND o.nonce = $5 AND o.purpose = 'create_task')) END)
            RETURNING *
            """, [signed.hash.hex, jobId, draft.purpose.rawValue, draft.wallet.bytes.hex, try int64(nonce, "nonce"),
                  draft.gasPrice.description, draft.tip?.description, try int64(draft.gasLimit, "gas limit"), draft.value.description,
                  signed.raw, draft.purpose == .createTask ? draft.tokenStanding?.fee.description : nil])[0]
        return try StoredTransaction(row: row)
    }

    /// Stores a transaction that belongs to no claimed job (a wallet keeper's fill), with the
    /// nonce it replaces or fills.
    public static func recordUnowned(_ db: PostgresConnection, _ draft: TransactionDraft, nonce: UInt64, jobId: Int64?,
                                     sign: (UInt64) throws -> (hash: [UInt8], raw: [UInt8])) throws -> StoredTransaction {
        try db.transaction { db in
            let stored = try insert(db, draft, nonce: nonce, signed: try sign(nonce), jobId: jobId)
            if let jobId {
                try appendEvent(db, jobId: jobId, from: nil, to: try currentPlace(db, jobId),
                                detail: "nonce \(nonce) filled by tx \(stored.hash.hex) so that later transactions of the wallet are not stuck")
            }
            return stored
        }
    }

    private static func currentPlace(_ db: PostgresConnection, _ jobId: Int64) throws -> (String, String) {
        let row = try db.query("SELECT status, stage FROM crynux.jobs WHERE id = $1", [jobId])[0]
        return (try row.get("status"), try row.get("stage"))
    }

    /// Every transaction signed for a job, oldest first (for `show`).
    public static func allTransactions(_ db: PostgresConnection, jobId: Int64) throws -> [StoredTransaction] {
        try db.query("SELECT * FROM crynux.job_transactions WHERE job_id = $1 ORDER BY signed_at, tx_hash", [jobId])
            .map { try StoredTransaction(row: $0) }
    }

    /// A wallet's transactions that no stage follows any more and that may still be unmined, from
    /// `nonce` on: anything not a createTask of a job still in create, nor a cancelTask of a job
    /// still polling. The wallet keeper sees them mined or fills their nonce. (A job waiting for its
    /// approval has no tx_nonce: with `=` the fill of the approval's nonce compared as NULL and was
    /// never followed again.)
    public static func unfollowedTransactions(_ db: PostgresConnection, wallet: Address, fromNonce nonce: UInt64) throws -> [StoredTransaction] {
        try db.query("""
            SELECT t.* FROM crynux.job_transactions t LEFT JOIN crynux.jobs j ON j.id = t.job_id
            WHERE t.wallet_address = $1 AND t.nonce >= $2 AND t.mined_block IS NULL
              AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions m
                              WHERE m.wallet_address = t.wallet_address AND m.nonce = t.nonce AND m.mined_block IS NOT NULL)
              AND (j.id IS NULL OR j.status <> 'pending'
                   OR NOT ((t.purpose IN ('create_task', 'fill_nonce') AND j.stage = 'create' AND j.tx_nonce IS NOT DISTINCT FROM t.nonce)
                           OR (t.purpose = 'cancel_task' AND j.stage = 'poll')))
            ORDER BY t.nonce, t.signed_at
            """, [wallet.bytes.hex, try int64(nonce, "nonce")]).compactMap { try readable($0, db) }
    }

    /// A job_transactions row, or nil when no code can read it (written before the CHECKs of
    /// migration 4, or by hand): its job fails with the reason, as an unreadable job row does,
    /// instead of looping on lease expiry and stopping the keeper of its wallet on every pass.
    static func readable(_ row: PostgresRow, _ db: PostgresConnection) throws -> StoredTransaction? {
        do {
            return try StoredTransaction(row: row)
        } catch let error as PostgresError where error.kind == .decoding {
            let hash = (try? row.optional("tx_hash", as: String.self)).flatMap { $0 } ?? "?"
            if let jobId = (try? row.optional("job_id", as: Int64.self)).flatMap({ $0 }) {
                try failUnreadable(db, id: jobId, reason: "\(error)", worker: "store", what: "the job's transaction \(hash)")
            }
            return nil
        }
    }

    /// Nonces from `nonce` up to the wallet's next one that no stored transaction uses: reserved
    /// and lost (a restore), so they must be filled.
    public static func unusedNonces(_ db: PostgresConnection, wallet: Address, fromNonce nonce: UInt64) throws -> [UInt64] {
        try db.query("""
            SELECT n FROM crynux.wallets w, generate_series($2::bigint, w.next_nonce - 1) AS n
            WHERE w.address = $1
              AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions t WHERE t.wallet_address = w.address AND t.nonce = n)
            ORDER BY n
            """, [wallet.bytes.hex, try int64(nonce, "nonce")]).compactMap { try RowReader($0).unsigned("n") }
    }

    /// Pending jobs in create that have not signed anything: the ones a lost record may have paid for.
    public static func unsignedCreates(_ db: PostgresConnection) throws -> [(id: Int64, kind: String, taskArgs: String, submittedAt: Date)] {
        try db.query("""
            SELECT id, kind, task_args, submitted_at FROM crynux.jobs
            WHERE status = 'pending' AND stage = 'create' AND tx_nonce IS NULL ORDER BY id
            """).map { (try $0.get("id"), try $0.get("kind"), try $0.get("task_args"), try $0.get("submitted_at")) }
    }

    /// Runs `body` while holding the wallet's keeper lock (one keeper per wallet across all
    /// workers); returns false without running it when another process holds the lock.
    public static func whileKeepingWallet(_ db: PostgresConnection, _ wallet: Address, _ body: () throws -> Void) throws -> Bool {
        let key = Int64(bitPattern: UInt64(wallet.bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }))
        guard try db.query("SELECT pg_try_advisory_lock($1) AS held", [key])[0].get("held", as: Bool.self) else { return false }
        defer { _ = try? db.execute("SELECT pg_advisory_unlock($1)", [key]) }
        try body()
        return true
    }

    /// Gives an unsigned job in create the task its wallet is found to have created (the record of
    /// it was lost): it continues at upload. Refused (false) when the job moved on, when another
    /// job already holds that task, or when the database knows the transaction that created it
    /// (then it is another job's). Any lease on the job is fenced off.
    public static func adopt(_ db: PostgresConnection, jobId: Int64, facts: JobFacts, note: String) throws -> Bool {
        guard let taskId = facts.taskId else { return false }
        return try db.transaction { db in
            // A transaction the database knows is some job's own: only unknown ones are adopted.
            guard let txHash = facts.txHash else { return false }
            var params: [(any PostgresEncodable)?] = [jobId, try int64(taskId, "task id"), txHash.hex]
            var sets = ["stage = 'upload'", "run_at = now()", "stage_attempts = 0", "stage_entered_at = now()", "updated_at = now()",
                        "locked_by = NULL", "locked_until = NULL", "lease_token = lease_token + 1", "tx_mined_at = now()"]
            for (column, value) in try factColumns(facts) {
                params.append(value)
                sets.append("\(column) = $\(params.count)")
            }
            let changed = try db.execute("""
                UPDATE crynux.jobs SET \(sets.joined(separator: ", "))
                WHERE id = $1 AND status = 'pending' AND stage = 'create' AND tx_nonce IS NULL
                  AND NOT EXISTS (SELECT 1 FROM crynux.jobs other WHERE other.task_id = $2 AND other.id <> $1)
                  AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions t WHERE t.tx_hash = $3)
                """, params)
            guard changed == 1 else { return false }
            try appendEvent(db, jobId: jobId, from: ("pending", "create"), to: ("pending", "upload"), detail: note)
            return true
        }
    }

    /// The job's transactions of `purpose` in its current attempt, oldest first: a retried job
    /// keeps its earlier (dead) transactions, so createTask ones are matched by the job's nonce
    /// (with the fills of that nonce) and cancel ones by time.
    public static func transactions(_ db: PostgresConnection, of job: Job, purpose: TransactionPurpose) throws -> [StoredTransaction] {
        let purposes = purpose == .createTask ? "{create_task,fill_nonce}" : "{\(purpose.rawValue)}"
        return try db.query("""
            SELECT * FROM crynux.job_transactions
            WHERE job_id = $1 AND purpose = ANY($2::text[]) AND ($3::bigint IS NULL OR nonce = $3)
              AND ($4::timestamptz IS NULL OR signed_at >= $4)
            ORDER BY signed_at, tx_hash
            """, [job.id, purposes, purpose == .createTask ? try job.txNonce.map { try int64($0, "nonce") } : nil,
                  purpose == .cancelTask ? job.txSignedAt : nil]).map { row in
            // A stage must not decide on part of the job's transactions: the job fails instead.
            guard let tx = try readable(row, db) else { throw LeaseLost() }
            return tx
        }
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

    /// The chain used a nonce of `wallet` from `nonce` on that the database did not know: records
    /// were lost. No new nonce is handed out until `finishReconciliation`. Creates the wallet row
    /// when it was lost too.
    public static func requestReconciliation(_ db: PostgresConnection, _ wallet: Address, chainId: UInt64, fromNonce nonce: UInt64) throws {
        try db.execute("""
            INSERT INTO crynux.wallets (address, chain_id, next_nonce, reconcile_from, reconcile_requested_at) VALUES ($1, $2, $3, $3, now())
            ON CONFLICT (address) DO UPDATE
                SET reconcile_from = least(coalesce(crynux.wallets.reconcile_from, EXCLUDED.reconcile_from), EXCLUDED.reconcile_from),
                    reconcile_requested_at = coalesce(crynux.wallets.reconcile_requested_at, now()), updated_at = now()
            """, [wallet.bytes.hex, try int64(chainId, "chain id"), try int64(nonce, "nonce")])
    }

    /// The reconciliation a wallet waits for: from which nonce, asked since when; nil when none.
    public static func pendingReconciliation(_ db: PostgresConnection, _ wallet: Address) throws -> (fromNonce: UInt64, since: Date)? {
        guard let row = try db.query("""
            SELECT reconcile_from, reconcile_requested_at FROM crynux.wallets WHERE address = $1 AND reconcile_from IS NOT NULL
            """, [wallet.bytes.hex]).first else { return nil }
        return (try RowReader(row).unsigned("reconcile_from") ?? 0, try row.get("reconcile_requested_at"))
    }

    /// Lost tasks adopted from `fromNonce` on and the wallet's next nonce raised to the chain's:
    /// new nonces may be handed out again. A later request (a lower nonce) stays pending.
    public static func finishReconciliation(_ db: PostgresConnection, _ wallet: Address, fromNonce nonce: UInt64, pendingNonce: UInt64) throws {
        try db.execute("""
            UPDATE crynux.wallets SET next_nonce = greatest(next_nonce, $3), updated_at = now(),
                reconcile_from = CASE WHEN reconcile_from >= $2 THEN NULL ELSE reconcile_from END,
                reconcile_requested_at = CASE WHEN reconcile_from >= $2 THEN NULL ELSE reconcile_requested_at END
            WHERE address = $1
            """, [wallet.bytes.hex, try int64(nonce, "nonce"), try int64(pendingNonce, "nonce")])
    }

    /// Pending jobs in create signed at a nonce of `wallet` in `[from, below)` (nonces the chain has
    /// mined), with the hashes of their transactions at it: after lost records, some of these
    /// signed at a nonce another (lost) transaction had used.
    public static func signedCreates(_ db: PostgresConnection, wallet: Address, fromNonce from: UInt64, below: UInt64) throws
        -> [(jobId: Int64, nonce: UInt64, hashes: [[UInt8]])] {
        try db.query("""
            SELECT j.id, j.tx_nonce, array_agg(t.tx_hash ORDER BY t.signed_at) AS hashes
            FROM crynux.jobs j JOIN crynux.job_transactions t ON t.job_id = j.id AND t.wallet_address = j.wallet_address AND t.nonce = j.tx_nonce
            WHERE j.status = 'pending' AND j.stage = 'create' AND j.wallet_address = $1 AND j.tx_nonce >= $2 AND j.tx_nonce < $3
            GROUP BY j.id, j.tx_nonce ORDER BY j.tx_nonce
            """, [wallet.bytes.hex, try int64(from, "nonce"), try int64(below, "nonce")]).map { row in
            let reader = RowReader(row)
            let text: String = try row.get("hashes")
            let hashes = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").compactMap { [UInt8](hex: String($0)) }
            return (try row.get("id"), try reader.unsigned("tx_nonce") ?? 0, hashes)
        }
    }

    /// Makes a job signed at `nonce` unsigned again (its createTask can never be mined, nothing was
    /// paid), fencing off any lease. False when it moved on meanwhile.
    public static func unsign(_ db: PostgresConnection, jobId: Int64, nonce: UInt64, note: String) throws -> Bool {
        try db.transaction { db in
            let changed = try db.execute("""
                UPDATE crynux.jobs SET \(forgetTask.joined(separator: ", ")), run_at = now(), stage_attempts = 0, stage_entered_at = now(),
                    updated_at = now(), locked_by = NULL, locked_until = NULL, lease_token = lease_token + 1
                WHERE id = $1 AND status = 'pending' AND stage = 'create' AND tx_nonce = $2
                """, [jobId, try int64(nonce, "nonce")])
            guard changed == 1 else { return false }
            try appendEvent(db, jobId: jobId, from: ("pending", "create"), to: ("pending", "create"), detail: note)
            return true
        }
    }

    /// Every wallet row of `chainId`: what the database believes each has used.
    public static func wallets(_ db: PostgresConnection, chainId: UInt64) throws -> [(address: Address, nextNonce: UInt64)] {
        try db.query("SELECT address, next_nonce FROM crynux.wallets WHERE chain_id = $1 ORDER BY address", [try int64(chainId, "chain id")])
            .compactMap { row in
                let reader = RowReader(row)
                guard let address = Address(hex: try row.get("address", as: String.self)), let next = try reader.unsigned("next_nonce") else { return nil }
                return (address, next)
            }
    }

    /// The wallet's approval that may still be mined: not refused, not seen mined, and its nonce
    /// not used by another transaction seen mined (a fill). Jobs short of allowance wait for it.
    public static func pendingApproval(_ db: PostgresConnection, wallet: Address) throws -> StoredTransaction? {
        try db.query("""
            SELECT t.* FROM crynux.job_transactions t
            WHERE t.wallet_address = $1 AND t.purpose = 'approve' AND t.mined_block IS NULL AND t.refused_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM crynux.job_transactions m
                              WHERE m.wallet_address = t.wallet_address AND m.nonce = t.nonce AND m.mined_block IS NOT NULL)
            ORDER BY t.nonce DESC, t.signed_at DESC LIMIT 1
            """, [wallet.bytes.hex]).first.map { try StoredTransaction(row: $0) }
    }

    /// The hash of the wallet's most recently signed approval, whatever became of it; nil when it
    /// never signed one.
    public static func latestApproval(_ db: PostgresConnection, wallet: Address) throws -> [UInt8]? {
        try db.query("""
            SELECT tx_hash FROM crynux.job_transactions WHERE wallet_address = $1 AND purpose = 'approve'
            ORDER BY signed_at DESC, tx_hash DESC LIMIT 1
            """, [wallet.bytes.hex]).first.flatMap { try RowReader($0).hexBytes("tx_hash", count: 32) }
    }

    /// The chain a wallet's row signs for; nil for an unknown wallet.
    public static func walletChain(_ db: PostgresConnection, wallet: Address) throws -> UInt64? {
        guard let row = try db.query("SELECT chain_id FROM crynux.wallets WHERE address = $1", [wallet.bytes.hex]).first else {
            return nil
        }
        return try RowReader(row).unsigned("chain_id")
    }

    /// The wallet's next nonce as the database hands it out; nil for an unknown wallet.
    public static func nextNonce(_ db: PostgresConnection, wallet: Address) throws -> UInt64? {
        guard let row = try db.query("SELECT next_nonce FROM crynux.wallets WHERE address = $1", [wallet.bytes.hex]).first else {
            return nil
        }
        return try RowReader(row).unsigned("next_nonce")
    }
}
