import BigInt
import Ethereum
import Foundation
import Postgres

/// A row of `crynux.jobs` as the worker sees it, with its on-chain facts typed.
public struct Job: Sendable {
    public let id: Int64
    public let kind: String
    /// The exact argument string; nil in a claim for a stage that does not use it (poll, fetch),
    /// and in a claim of arguments too large to ever be sent (see `taskArgsBytes`).
    public let taskArgs: String?
    /// The arguments' size in bytes, as a claim reads it; nil elsewhere.
    public let taskArgsBytes: Int64?
    public let priority: Int
    public let status: JobStatus
    public let stage: JobStage
    public let runAt: Date?
    public let stageAttempts: Int
    public let stageEnteredAt: Date
    public let cancelRequested: Bool
    public let lockedBy: String?
    public let lockedUntil: Date?
    public let leaseToken: Int64

    // Inputs that override what the arguments imply.
    public let feeWeiOverride: BigUInt?
    public let vramLimitOverride: UInt64?
    public let taskTypeOverride: UInt64?

    // On-chain facts, filled in as the job proceeds.
    public let taskType: UInt64?
    public let taskHash: [UInt8]?
    public let cap: UInt64?
    public let vramLimit: UInt64?
    public let feeWei: BigUInt?
    public let walletAddress: Address?
    public let chainId: UInt64?
    public let txNonce: UInt64?
    public let txHash: [UInt8]?
    public let txBlockNumber: UInt64?
    public let taskId: UInt64?
    public let taskDeadline: Date?
    public let resultNode: Address?
    public let abortReason: String?

    public let submittedAt: Date
    public let txSignedAt: Date?
    public let txMinedAt: Date?
    public let argsUploadedAt: Date?
    public let taskQueuedAt: Date?
    public let taskFinishedAt: Date?
    public let finishedAt: Date?
    public let lastError: String?
    public let retryStage: JobStage?
    /// Times the task was created again after an eviction from the full queue.
    public let recreations: Int
    /// Set once the worker decided to cancel the task on chain for its refund: why.
    public let refundReason: String?
    /// The network generation the job's transactions were signed for (`era-d`, `hydrogen`); a
    /// backend may set it to pin an unsigned job to one.
    public let networkProfile: String?
    /// Hydrogen: the CNX the Task contract pulled for the task.
    public let tokenFeeWei: BigUInt?
    /// Hydrogen: the approval this job signed because the wallet's allowance was short.
    public let approvalTxHash: [UInt8]?
    /// Lithium: the job's current Relay task (its task_id_commitment).
    public let relayCommitment: [UInt8]?

    public init(row: PostgresRow) throws {
        let read = RowReader(row)
        id = try row.get("id")
        kind = try row.get("kind")
        taskArgs = try row.optional("task_args")
        taskArgsBytes = row.columnNames.contains("task_args_bytes") ? try row.optional("task_args_bytes") : nil
        priority = try row.get("priority")
        status = try read.enumValue("status", JobStatus.self) ?? .pending
        stage = try read.enumValue("stage", JobStage.self) ?? .create
        runAt = try row.optional("run_at")
        stageAttempts = try row.get("stage_attempts")
        stageEnteredAt = try row.get("stage_entered_at")
        cancelRequested = !(try row.isNull("cancel_requested_at"))
        lockedBy = try row.optional("locked_by")
        lockedUntil = try row.optional("locked_until")
        leaseToken = try row.get("lease_token")
        feeWeiOverride = try read.wei("fee_wei_override")
        vramLimitOverride = try read.unsigned("vram_limit_override")
        taskTypeOverride = try read.unsigned("task_type_override")
        taskType = try read.unsigned("task_type")
        taskHash = try read.hexBytes("task_hash", count: 32)
        cap = try read.unsigned("cap")
        vramLimit = try read.unsigned("vram_limit")
        feeWei = try read.wei("fee_wei")
        walletAddress = try read.address("wallet_address")
        chainId = try read.unsigned("chain_id")
        txNonce = try read.unsigned("tx_nonce")
        txHash = try read.hexBytes("tx_hash", count: 32)
        txBlockNumber = try read.unsigned("tx_block_number")
        taskId = try read.unsigned("task_id")
        taskDeadline = try row.optional("task_deadline")
        resultNode = try read.address("result_node")
        abortReason = try row.optional("abort_reason")
        submittedAt = try row.get("submitted_at")
        txSignedAt = try row.optional("tx_signed_at")
        txMinedAt = try row.optional("tx_mined_at")
        argsUploadedAt = try row.optional("args_uploaded_at")
        taskQueuedAt = try row.optional("task_queued_at")
        taskFinishedAt = try row.optional("task_finished_at")
        finishedAt = try row.optional("finished_at")
        lastError = try row.optional("last_error")
        retryStage = try read.enumValue("retry_stage", JobStage.self)
        recreations = try row.get("recreations")
        refundReason = try row.optional("refund_reason")
        networkProfile = try row.optional("network_profile")
        tokenFeeWei = try read.wei("token_fee_wei")
        approvalTxHash = try read.hexBytes("approval_tx_hash", count: 32)
        relayCommitment = try read.hexBytes("relay_commitment", count: 32)
    }
}

/// One line of a job's history.
public struct JobEvent: Sendable {
    public let at: Date
    public let fromStatus: String?
    public let fromStage: String?
    public let toStatus: String
    public let toStage: String
    public let detail: String
    public let worker: String?
}

