/// The two inference task types of the era-D Task contract.
public enum TaskKind: String, Sendable, CaseIterable {
    case sd
    case gpt

    /// The contract's task type constant (`TASK_TYPE_SD = 0`, `TASK_TYPE_LLM = 1`).
    public var taskType: UInt64 {
        switch self {
        case .sd: 0
        case .gpt: 1
        }
    }

    public init?(taskType: UInt64) {
        switch taskType {
        case 0: self = .sd
        case 1: self = .gpt
        default: return nil
        }
    }

    /// MIME type of one result file: SD results are PNG images, GPT results a JSON document.
    public var resultContentType: String {
        switch self {
        case .sd: "image/png"
        case .gpt: "application/json"
        }
    }
}

/// Why task arguments were refused. `field` is the path of the offending value
/// (`task_config.num_images`, `messages[2].role`, or `task_args` for the document as a whole).
public struct TaskArgumentsError: Error, Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    /// One sentence naming the field, what was expected and what was found, e.g.
    /// `task_config.num_images: must be an integer from 1 to 10 (got 12)`.
    public var description: String { "\(field): \(message)" }
}

/// What the pipeline needs to create a task for a validated argument string.
public struct ValidatedTask: Sendable, Equatable {
    public let kind: TaskKind
    public let taskType: UInt64
    /// SD: `task_config.num_images` (6 when absent); GPT: 1. Never 0: the contract divides the fee by it.
    public let cap: UInt64
    /// Minimum GPU memory in GB the selected nodes must have.
    public let vramLimit: UInt64
    /// Number of result files to download: SD = cap, GPT = 1.
    public let resultCount: Int
    /// keccak256 of the exact UTF-8 bytes of the argument string (the Relay checks it).
    public let taskHash: [UInt8]

    public init(kind: TaskKind, cap: UInt64, vramLimit: UInt64, resultCount: Int, taskHash: [UInt8]) {
        self.kind = kind
        self.taskType = kind.taskType
        self.cap = cap
        self.vramLimit = vramLimit
        self.resultCount = resultCount
        self.taskHash = taskHash
    }
}
