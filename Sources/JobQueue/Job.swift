import Foundation
import Postgres

public enum JobStatus: String, Sendable, CaseIterable {
    case pending, succeeded, failed, cancelled
}

public enum JobStage: String, Sendable, CaseIterable {
    case create, upload, poll, fetch
}

/// A row of `crynux.jobs` as the worker sees it.
public struct Job: Sendable {
    public let id: Int64
    public let kind: String
    public let taskArgs: String
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

    public let feeWeiOverride: String?
    public let vramLimitOverride: Int?
    public let taskTypeOverride: Int?

    public let taskType: Int?
    public let taskHash: String?
    public let cap: Int?
    public let vramLimit: Int?
    public let feeWei: String?
    public let walletAddress: String?
    public let txNonce: Int64?
    public let txHash: String?
    public let txBlockNumber: Int64?
    public let taskId: Int64?
    public let taskDeadline: Date?
    public let abortReason: String?

    public let submittedAt: Date
    public let txSignedAt: Date?
    public let argsUploadedAt: Date?
    public let finishedAt: Date?
    public let lastError: String?
    public let retryStage: JobStage?

    public init(row: PostgresRow) throws {
        id = try row.get("id")
        kind = try row.get("kind")
        taskArgs = try row.get("task_args")
        priority = try row.get("priority")
        status = JobStatus(rawValue: try row.get("status")) ?? .pending
        stage = JobStage(rawValue: try row.get("stage")) ?? .create
        runAt = try row.optional("run_at")
        stageAttempts = try row.get("stage_attempts")
        stageEnteredAt = try row.get("stage_entered_at")
        cancelRequested = !(try row.isNull("cancel_requested_at"))
        lockedBy = try row.optional("locked_by")
        lockedUntil = try row.optional("locked_until")
        leaseToken = try row.get("lease_token")
        feeWeiOverride = try row.optional("fee_wei_override")
        vramLimitOverride = try row.optional("vram_limit_override")
        taskTypeOverride = try row.optional("task_type_override")
        taskType = try row.optional("task_type")
        taskHash = try row.optional("task_hash")
        cap = try row.optional("cap")
        vramLimit = try row.optional("vram_limit")
        feeWei = try row.optional("fee_wei")
        walletAddress = try row.optional("wallet_address")
        txNonce = try row.optional("tx_nonce")
        txHash = try row.optional("tx_hash")
        txBlockNumber = try row.optional("tx_block_number")
        taskId = try row.optional("task_id")
        taskDeadline = try row.optional("task_deadline")
        abortReason = try row.optional("abort_reason")
        submittedAt = try row.get("submitted_at")
        txSignedAt = try row.optional("tx_signed_at")
        argsUploadedAt = try row.optional("args_uploaded_at")
        finishedAt = try row.optional("finished_at")
        lastError = try row.optional("last_error")
        retryStage = try row.optional("retry_stage", as: String.self).flatMap(JobStage.init(rawValue:))
    }
}

public struct JobEvent: Sendable {
    public let at: Date
    public let fromStatus: String?
    public let fromStage: String?
    public let toStatus: String
    public let toStage: String
    public let detail: String
    public let worker: String?
}
