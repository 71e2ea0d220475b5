import BigInt
import Ethereum
import Foundation

/// Calldata and log decoding for the Hydrogen (era B) Task contract (crynux-contracts@bf05e39): a
/// nonpayable 4-argument createTask whose fee the contract pulls in CNX, three nodes picked at once
/// or a revert (no queue), and events that never index the task id.
public struct HydrogenTaskContract: Sendable {
    public static let createTaskSignature = "createTask(uint256,bytes32,bytes32,uint256)"
    public static let createTaskSelector: [UInt8] = [0x6a, 0xb7, 0x02, 0xed]
    // getTask(uint256) and cancelTask(uint256) are era D's: TaskContract.getTaskSelector, .cancelTaskSelector.

    /// `TaskCreated(uint256 taskId, uint256 taskType, address indexed creator, address indexed selectedNode,
    /// bytes32 taskHash, bytes32 dataHash, uint256 round)`: one per selected node.
    public static let taskCreatedTopic = TaskContract.word(hex: "bb7c6b96a3c44e4d2f31e6c30253c53b53f88b24017a672bc1781402f646a8ad")
    /// `TaskSuccess(uint256 taskId, bytes result, address indexed resultNode)`: era D's signature (so its
    /// topic), but the result node is topic1 and the id the first data word.
    public static let taskSuccessTopic = TaskContract.taskSuccessTopic
    /// `TaskAborted(uint256 taskId, string reason)`: era D's topic, the id not indexed.
    public static let taskAbortedTopic = TaskContract.taskAbortedTopic

    /// Node.sol's reverts when it cannot pick three nodes: the network is busy, nothing was spent.
    public static let noFreeNodesReasons: Set<String> = [
        "No available nodes", "No kind of gpu vram meets condition", "No available nodes of such vram",
        "No kind of gpu id meets condition", "No available nodes of such gpu id",
    ]

    public let address: Address

    public init(address: Address) {
        self.address = address
    }

    // MARK: calldata

    /// `createTask(taskType, taskHash, dataHash, vramLimit)`: no value (the contract pulls the fee by
    /// `transferFrom`). Hashes must be 32 bytes (else it throws).
    public func createTaskCall(taskType: UInt64, taskHash: [UInt8], dataHash: [UInt8] = TaskContract.zero32,
                               vramLimit: UInt64) throws -> [UInt8] {
        try ABI.encodeCall(Self.createTaskSignature, [
            .uint(BigUInt(taskType)), .fixedBytes(taskHash), .fixedBytes(dataHash), .uint(BigUInt(vramLimit)),
        ])
    }

    public func cancelTaskCall(taskId: UInt64) -> [UInt8] {
        TaskContract.cancelTaskSelector + ABI.uintWord(taskId)
    }

    /// `getTask`'s 16-field struct.
    public static func decodeTaskInfo(_ returnData: [UInt8]) throws -> TaskInfo {
        try TaskContract.decodeTaskInfo(returnData, layout: .eraB)
    }

    /// Whether a createTask revert only says that too few nodes are free. The reason is matched as
    /// the contract words it, after any "execution reverted: " a node puts in front.
    public static func lacksFreeNodes(_ reason: String) -> Bool {
        let marker = "execution reverted: "
        let text = reason.range(of: marker, options: .backwards).map { String(reason[$0.upperBound...]) } ?? reason
        return noFreeNodesReasons.contains(text.trimmingCharacters(in: .whitespaces))
    }

    // MARK: logs

    /// The task id of a createTask receipt: the first data word of this contract's first TaskCreated
    /// log. Found by topic, never by position: token logs come first, and an unlimited allowance
    /// emits no Approval.
    public func createdTaskId(in receipt: TransactionReceipt) -> UInt64? {
        receipt.logs.lazy.filter { $0.address == address }.compactMap { Self.decodeCreated($0)?.taskId }.first
    }

    /// TaskCreated logs of `creator`'s tasks (topic1) from `fromBlock` on: three per task.
    public func createdFilter(creator: Address, fromBlock: UInt64) -> LogFilter {
        LogFilter(fromBlock: .number(fromBlock), toBlock: .latest, address: address,
                  topics: [[Self.taskCreatedTopic], [TaskContract.word(creator)]])
    }

    /// Task id and task hash of a TaskCreated log (data: taskId, taskType, taskHash, dataHash, round);
    /// nil for any other log.
    public static func decodeCreated(_ log: Log) -> (taskId: UInt64, taskHash: [UInt8])? {
        guard log.topics.first == taskCreatedTopic, log.data.count >= 160,
              let id = TaskContract.uint64(fromWord: Array(log.data[0..<32])) else { return nil }
        return (id, Array(log.data[64..<96]))
    }

    /// Every TaskSuccess and TaskAborted log from `fromBlock` on: the id is not indexed, so the
    /// logs of one task cannot be asked for (`decodeOutcome(_:taskId:)` picks them).
    public func outcomeFilter(fromBlock: UInt64) -> LogFilter {
        LogFilter(fromBlock: .number(fromBlock), toBlock: .latest, address: address,
                  topics: [[Self.taskSuccessTopic, Self.taskAbortedTopic]])
    }