/// Why a transaction was signed for a job.
public enum TransactionPurpose: String, Sendable {
    case createTask = "create_task"
    case cancelTask = "cancel_task"
    /// A zero-value transfer to the wallet itself, using a nonce nothing else can.
    case fillNonce = "fill_nonce"
    /// Hydrogen: ERC20 `approve(task contract, amount)`, so that createTask can pull the fee.
    case approve
}

/// A transaction signed for a job, as stored in `crynux.job_transactions` before it was sent.
public struct StoredTransaction: Sendable, Equatable {
    public let hash: [UInt8]
    public let jobId: Int64?
    public let purpose: TransactionPurpose
    public let wallet: Address
    public let nonce: UInt64
    public let raw: [UInt8]
    /// gasPrice, or maxFeePerGas with a tip.
    public let gasPrice: BigUInt
    /// maxPriorityFeePerGas of an EIP-1559 transaction; nil for legacy.
    public let tip: BigUInt?
    public let gasLimit: UInt64
    public let value: BigUInt
    public let signedAt: Date
    public let lastSentAt: Date?
    public let sendCount: Int
    /// The node refused these bytes for good; they are not sent again.
    public let refusedAt: Date?
    public let refusal: String?
    public let minedBlock: UInt64?
    public let minedStatus: Bool?

    public init(hash: [UInt8], jobId: Int64? = nil, purpose: TransactionPurpose, wallet: Address = .zero, nonce: UInt64, raw: [UInt8],
                gasPrice: BigUInt, tip: BigUInt? = nil, gasLimit: UInt64, value: BigUInt, signedAt: Date, lastSentAt: Date?,
                sendCount: Int = 0, refusedAt: Date? = nil, refusal: String? = nil, minedBlock: UInt64? = nil, minedStatus: Bool? = nil) {
        self.hash = hash
        self.jobId = jobId
        self.purpose = purpose
        self.wallet = wallet
        self.nonce = nonce
        self.raw = raw
        self.gasPrice = gasPrice
        self.tip = tip
        self.gasLimit = gasLimit
        self.value = value
        self.signedAt = signedAt
        self.lastSentAt = lastSentAt
        self.sendCount = sendCount
        self.refusedAt = refusedAt
        self.refusal = refusal
        self.minedBlock = minedBlock
        self.minedStatus = minedStatus
    }

    public init(row: PostgresRow) throws {
        let read = RowReader(row)
        guard let hash = try read.hexBytes("tx_hash", count: 32), let nonce = try read.unsigned("nonce"),
              let purpose = try read.enumValue("purpose", TransactionPurpose.self), let wallet = try read.address("wallet_address"),
              let gasPrice = try read.wei("gas_price_wei"), let gasLimit = try read.unsigned("gas_limit"),
              let value = try read.wei("value_wei") else {
            throw PostgresError(.decoding, "a crynux.job_transactions row lacks a required value")
        }
        self.init(hash: hash, jobId: try row.optional("job_id"), purpose: purpose, wallet: wallet, nonce: nonce, raw: try row.get("raw_tx"),
                  gasPrice: gasPrice, tip: try read.wei("priority_fee_wei"), gasLimit: gasLimit, value: value,
                  signedAt: try row.get("signed_at"), lastSentAt: try row.optional("last_sent_at"), sendCount: try row.get("send_count"),
                  refusedAt: try row.optional("refused_at"), refusal: try row.optional("refusal"),
                  minedBlock: try read.unsigned("mined_block"), minedStatus: try row.optional("mined_status"))
    }
}

/// One result file of a finished task.
public struct ResultFile: Sendable, Equatable {
    public let index: Int
    public let contentType: String
    public let data: [UInt8]

    public init(index: Int, contentType: String, data: [UInt8]) {
        self.index = index
        self.contentType = contentType
        self.data = data
    }
}

/// Reads the typed columns: a value that does not fit its type is a clear error, never a trap.
struct RowReader {
    let row: PostgresRow
    init(_ row: PostgresRow) { self.row = row }

    func unsigned(_ column: String) throws -> UInt64? {
        guard let value = try row.optional(column, as: Int64.self) else { return nil }
        guard let unsigned = UInt64(exactly: value) else {
            throw PostgresError(.decoding, "column \(column) holds \(value), not a non-negative integer")
        }
        return unsigned
    }

    func wei(_ column: String) throws -> BigUInt? {
        guard let text = try row.optional(column, as: String.self) else { return nil }
        guard let value = BigUInt(text, radix: 10) else {
            throw PostgresError(.decoding, "column \(column) holds \(text.prefix(40)), not a whole number of wei")
        }
        return value
    }

    func hexBytes(_ column: String, count: Int) throws -> [UInt8]? {
        guard let text = try row.optional(column, as: String.self) else { return nil }
        guard let bytes = [UInt8](hex: text), bytes.count == count else {
            throw PostgresError(.decoding, "column \(column) holds \(text.prefix(80)), not \(count) bytes of hex")
        }
        return bytes
    }

    func address(_ column: String) throws -> Address? {
        guard let text = try row.optional(column, as: String.self) else { return nil }
        guard let address = Address(hex: text) else {
            throw PostgresError(.decoding, "column \(column) holds \(text.prefix(60)), not an address")
        }
        return address
    }

    func enumValue<T: RawRepresentable>(_ column: String, _ type: T.Type) throws -> T? where T.RawValue == String {
        guard let text = try row.optional(column, as: String.self) else { return nil }
        guard let value = T(rawValue: text) else {
            throw PostgresError(.decoding, "column \(column) holds an unknown value \(text.prefix(40))")
        }
        return value
    }
}
