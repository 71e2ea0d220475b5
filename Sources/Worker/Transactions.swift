import BigInt
import Ethereum
import Foundation
import JobQueue
import Postgres

/// A transaction we signed for a job, as stored in `crynux.job_transactions`.
struct StoredTransaction {
    let hash: String
    let nonce: Int64
    let raw: [UInt8]
    let gasPrice: BigUInt
    let gasLimit: UInt64
    let lastSentAt: Date?
    let signedAt: Date

    init(row: PostgresRow) throws {
        hash = try row.get("tx_hash")
        nonce = try row.get("nonce")
        raw = try row.get("raw_tx")
        gasPrice = BigUInt(try row.get("gas_price_wei", as: String.self)) ?? 0
        gasLimit = UInt64(try row.get("gas_limit", as: Int64.self))
        lastSentAt = try row.optional("last_sent_at")
        signedAt = try row.get("signed_at")
    }
}

enum Purpose: String {
    case createTask = "create_task"
    case cancelTask = "cancel_task"
}

/// What the node said to a raw transaction.
enum BroadcastResult {
    case accepted
    /// The nonce is used on chain: by this transaction (mined) or by another one.
    case nonceTooLow
    case rejected(String)
}

/// Signing, storing and sending transactions so that a job never pays twice: a transaction is
/// durable in PostgreSQL, with its nonce reserved, before any byte of it reaches the network.
struct Transactions {
    let network: Network
    var config: WorkerConfig { network.config }

    /// Reserves the next nonce of the wallet (or reuses `nonce` for a replacement), signs, and in
    /// the same database transaction stores the signed bytes and writes `jobFields` to the job,
    /// fenced by its lease. Throws `LeaseLost` (rolling everything back) if the lease is gone.
    func signAndStore(_ db: PostgresConnection, job: Job, worker: String, purpose: Purpose, nonce reuse: Int64? = nil,
                      data: [UInt8], value: BigUInt, gasLimit: UInt64, gasPrice: BigUInt,
                      jobFields: [(String, (any PostgresEncodable)?)], detail: String) throws -> StoredTransaction {
        // Asked before the transaction: nothing goes to the network while the wallet row is locked.
        let tip = config.useEIP1559 ? min(try network.rpc.maxPriorityFeePerGas(), gasPrice) : nil
        return try db.transaction { db in
            let nonce: Int64
            if let reuse {
                nonce = reuse
            } else {
                guard let row = try db.query("SELECT next_nonce FROM crynux.wallets WHERE address = $1 FOR UPDATE",
                                             [network.walletHex]).first else {
                    throw WorkerError("wallet \(network.walletHex) is not registered in crynux.wallets")
                }
                nonce = try row.get("next_nonce")
                try db.execute("UPDATE crynux.wallets SET next_nonce = next_nonce + 1, updated_at = now() WHERE address = $1",
                               [network.walletHex])
            }
            let signed = try sign(nonce: UInt64(nonce), data: data, value: value, gasLimit: gasLimit, gasPrice: gasPrice, tip: tip)
            let hash = signed.hash.hex
            // The job's own tx columns describe its createTask; other transactions live only in job_transactions.
            let txFields: [(String, (any PostgresEncodable)?)] = purpose == .createTask ? [("tx_nonce", nonce), ("tx_hash", hash)] : []
            let update = JobUpdate(fields: jobFields + txFields, detail: "\(detail): nonce \(nonce), tx \(hash)")
            guard try JobLeases.apply(db, update, to: job, worker: worker, keepLease: true) else { throw LeaseLost() }
            let row = try db.query("""
                INSERT INTO crynux.job_transactions
                    (tx_hash, job_id, purpose, wallet_address, nonce, gas_price_wei, gas_limit, value_wei, raw_tx)
                VALUES ($1, $2, $3, $4, $5, $6::numeric, $7, $8::numeric, $9)
                RETURNING *
                """, [hash, job.id, purpose.rawValue, network.walletHex, nonce, gasPrice.description, Int64(gasLimit),
                      value.description, signed.raw])[0]
            return try StoredTransaction(row: row)
        }
    }

    /// EIP-1559 when a tip is given, else legacy EIP-155.
    private func sign(nonce: UInt64, data: [UInt8], value: BigUInt, gasLimit: UInt64, gasPrice: BigUInt, tip: BigUInt?) throws -> SignedTransaction {
        if let tip {
            return try EIP1559Transaction(chainId: network.chainId, nonce: nonce, maxPriorityFeePerGas: tip, maxFeePerGas: gasPrice,
                                          gasLimit: gasLimit, to: network.task.address, value: value, data: data)
                .signed(with: network.key)
        }
        return try LegacyTransaction(nonce: nonce, gasPrice: gasPrice, gasLimit: gasLimit, to: network.task.address,
                                     value: value, data: data, chainId: network.chainId)
            .signed(with: network.key)
    }

    /// The price for a new transaction: configured, or the node's suggestion (doubled as the
    /// max fee for EIP-1559 so a rising base fee does not strand it).
    func currentGasPrice() throws -> BigUInt {
        if let fixed = config.gasPriceWei { return fixed }
        let price = try network.rpc.gasPrice()
        return config.useEIP1559 ? price * 2 : price
    }

    /// The job's transactions of the current attempt: a retried job keeps its earlier (dead)
    /// transactions in the table, so createTask ones are matched by nonce and cancel ones by time.
    func transactions(_ db: PostgresConnection, of job: Job, purpose: Purpose) throws -> [StoredTransaction] {
        try db.query("""
            SELECT * FROM crynux.job_transactions
            WHERE job_id = $1 AND purpose = $2 AND ($3::bigint IS NULL OR nonce = $3) AND ($4::timestamptz IS NULL OR signed_at >= $4)
            ORDER BY signed_at, tx_hash
            """, [job.id, purpose.rawValue, purpose == .createTask ? job.txNonce : nil,
                  purpose == .cancelTask ? job.txSignedAt : nil]).map { try StoredTransaction(row: $0) }
    }

    /// Sends stored bytes (again). Network failures throw; node verdicts are returned.
    func broadcast(_ db: PostgresConnection, _ tx: StoredTransaction) throws -> BroadcastResult {
        defer {
            _ = try? db.execute("UPDATE crynux.job_transactions SET last_sent_at = now(), send_count = send_count + 1 WHERE tx_hash = $1",
                                [tx.hash])
        }
        do {
            _ = try network.rpc.sendRawTransaction(tx.raw)
            return .accepted
        } catch EthereumClientError.rpc(let error) {
            let message = error.message.lowercased()
            if message.contains("already known") || message.contains("known transaction") || message.contains("already imported") {
                return .accepted
            }
            if message.contains("nonce too low") { return .nonceTooLow }
            return .rejected(error.message)
        }
    }

    /// The receipt of whichever of `txs` was mined, if any (newest first); it is recorded.
    func minedReceipt(_ db: PostgresConnection, of txs: [StoredTransaction]) throws -> (StoredTransaction, TransactionReceipt)? {
        for tx in txs.reversed() {
            guard let hash = [UInt8](hex: tx.hash), let receipt = try network.rpc.getTransactionReceipt(hash) else { continue }
            try db.execute("UPDATE crynux.job_transactions SET mined_block = $2, mined_status = $3 WHERE tx_hash = $1",
                           [tx.hash, Int64(receipt.blockNumber), receipt.status])
            return (tx, receipt)
        }
        return nil
    }
}
