import BigInt
import Ethereum

/// The era-D `TaskInfo` struct returned by `getTask` (field order of Task.sol). Era B's 16-field
/// struct (`Layout.eraB`) decodes into it with `commitmentSubmitRounds` empty and `totalBalance` 0.
public struct TaskInfo: Sendable, Equatable {
    /// Which generation's `getTask` struct: era B lacks era D's fields 10 (`commitmentSubmitRounds`)
    /// and 17 (`totalBalance`).
    public enum Layout: Sendable { case eraD, eraB }

    public var id: BigUInt
    public var taskType: BigUInt
    public var creator: Address
    public var taskHash: [UInt8]
    public var dataHash: [UInt8]
    public var vramLimit: BigUInt
    /// Not reliable as a success signal (see `succeeded`).
    public var isSuccess: Bool
    public var selectedNodes: [Address]
    public var commitments: [[UInt8]]
    public var nonces: [[UInt8]]
    public var commitmentSubmitRounds: [BigUInt]
    public var results: [[UInt8]]
    public var resultDisclosedRounds: [BigUInt]
    public var resultNode: Address
    public var aborted: Bool
    /// Unix seconds after which the creator may cancel the task.
    public var timeout: BigUInt
    public var balance: BigUInt
    public var totalBalance: BigUInt

    public init(id: BigUInt = 0, taskType: BigUInt = 0, creator: Address = .zero,
                taskHash: [UInt8] = TaskContract.zero32, dataHash: [UInt8] = TaskContract.zero32,
                vramLimit: BigUInt = 0, isSuccess: Bool = false, selectedNodes: [Address] = [],
                commitments: [[UInt8]] = [], nonces: [[UInt8]] = [], commitmentSubmitRounds: [BigUInt] = [],
                results: [[UInt8]] = [], resultDisclosedRounds: [BigUInt] = [], resultNode: Address = .zero,
                aborted: Bool = false, timeout: BigUInt = 0, balance: BigUInt = 0, totalBalance: BigUInt = 0) {
        self.id = id
        self.taskType = taskType
        self.creator = creator
        self.taskHash = taskHash
        self.dataHash = dataHash
        self.vramLimit = vramLimit
        self.isSuccess = isSuccess
        self.selectedNodes = selectedNodes
        self.commitments = commitments
        self.nonces = nonces
        self.commitmentSubmitRounds = commitmentSubmitRounds
        self.results = results
        self.resultDisclosedRounds = resultDisclosedRounds
        self.resultNode = resultNode
        self.aborted = aborted
        self.timeout = timeout
        self.balance = balance
        self.totalBalance = totalBalance
    }

    /// `getTask` answers an all-zero struct for a task that is queued, deleted after it finished or
    /// aborted, or that never existed.
    public var exists: Bool { id != 0 }

    /// Era D has no status field and `isSuccess` is wrong in two branches of the contract; a set result
    /// node on a task that is not aborted is the success signal.
    public var succeeded: Bool { resultNode != .zero && !aborted }
}

public enum TaskOutcome: Sendable, Equatable {
    case succeeded(resultNode: Address)
    case aborted(reason: String)
}

public struct ContractDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Calldata and log decoding for the era-D Task contract (`createTask` with five arguments, payable).
public struct TaskContract: Sendable {
    public static let zero32 = [UInt8](repeating: 0, count: 32)

    public static let createTaskSignature = "createTask(uint256,bytes32,bytes32,uint256,uint256)"
    public static let getTaskSignature = "getTask(uint256)"
    public static let cancelTaskSignature = "cancelTask(uint256)"

    public static let createTaskSelector: [UInt8] = [0x04, 0x3b, 0x43, 0x8f]
    public static let getTaskSelector: [UInt8] = [0x1d, 0x65, 0xe7, 0x7e]
    public static let cancelTaskSelector: [UInt8] = [0x7e, 0xec, 0x20, 0xa8]

