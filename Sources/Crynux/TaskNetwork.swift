import BigInt
import Ethereum
import Foundation
import HTTP

/// A contract call a transaction will carry.
public struct ContractCall: Sendable, Equatable {
    public let to: Address
    public let data: [UInt8]
    public let value: BigUInt

    public init(to: Address, data: [UInt8], value: BigUInt = 0) {
        self.to = to
        self.data = data
        self.value = value
    }
}

/// What a new task is: the facts the create stage took from the arguments and the job.
public struct TaskRequest: Sendable, Equatable {
    public let taskType: UInt64
    public let taskHash: [UInt8]
    public let vramLimit: UInt64
    public let cap: UInt64
    public let fee: BigUInt

    public init(taskType: UInt64, taskHash: [UInt8], vramLimit: UInt64, cap: UInt64, fee: BigUInt) {
        self.taskType = taskType
        self.taskHash = taskHash
        self.vramLimit = vramLimit
        self.cap = cap
        self.fee = fee
    }
}

/// The transactions that create a task, in order. Era D: one payable createTask.
public struct CreatePlan: Sendable, Equatable {
    public let createTask: ContractCall

    public init(createTask: ContractCall) {
        self.createTask = createTask
    }
}

public enum GasEstimate: Sendable, Equatable {
    case gas(UInt64)
    /// The node simulated the call and it reverts, for this reason.
    case reverts(String)
}

/// A task as `getTask` shows it, in the terms the poll stage decides on.
public struct TaskState: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        /// `getTask` has it and it has not finished.
        case running
        case succeeded(resultNode: Address)
        /// Aborted, reason not in the struct (the TaskAborted log has it).
        case aborted
        /// No such task in the struct: queued, deleted after it finished, or never created.
        case absent
    }

    public let phase: Phase
    /// Unix seconds after which the creator may cancel; 0 when unknown.
    public let deadline: UInt64

    public init(phase: Phase, deadline: UInt64 = 0) {
        self.phase = phase
        self.deadline = deadline
    }
}

/// The Crynux network as the stage machine sees it: one implementation per network generation.
/// Calls that cannot reach the network throw; node and Relay verdicts are returned as values.
public protocol TaskNetwork: Sendable {
    var chainId: UInt64 { get }

    // Transactions
    func planCreateTask(_ request: TaskRequest) throws -> CreatePlan
    func cancelTaskCall(taskId: UInt64) -> ContractCall
    func estimateGas(_ call: ContractCall, from: Address) throws -> GasEstimate
    func gasPrice() throws -> BigUInt
    func maxPriorityFeePerGas() throws -> BigUInt
    func pendingNonce(of wallet: Address) throws -> UInt64
    func send(raw: [UInt8]) throws -> SendVerdict
    func receipt(of hash: [UInt8]) throws -> TransactionReceipt?
    /// The id of the task a mined createTask created; nil when the receipt has none.
    func createdTaskId(in receipt: TransactionReceipt) -> UInt64?
    /// Why a mined transaction reverted, replayed on the state before its block.
    func revertReason(of call: ContractCall, from: Address, gas: UInt64, block: UInt64) -> String

    // Tasks
    /// Many tasks in one round trip; one result per id, in order.
    func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>]
    /// The outcome of a finished task from its logs since `fromBlock`; nil while none is logged.
    func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome?
    /// Whether a task that `getTask` does not show waits in the queue for free nodes.
    func isQueued(taskId: UInt64) throws -> Bool

    // Relay
    func uploadTaskArguments(taskId: UInt64, arguments: String) throws -> UploadOutcome
    func downloadResult(taskId: UInt64, index: Int) throws -> DownloadOutcome
}

/// Era D: the payable 5-argument createTask, a TaskQueue, and the Relay with `/v1/now`.
public struct EraDNetwork: TaskNetwork {
    public let rpc: EthereumClient
    public let relay: RelayClient
    public let task: TaskContract
    public let queue: TaskQueueContract
    public let chainId: UInt64

    public init(rpc: EthereumClient, relay: RelayClient, task: TaskContract, queue: TaskQueueContract, chainId: UInt64) {
        self.rpc = rpc
        self.relay = relay
        self.task = task
        self.queue = queue
        self.chainId = chainId
    }

