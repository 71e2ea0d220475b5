import BigInt
import Ethereum
import Foundation

// The live Crynux network ("Lithium"): tasks are signed HTTP requests to the Relay, paid from the
// creator's Relay Account, and validated by the creator with a VRF proof. The names and numbers are
// crynux-relay@24ffc26's (models/inference_task.go, api/v1/inference_tasks/*.go).

/// A task's status on the Relay (models/inference_task.go TaskStatus, 0–11).
public enum LithiumStatus: UInt8, Sendable, CaseIterable {
    case queued = 0, started, parametersUploaded, errorReported, scoreReady, validated, groupValidated,
         endInvalidated, endSuccess, endAborted, endGroupRefund, endGroupSuccess

    public var isTerminal: Bool {
        switch self {
        case .endInvalidated, .endSuccess, .endAborted, .endGroupRefund, .endGroupSuccess: true
        default: false
        }
    }

    /// The Relay waits for the creator's validation (docs/task_timeout.md: ScoreReady, ErrorReported).
    public var awaitsValidation: Bool { self == .scoreReady || self == .errorReported }

    /// Reached only after the creator's validation (an abort is not: it may come before).
    public var followsValidation: Bool {
        switch self {
        case .validated, .groupValidated, .endInvalidated, .endSuccess, .endGroupRefund, .endGroupSuccess: true
        default: false
        }
    }

    /// The results may be downloaded (get_result.go).
    public var hasResults: Bool { self == .endSuccess || self == .endGroupSuccess }

    public var name: String {
        switch self {
        case .queued: "Queued"
        case .started: "Started"
        case .parametersUploaded: "ParametersUploaded"
        case .errorReported: "ErrorReported"
        case .scoreReady: "ScoreReady"
        case .validated: "Validated"
        case .groupValidated: "GroupValidated"
        case .endInvalidated: "EndInvalidated"
        case .endSuccess: "EndSuccess"
        case .endAborted: "EndAborted"
        case .endGroupRefund: "EndGroupRefund"
        case .endGroupSuccess: "EndGroupSuccess"
        }
    }
}

/// Why the Relay aborted a task (models/inference_task.go TaskAbortReason, 0–10).
public enum LithiumAbortReason: UInt8, Sendable, CaseIterable {
    case none = 0, timeout, modelDownloadFailed, incorrectResult, taskFeeTooLow, groupTimeout, errorReported,
         creatorCancelled, creatorValidationTimeout, resultUploadTimeout, nodeSlashed

    /// The fee comes back to the Relay Account (service/task_status.go SetTaskStatusEndAborted): every
    /// abort but a creator-validation timeout, which pays the node instead.
    public var refunded: Bool { self != .creatorValidationTimeout }

    public var name: String {
        switch self {
        case .none: "None"
        case .timeout: "Timeout"
        case .modelDownloadFailed: "ModelDownloadFailed"
        case .incorrectResult: "IncorrectResult"
        case .taskFeeTooLow: "TaskFeeTooLow"
        case .groupTimeout: "GroupTimeout"
        case .errorReported: "ErrorReported"
        case .creatorCancelled: "CreatorCancelled"
        case .creatorValidationTimeout: "CreatorValidationTimeout"
        case .resultUploadTimeout: "ResultUploadTimeout"
        case .nodeSlashed: "NodeSlashed"
        }
    }
}

/// The Relay's task types (models/inference_task.go TaskType).
public enum LithiumTaskType: UInt8, Sendable {
    case sd = 0, llm = 1

    public init(_ kind: TaskKind) { self = kind == .sd ? .sd : .llm }
}

/// A create request: the form fields of `POST /v1/inference_tasks/{task_id_commitment}` but the
/// timestamp and signature. Stored with the job before it is sent; sent again unchanged.
public struct LithiumTaskRequest: Sendable, Equatable {
    /// keccak256(taskId ‖ nonce).
    public var commitment: [UInt8]
    public var taskArgs: String
    public var taskType: LithiumTaskType
    public var nonce: [UInt8]
    public var modelIds: [String]
    public var minVram: UInt64
    /// Pins the task to one GPU (an LLM validation group's members); "" and 0 for none.
    public var requiredGPU: String
    public var requiredGPUVram: UInt64
    public var taskVersion: String
    public var taskSize: UInt64
    public var taskFee: BigUInt

    public init(commitment: [UInt8], taskArgs: String, taskType: LithiumTaskType, nonce: [UInt8], modelIds: [String], minVram: UInt64,
                requiredGPU: String = "", requiredGPUVram: UInt64 = 0, taskVersion: String, taskSize: UInt64, taskFee: BigUInt) {
        self.commitment = commitment
        self.taskArgs = taskArgs
        self.taskType = taskType
        self.nonce = nonce
        self.modelIds = modelIds
        self.minVram = minVram
        self.requiredGPU = requiredGPU
        self.requiredGPUVram = requiredGPUVram
        self.taskVersion = taskVersion
        self.taskSize = taskSize
        self.taskFee = taskFee
    }