    /// `TaskPending(uint256 taskId, uint256 taskType, address indexed creator, bytes32 taskHash, bytes32 dataHash)`
    public static let taskPendingTopic = word(hex: "a8b23b175c46381c07d9001d248005cebb7fd414d3f64bf1cebfe320a23f6050")
    /// `TaskStarted(uint256,uint256,address indexed,address indexed,bytes32,bytes32,uint256)`
    public static let taskStartedTopic = word(hex: "1399dffd65fe4e2d81d94992e9227fc0a75a5289ba36619c5afe826c0e686440")
    /// `TaskSuccess(uint256 indexed taskId, bytes result, address indexed resultNode)`
    public static let taskSuccessTopic = word(hex: "3cd644a756687c7dd87bbe74e2fd65bde569a3335e26f68f8fa334b2849673f7")
    /// `TaskAborted(uint256 indexed taskId, string reason)`
    public static let taskAbortedTopic = word(hex: "346216bb718ede47b40f85e7caf58cd997eebda879d146a8b49091c106c851d9")
    /// `TaskResultUploaded(uint256 indexed taskId)`
    public static let taskResultUploadedTopic = word(hex: "11f72037be5686bd54d7042f5a9392a74a7c127754536da6a05710bfdf1f9a0e")

    /// TaskAborted reasons the worker acts on.
    public static let cancelledReason = "Task Cancelled"
    public static let evictedReason = "Task fee is too low"

    public let address: Address

    public init(address: Address) {
        self.address = address
    }

    // MARK: calldata

    /// `createTask(taskType, taskHash, dataHash, vramLimit, cap)`; the fee is the transaction's value.
    /// Hashes must be 32 bytes (else it throws). A cap of 0 is encoded as given, but the contract
    /// divides the fee by it when the task has to be queued (Panic 0x12).
    public func createTaskCall(taskType: UInt64, taskHash: [UInt8], dataHash: [UInt8] = TaskContract.zero32,
                               vramLimit: UInt64, cap: UInt64) throws -> [UInt8] {
        try ABI.encodeCall(Self.createTaskSignature, [
            .uint(BigUInt(taskType)), .fixedBytes(taskHash), .fixedBytes(dataHash), .uint(BigUInt(vramLimit)), .uint(BigUInt(cap)),
        ])
    }

    public func getTaskCall(taskId: UInt64) -> [UInt8] {
        Self.getTaskSelector + ABI.uintWord(taskId)
    }

    public func cancelTaskCall(taskId: UInt64) -> [UInt8] {
        Self.cancelTaskSelector + ABI.uintWord(taskId)
    }

    // MARK: getTask

    private static let taskInfoFields: [ABIType] = [
        .uint(256), .uint(256), .address, .fixedBytes(32), .fixedBytes(32), .uint(256), .bool,
        .array(.address), .array(.fixedBytes(32)), .array(.fixedBytes(32)), .array(.uint(256)),
        .array(.bytes), .array(.uint(256)), .address, .bool, .uint(256), .uint(256), .uint(256),
    ]
    private static let eraBTaskInfoFields = taskInfoFields.enumerated().filter { $0.offset != 10 && $0.offset != 17 }.map(\.element)