    /// Connects to the node and learns its chain id; the Relay signs requests with `key`.
    public static func connect(rpcURL: String, relayURL: String, taskContract: Address, taskQueueContract: Address,
                               key: PrivateKey) throws -> EraDNetwork {
        let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 20))
        let rpc = EthereumClient(url: rpcURL, http: http)
        return EraDNetwork(rpc: rpc, relay: RelayClient(baseURL: relayURL, key: key, http: http),
                           task: TaskContract(address: taskContract), queue: TaskQueueContract(address: taskQueueContract),
                           chainId: try rpc.chainId())
    }

    public func planCreateTask(_ request: TaskRequest) throws -> CreatePlan {
        let data = try task.createTaskCall(taskType: request.taskType, taskHash: request.taskHash, vramLimit: request.vramLimit,
                                           cap: request.cap)
        return CreatePlan(createTask: ContractCall(to: task.address, data: data, value: request.fee))
    }

    public func cancelTaskCall(taskId: UInt64) -> ContractCall {
        ContractCall(to: task.address, data: task.cancelTaskCall(taskId: taskId))
    }

    public func estimateGas(_ call: ContractCall, from: Address) throws -> GasEstimate {
        do {
            return .gas(try rpc.estimateGas(CallRequest(from: from, to: call.to, data: call.data, value: call.value.isZero ? nil : call.value)))
        } catch EthereumClientError.rpc(let error) where error.isExecutionRevert {
            return .reverts(error.revertReason?.description ?? error.message)
        }
    }

    public func gasPrice() throws -> BigUInt { try rpc.gasPrice() }
    public func maxPriorityFeePerGas() throws -> BigUInt { try rpc.maxPriorityFeePerGas() }
    public func pendingNonce(of wallet: Address) throws -> UInt64 { try rpc.getTransactionCount(wallet, block: .pending) }
    public func send(raw: [UInt8]) throws -> SendVerdict { try rpc.send(raw: raw) }
    public func receipt(of hash: [UInt8]) throws -> TransactionReceipt? { try rpc.getTransactionReceipt(hash) }
    public func createdTaskId(in receipt: TransactionReceipt) -> UInt64? { task.createdTaskId(in: receipt) }

    public func revertReason(of call: ContractCall, from: Address, gas: UInt64, block: UInt64) -> String {
        do {
            _ = try rpc.call(CallRequest(from: from, to: call.to, data: call.data, value: call.value, gas: gas),
                             block: .number(block > 0 ? block - 1 : 0))
            return "unknown reason (the replay did not revert; out of gas at limit \(gas)?)"
        } catch EthereumClientError.rpc(let error) {
            return error.revertReason?.description ?? error.message
        } catch {
            return "unknown reason (replay failed: \(error))"
        }
    }

    public func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>] {
        let requests = taskIds.map { id in
            (method: "eth_call", params: EthereumClient.callParams(CallRequest(to: task.address, data: task.getTaskCall(taskId: id)),
                                                                   block: .latest))
        }
        return try rpc.batch(requests).map { answer in
            Result {
                let info = try TaskContract.decodeTaskInfo(try EthereumClient.decodeCallResult(try answer.get()))
                return Self.state(of: info)
            }
        }
    }

    static func state(of info: TaskInfo) -> TaskState {
        let deadline = info.timeout.bitWidth <= 64 ? UInt64(info.timeout) : UInt64.max
        guard info.exists else { return TaskState(phase: .absent) }
        if info.succeeded { return TaskState(phase: .succeeded(resultNode: info.resultNode), deadline: deadline) }
        if info.aborted { return TaskState(phase: .aborted, deadline: deadline) }
        return TaskState(phase: .running, deadline: deadline)
    }

    public func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome? {
        try rpc.getLogs(task.outcomeFilter(taskId: taskId, fromBlock: fromBlock)).lazy.compactMap(TaskContract.decodeOutcome).first
    }

    public func isQueued(taskId: UInt64) throws -> Bool {
        try TaskQueueContract.decodeBool(try rpc.call(CallRequest(to: queue.address, data: queue.includeCall(taskId: taskId))))
    }

    public func uploadTaskArguments(taskId: UInt64, arguments: String) throws -> UploadOutcome {
        try relay.uploadTaskArguments(taskId: taskId, arguments: arguments)
    }

    public func downloadResult(taskId: UInt64, index: Int) throws -> DownloadOutcome {
        try relay.downloadResult(taskId: taskId, index: index)
    }
}