    /// The outcome a TaskSuccess or TaskAborted log of task `taskId` reports; nil for any other log.
    public static func decodeOutcome(_ log: Log, taskId: UInt64) -> TaskOutcome? {
        guard log.data.count >= 32, TaskContract.uint64(fromWord: Array(log.data[0..<32])) == taskId else { return nil }
        switch log.topics.first {
        case taskSuccessTopic?:
            guard log.topics.count >= 2, log.topics[1].count == 32 else { return nil }
            return .succeeded(resultNode: Address(bytes: Array(log.topics[1][12..<32])))
        case taskAbortedTopic?:
            if let values = try? ABI.decode([.uint(256), .string], from: log.data), let reason = values[1].string {
                return .aborted(reason: reason)
            }
            return .aborted(reason: "undecodable abort reason " + log.data.hex)
        default:
            return nil
        }
    }
}

/// Node.sol's views (crynux-contracts@bf05e39) that tell how many tasks the free nodes could start
/// now: createTask picks its three nodes the way `startableTasksCall` asks, and reverts when it
/// cannot.
public struct HydrogenNodeContract: Sendable {
    public static let availableNodesSelector = ABI.selector("availableNodes()")
    public static let filterGPUVramSignature = "filterGPUVram(uint256,uint256)"
    public static let filterGPUIDSignature = "filterGPUID(uint256,uint256)"

    public let address: Address

    public init(address: Address) {
        self.address = address
    }

    /// The view that counts the free nodes a createTask of this type and VRAM limit may pick from,
    /// as Task.getSelectedNodes does: a GPT task takes three nodes of one GPU model
    /// (`filterGPUID(vram, 3)`), a Stable Diffusion task with a VRAM limit three nodes with at
    /// least that much (`filterGPUVram(vram, 1)`), one without three of any.
    public func startableTasksCall(taskType: UInt64, vramLimit: UInt64) throws -> [UInt8] {
        if taskType == TaskKind.gpt.taskType {
            return try ABI.encodeCall(Self.filterGPUIDSignature, [.uint(BigUInt(vramLimit)), .uint(3)])
        }
        if vramLimit > 0 {
            return try ABI.encodeCall(Self.filterGPUVramSignature, [.uint(BigUInt(vramLimit)), .uint(1)])
        }
        return Self.availableNodesSelector
    }

    /// How many such tasks the free nodes could start at once, from the answer to
    /// `startableTasksCall` (0 when the filter reverts: no kind of GPU meets the condition).
    public static func decodeStartableTasks(_ data: [UInt8], taskType: UInt64, vramLimit: UInt64) throws -> UInt64 {
        func count(_ value: ABIValue) throws -> UInt64 {
            guard let v = value.uint, let n = UInt64(exactly: v) else { throw ContractDecodingError("a node count out of range: \(value)") }
            return n
        }
        if taskType != TaskKind.gpt.taskType, vramLimit == 0 {
            return try count(try ABI.decode([.uint(256)], from: data)[0]) / 3
        }
        let first: ABIType = taskType == TaskKind.gpt.taskType ? .fixedBytes(32) : .uint(256)
        let values = try ABI.decode([.array(first), .array(.uint(256))], from: data)
        guard let counts = values[1].array else { throw ContractDecodingError("no counts in \(data.hex)") }
        let perKind = try counts.map(count)
        // Three nodes of one model each; the VRAM path picks its three across all kinds.
        return taskType == TaskKind.gpt.taskType
            ? perKind.reduce(0) { $0 &+ $1 / 3 } : perKind.reduce(0, &+) / 3
    }
}

/// The CNX token (an OpenZeppelin 4.9 ERC20) as a task creator uses it.
public struct CNXToken: Sendable {
    public static let approveSelector: [UInt8] = [0x09, 0x5e, 0xa7, 0xb3]
    public static let balanceOfSelector: [UInt8] = [0x70, 0xa0, 0x82, 0x31]
    public static let allowanceSelector: [UInt8] = [0xdd, 0x62, 0xed, 0x3e]
    /// `Transfer(address indexed from, address indexed to, uint256 value)`
    public static let transferTopic = TaskContract.word(hex: "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")

    public let address: Address

    public init(address: Address) {
        self.address = address
    }

    /// `approve(spender, amount)`: what `spender` may pull from the sender from now on (replaces,
    /// does not add to, the allowance).
    public func approveCall(spender: Address, amount: BigUInt) -> [UInt8] {
        Self.approveSelector + TaskContract.word(spender) + ABI.uintWord(amount)
    }

    public func balanceOfCall(owner: Address) -> [UInt8] {
        Self.balanceOfSelector + TaskContract.word(owner)
    }

    public func allowanceCall(owner: Address, spender: Address) -> [UInt8] {
        Self.allowanceSelector + TaskContract.word(owner) + TaskContract.word(spender)
    }

    /// The value of this token's first Transfer from `from` to `to` in the receipt; nil when none.
    public func transferred(in receipt: TransactionReceipt, from: Address, to: Address) -> BigUInt? {
        let topics = [Self.transferTopic, TaskContract.word(from), TaskContract.word(to)]
        guard let log = receipt.logs.first(where: { $0.address == address && $0.topics == topics && $0.data.count == 32 }) else {
            return nil
        }
        return BigUInt(Data(log.data))
    }

    /// A `uint256` return value (balanceOf, allowance).
    public static func decodeAmount(_ data: [UInt8]) throws -> BigUInt {
        guard data.count == 32 else { throw ContractDecodingError("expected an ABI uint256, got \(data.count) bytes: \(data.hex)") }
        return BigUInt(Data(data))
    }
}