    /// Decodes `getTask`'s return data: one dynamic tuple, so the data starts with its 0x20 offset.
    /// Field numbers in errors are era D's.
    public static func decodeTaskInfo(_ returnData: [UInt8], layout: TaskInfo.Layout = .eraD) throws -> TaskInfo {
        let fields = layout == .eraD ? taskInfoFields : eraBTaskInfoFields
        let values = try ABI.decode([.tuple(fields)], from: returnData)
        guard values.count == 1, var f = values[0].tuple, f.count == fields.count else {
            throw ContractDecodingError("getTask returned \(returnData.count) bytes that are not a TaskInfo tuple")
        }
        if layout == .eraB {
            // Era D's positions, with the fields era B lacks empty.
            f.insert(.array([]), at: 10)
            f.append(.uint(0))
        }
        func uint(_ i: Int) throws -> BigUInt {
            guard let v = f[i].uint else { throw ContractDecodingError("TaskInfo field \(i) is not a uint") }
            return v
        }
        func address(_ v: ABIValue, _ i: Int) throws -> Address {
            guard let a = v.address else { throw ContractDecodingError("TaskInfo field \(i) is not an address") }
            return a
        }
        func bool(_ i: Int) throws -> Bool {
            guard let v = f[i].bool else { throw ContractDecodingError("TaskInfo field \(i) is not a bool") }
            return v
        }
        func bytes(_ v: ABIValue, _ i: Int) throws -> [UInt8] {
            guard let b = v.bytes else { throw ContractDecodingError("TaskInfo field \(i) is not bytes") }
            return b
        }
        func list(_ i: Int) throws -> [ABIValue] {
            guard let a = f[i].array else { throw ContractDecodingError("TaskInfo field \(i) is not an array") }
            return a
        }
        return TaskInfo(
            id: try uint(0),
            taskType: try uint(1),
            creator: try address(f[2], 2),
            taskHash: try bytes(f[3], 3),
            dataHash: try bytes(f[4], 4),
            vramLimit: try uint(5),
            isSuccess: try bool(6),
            selectedNodes: try list(7).map { v throws in try address(v, 7) },
            commitments: try list(8).map { v throws in try bytes(v, 8) },
            nonces: try list(9).map { v throws in try bytes(v, 9) },
            commitmentSubmitRounds: try list(10).map { v throws in
                guard let u = v.uint else { throw ContractDecodingError("TaskInfo field 10 is not a uint[]") }
                return u
            },
            results: try list(11).map { v throws in try bytes(v, 11) },
            resultDisclosedRounds: try list(12).map { v throws in
                guard let u = v.uint else { throw ContractDecodingError("TaskInfo field 12 is not a uint[]") }
                return u
            },
            resultNode: try address(f[13], 13),
            aborted: try bool(14),
            timeout: try uint(15),
            balance: try uint(16),
            totalBalance: try uint(17))
    }

    // MARK: logs

    /// The id of the task created by a `createTask` transaction: the first data word of the TaskPending
    /// log emitted by this contract. Logs of other contracts are ignored, and so is the TaskAborted of a
    /// task evicted from a full queue in the same transaction. With several TaskPending logs the one whose
    /// `creator` topic is `creator` (by default the receipt's sender) wins, else the first.
    public func createdTaskId(in receipt: TransactionReceipt, creator: Address? = nil) -> UInt64? {
        let pending = receipt.logs.filter {
            $0.address == address && $0.topics.first == Self.taskPendingTopic && $0.data.count >= 32
        }
        var chosen = pending.first
        if let creator = creator ?? receipt.from, pending.count > 1 {
            let topic = Self.word(creator)
            chosen = pending.first { $0.topics.count > 1 && $0.topics[1] == topic } ?? pending.first
        }
        guard let log = chosen else { return nil }
        return Self.uint64(fromWord: Array(log.data[0..<32]))
    }

    /// TaskSuccess and TaskAborted logs of one task (topic1 = task id) from `fromBlock` on.
    public func outcomeFilter(taskId: UInt64, fromBlock: UInt64) -> LogFilter {
        outcomeFilter(taskIds: [taskId], fromBlock: fromBlock)
    }

    /// One query for the outcome logs of several tasks (topic1 is an OR-list of ids).
    public func outcomeFilter(taskIds: [UInt64], fromBlock: UInt64) -> LogFilter {
        LogFilter(fromBlock: .number(fromBlock), toBlock: .latest, address: address,
                  topics: [[Self.taskSuccessTopic, Self.taskAbortedTopic], taskIds.map(ABI.uintWord)])
    }