    /// keccak256(taskId ‖ nonce), as the Relay checks it at validation (service/validate_task.go validateTaskID).
    public static func commitment(taskId: [UInt8], nonce: [UInt8]) -> [UInt8] {
        keccak256(taskId + nonce)
    }
}

/// A task as `GET /v1/inference_tasks/{c}` (and the create answer) describes it.
public struct LithiumTask: Sendable, Equatable {
    public var sequence: UInt64
    public var commitment: [UInt8]
    public var creator: Address
    /// 32 bytes the Relay drew at create: the VRF input.
    public var samplingSeed: [UInt8]
    public var status: LithiumStatus
    public var abortReason: LithiumAbortReason
    public var taskError: UInt8
    /// Seconds the node may take from start to score, computed by the Relay at dispatch (0 while queued).
    public var timeout: UInt64
    public var score: String
    public var selectedNode: Address?
    public var taskFee: BigUInt
    public var taskSize: UInt64
    public var createTime: Date?
    public var startTime: Date?
    public var scoreReadyTime: Date?
    public var validatedTime: Date?
    public var resultUploadedTime: Date?

    public init(sequence: UInt64, commitment: [UInt8], creator: Address, samplingSeed: [UInt8], status: LithiumStatus,
                abortReason: LithiumAbortReason = .none, taskError: UInt8 = 0, timeout: UInt64 = 0, score: String = "",
                selectedNode: Address? = nil, taskFee: BigUInt, taskSize: UInt64, createTime: Date? = nil, startTime: Date? = nil,
                scoreReadyTime: Date? = nil, validatedTime: Date? = nil, resultUploadedTime: Date? = nil) {
        self.sequence = sequence
        self.commitment = commitment
        self.creator = creator
        self.samplingSeed = samplingSeed
        self.status = status
        self.abortReason = abortReason
        self.taskError = taskError
        self.timeout = timeout
        self.score = score
        self.selectedNode = selectedNode
        self.taskFee = taskFee
        self.taskSize = taskSize
        self.createTime = createTime
        self.startTime = startTime
        self.scoreReadyTime = scoreReadyTime
        self.validatedTime = validatedTime
        self.resultUploadedTime = resultUploadedTime
    }
}

public enum LithiumCreateOutcome: Sendable, Equatable {
    case created(LithiumTask)
    /// "Task already uploaded": a task with this commitment exists (ours, sent before: its answer was lost).
    case alreadyUploaded
    /// "Insufficient relay account balance": nothing was charged; the account must be funded.
    case insufficientBalance
    /// Any other 400, as `"<field>: <message>"`: sending the same request again cannot succeed.
    case rejected(String)
}

public enum LithiumLookup: Sendable, Equatable {
    case found(LithiumTask)
    /// "Task not found": the Relay has no task with this commitment.
    case notFound
    /// Any other 400 ("Signer not allowed", …), as `"<field>: <message>"`.
    case rejected(String)
}

/// The node a task runs on (`GET …/selected_node`): an LLM validation group pins its members to its GPU.
public struct LithiumSelectedNode: Sendable, Equatable {
    public var address: Address
    public var gpuName: String
    public var gpuVram: UInt64

    public init(address: Address, gpuName: String, gpuVram: UInt64) {
        self.address = address
        self.gpuName = gpuName
        self.gpuVram = gpuVram
    }
}

public enum LithiumSelectedNodeLookup: Sendable, Equatable {
    case found(LithiumSelectedNode)
    /// "Task not started": no node yet.
    case notStarted
    case notFound
    case rejected(String)
}

public enum LithiumValidateOutcome: Sendable, Equatable {
    case validated
    /// The Relay refused (a 400 validation error, or the 500 its validation service answers with
    /// its own words: "task is selected for validation", "illegal task state", …).
    case refused(String)
}

public enum LithiumCancelOutcome: Sendable, Equatable {
    case cancelled
    /// "Task can no longer be cancelled": it left the queue.
    case tooLate
    case notFound
    case rejected(String)
}

/// The Relay as the Lithium stages use it, for one wallet (every request is signed by it). The real
/// one is `LithiumRelayClient`; stage tests script their own. Transport failures, timeouts and
/// unexpected answers throw `RelayError` (retry later); the Relay's verdicts are returned.
public protocol LithiumRelay: Sendable {
    var wallet: Address { get }
    func create(_ request: LithiumTaskRequest) throws(RelayError) -> LithiumCreateOutcome
    func task(_ commitment: [UInt8]) throws(RelayError) -> LithiumLookup
    func selectedNode(_ commitment: [UInt8]) throws(RelayError) -> LithiumSelectedNodeLookup
    func validate(commitments: [[UInt8]], taskId: [UInt8], proof: [UInt8], publicKey: [UInt8]) throws(RelayError) -> LithiumValidateOutcome
    func cancel(_ commitment: [UInt8]) throws(RelayError) -> LithiumCancelOutcome
    func result(_ commitment: [UInt8], index: Int, kind: TaskKind) throws(RelayError) -> DownloadOutcome
    /// The wallet's Relay Account balance (wei of CNX), by the signed v2 balance read.
    func balance() throws(RelayError) -> BigUInt
}