    /// The outcome a TaskSuccess or TaskAborted log reports; nil for any other log.
    public static func decodeOutcome(_ log: Log) -> TaskOutcome? {
        switch log.topics.first {
        case taskSuccessTopic?:
            guard log.topics.count >= 3, log.topics[2].count == 32 else { return nil }
            return .succeeded(resultNode: Address(bytes: Array(log.topics[2][12..<32])))
        case taskAbortedTopic?:
            if let values = try? ABI.decode([.string], from: log.data), let reason = values.first?.string {
                return .aborted(reason: reason)
            }
            return .aborted(reason: "undecodable abort reason " + log.data.hex)
        default:
            return nil
        }
    }

    /// The task id in topic1 of TaskSuccess, TaskAborted and TaskResultUploaded logs.
    public static func taskId(ofIndexedLog log: Log) -> UInt64? {
        guard log.topics.count >= 2, log.topics[1].count == 32 else { return nil }
        return uint64(fromWord: log.topics[1])
    }

    // MARK: words

    static func word(_ a: Address) -> [UInt8] {
        [UInt8](repeating: 0, count: 12) + a.bytes
    }

    static func word(hex: String) -> [UInt8] {
        guard let bytes = [UInt8](hex: hex), bytes.count == 32 else { preconditionFailure("bad constant \(hex)") }
        return bytes
    }

    /// nil when the word does not fit in 64 bits.
    static func uint64(fromWord w: [UInt8]) -> UInt64? {
        guard w.count == 32, w[0..<24].allSatisfy({ $0 == 0 }) else { return nil }
        return w[24..<32].reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// The era-D TaskQueue contract: only `include(taskId)`, to tell a queued task from a deleted one.
public struct TaskQueueContract: Sendable {
    public static let includeSignature = "include(uint256)"
    public static let includeSelector: [UInt8] = [0xa9, 0x6e, 0x84, 0x38]

    public let address: Address

    public init(address: Address) {
        self.address = address
    }

    /// `size()` and `getSizeLimit()`: how many tasks wait, and how many may before the cheapest is evicted.
    public static let sizeSelector: [UInt8] = ABI.selector("size()")
    public static let sizeLimitSelector: [UInt8] = ABI.selector("getSizeLimit()")

    /// `removeCheapestTask()`, returning `TaskInQueue(id, taskType, creator, taskHash, dataHash,
    /// vramLimit, taskFee, price)`: a static tuple of 8 words.
    public static let removeCheapestTaskSelector: [UInt8] = ABI.selector("removeCheapestTask()")

    /// The `price` (the last word) of an ABI-encoded `TaskInQueue`.
    public static func decodeQueuedPrice(_ data: [UInt8]) throws -> BigUInt {
        guard data.count == 8 * 32 else {
            throw ContractDecodingError("expected a TaskInQueue (256 bytes), got \(data.count) bytes")
        }
        guard let price = try ABI.decode([.uint(256)], from: Array(data[(7 * 32)...])).first?.uint else {
            throw ContractDecodingError("TaskInQueue.price is not a uint256")
        }
        return price
    }

    public func includeCall(taskId: UInt64) -> [UInt8] {
        Self.includeSelector + ABI.uintWord(taskId)
    }

    /// An ABI `uint256` that fits in 64 bits.
    public static func decodeUInt64(_ data: [UInt8]) throws -> UInt64 {
        guard data.count == 32, let value = TaskContract.uint64(fromWord: data) else {
            throw ContractDecodingError("expected an ABI uint256 below 2^64, got \(data.count) bytes: \(data.hex)")
        }
        return value
    }

    /// An ABI `bool`: one word that is exactly 0 or 1.
    public static func decodeBool(_ data: [UInt8]) throws -> Bool {
        guard data.count == 32, data[0..<31].allSatisfy({ $0 == 0 }), data[31] <= 1 else {
            throw ContractDecodingError("expected an ABI bool (32 bytes, 0 or 1), got \(data.count) bytes: \(data.hex)")
        }
        return data[31] == 1
    }
}
