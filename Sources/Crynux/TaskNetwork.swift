import BigInt
import Ethereum
import Foundation
import HTTP
import StrictJSON

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

public enum GasEstimate: Sendable, Equatable {
    case gas(UInt64)
    /// The node simulated the call and it reverts, for this reason.
    case reverts(String)
}

/// How full the network's task queue is. A full queue evicts its cheapest task, without refund.
public struct QueueState: Sendable, Equatable {
    public let size: UInt64
    public let limit: UInt64
    /// The block the size was read at: our tasks mined after it are not in it. A block number,
    /// not a clock: worker, database and node clocks may disagree, and a load-balanced node may
    /// answer from a block behind.
    public let readBlock: UInt64
    /// How many times each of our Stable Diffusion createTasks on their way counts against the room.
    public let sdWeight: Int64
    /// The lowest price (fee per result, wei) among queued tasks; nil when none waits. A new task
    /// priced below it starts after all of them and is the first evicted.
    public let cheapestPrice: BigUInt?

    public init(size: UInt64, limit: UInt64, readBlock: UInt64 = 0, cheapestPrice: BigUInt? = nil, sdWeight: Int64 = 1) {
        self.size = size
        self.limit = limit
        self.readBlock = readBlock
        self.sdWeight = sdWeight
        self.cheapestPrice = cheapestPrice
    }
}

/// The network generations the worker speaks, chosen per deployment.
public enum NetworkProfile: String, Sendable, CaseIterable {
    /// Era D: payable 5-argument createTask, a task queue, the Relay with `/v1/now`.
    case eraD = "era-d"
    /// The Hydrogen network (era B): the wallet approves the Task contract to pull CNX, 4-argument
    /// createTask, three nodes selected at once (no queue), the Relay without `/v1/now`.
    case hydrogen
    /// The live network: no transaction per task; signed requests to the Relay, fees from the
    /// wallet's Relay Account, and a VRF validation the worker sends for every task.
    case lithium
}

/// A wallet's standing on a network whose Task contract pulls its fee in tokens (Hydrogen).
public struct TokenStanding: Sendable, Equatable {
    /// The wallet's token balance (wei of CNX).
    public let balance: BigUInt
    /// What the Task contract may still pull from the wallet (`allowance(wallet, task)`).
    public let allowance: BigUInt

    public init(balance: BigUInt, allowance: BigUInt) {
        self.balance = balance
        self.allowance = allowance
    }
}

/// What the create stage needs to know before it signs, read in one round trip.
public struct CreateConditions: Sendable, Equatable {
    public let estimate: GasEstimate
    public let gasPrice: BigUInt
    /// maxPriorityFeePerGas, when asked for (EIP-1559).
    public let tip: BigUInt?
    /// The wallet's token balance and allowance, on a network that pulls the fee in tokens; nil
    /// where the fee is the createTask's value (era D).
    public let token: TokenStanding?
    /// The wallet's native balance (fee and gas in era D; gas on Hydrogen), read with the estimate.
    public let nativeBalance: BigUInt

    public init(estimate: GasEstimate, gasPrice: BigUInt, tip: BigUInt?, token: TokenStanding? = nil, nativeBalance: BigUInt) {
        self.estimate = estimate
        self.gasPrice = gasPrice
        self.tip = tip
        self.token = token
        self.nativeBalance = nativeBalance
    }
}

/// What a wallet holds and owes, for the wallet watch: one round trip.
public struct WalletFunds: Sendable, Equatable {
    /// Native balance (wei): the fee and gas in era D, gas on Hydrogen.
    public let native: BigUInt
    /// CNX token balance (wei) where the fee is pulled in tokens; nil in era D.
    public let token: BigUInt?
    public let gasPrice: BigUInt
    /// Transactions the node holds for the wallet that are not mined yet (pending nonce − mined nonce).
    public let unminedNonces: UInt64

    public init(native: BigUInt, token: BigUInt?, gasPrice: BigUInt, unminedNonces: UInt64) {
        self.native = native
        self.token = token
        self.gasPrice = gasPrice
        self.unminedNonces = unminedNonces
    }
}

/// A task some wallet created, as its TaskPending log tells.
public struct CreatedTask: Sendable, Equatable {
    public let taskId: UInt64
    public let taskHash: [UInt8]
    public let txHash: [UInt8]
    public let block: UInt64
    /// Unix time of the block.
    public let time: UInt64
    /// The fee paid with it (the createTask's value).
    public let fee: BigUInt

    public init(taskId: UInt64, taskHash: [UInt8], txHash: [UInt8], block: UInt64, time: UInt64, fee: BigUInt) {
        self.taskId = taskId
        self.taskHash = taskHash
        self.txHash = txHash
        self.block = block
        self.time = time
        self.fee = fee
    }
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
    var profile: NetworkProfile { get }
    var chainId: UInt64 { get }
    /// The SD argument schema this network's Relay enforces: arguments are checked against it
    /// before any money moves.
    var sdSchema: SDSchema { get }

    // Transactions
    /// The createTask call (era D: payable, carrying the fee; Hydrogen: the fee is pulled in CNX).
    func createTaskCall(_ request: TaskRequest) throws -> ContractCall
    func cancelTaskCall(taskId: UInt64) -> ContractCall
    /// Gas estimate and prices for a createTask, with the wallet's token standing where the fee is
    /// paid in tokens, in one round trip.
    func createConditions(for call: ContractCall, from: Address, withTip: Bool) throws -> CreateConditions
    /// The wallet's balances, the gas price and its unmined nonces, in one round trip.
    func funds(of wallet: Address) throws -> WalletFunds
    /// The chain id the node serves now (the health check compares it with `chainId`).
    func nodeChainId() throws -> UInt64
    /// `approve(task contract, amount)` on the fee token; nil where the fee is the createTask's value.
    func approveCall(amount: BigUInt) -> ContractCall?
    /// What a mined createTask of `wallet` paid in tokens (its Transfer to the Task contract); nil
    /// where the fee is the transaction's value.
    func tokenFeePaid(in receipt: TransactionReceipt, by wallet: Address) -> BigUInt?
    /// Whether a createTask that reverts for `reason` only lacks free nodes right now (a network
    /// without a queue refuses it): nothing is spent by waiting and trying again.
    func lacksFreeNodes(revertReason reason: String) -> Bool
    /// Whether the Task contract deletes a succeeded task once its result node reports the
    /// results uploaded to the Relay (era D: TaskResultUploaded). Then `getTask` tells when
    /// fetching can start, instead of asking the Relay until it has them.
    var deletesTaskWhenResultsUploaded: Bool { get }
    /// How full the task queue is, at most half a second old: a process's threads share one
    /// reading, so a backlog waiting for room costs no request per job.
    func queueState() throws -> QueueState
    /// The room a createTask of `request` is admitted against, as a queue: era D's task queue;
    /// on Hydrogen (no queue) the tasks of its kind the free nodes could start now, as "limit"
    /// with size 0, read at `readBlock` or later (our createTasks mined after it are counted as
    /// still on their way: over-counting only delays).
    func admissionState(for request: TaskRequest) throws -> QueueState
    func estimateGas(_ call: ContractCall, from: Address) throws -> GasEstimate
    func gasPrice() throws -> BigUInt
    func maxPriorityFeePerGas() throws -> BigUInt
    func pendingNonce(of wallet: Address) throws -> UInt64
    /// The nonce after the wallet's last mined transaction.
    func minedNonce(of wallet: Address) throws -> UInt64
    func send(raw: [UInt8]) throws -> SendVerdict
    func receipt(of hash: [UInt8]) throws -> TransactionReceipt?
    /// The hash of the mined transaction that used the wallet's `nonce`; nil while the node has
    /// not mined one (or does not show it yet).
    func transactionThatUsed(nonce: UInt64, of wallet: Address) throws -> [UInt8]?
    /// The id of the task a mined createTask created; nil when the receipt has none.
    func createdTaskId(in receipt: TransactionReceipt) -> UInt64?
    /// Tasks `creator` created in transactions with nonces from `nonce` on.
    func tasksCreated(by creator: Address, fromNonce nonce: UInt64) throws -> [CreatedTask]
    /// Why a mined transaction reverted, replayed on the state before its block.
    func revertReason(of call: ContractCall, from: Address, gas: UInt64, block: UInt64) -> String

    // Tasks
    /// Many tasks in one round trip; one result per id, in order.
    func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>]
    /// The outcome of a finished task from its logs since `fromBlock`; nil while none is logged.
    func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome?
    /// Whether a task that `getTask` does not show waits in the queue for free nodes.
    func isQueued(taskId: UInt64) throws -> Bool

    // Relay: requests are signed by the wallet that created the task.
    func uploadTaskArguments(taskId: UInt64, arguments: String, signer: Address) throws -> UploadOutcome
    func downloadResult(taskId: UInt64, index: Int, signer: Address) throws -> DownloadOutcome
}

extension TaskNetwork {
    public var deletesTaskWhenResultsUploaded: Bool { false }

    /// A zero-value transfer to the wallet itself: it uses a nonce and pays only gas.
    public func fillCall(for wallet: Address) -> ContractCall { ContractCall(to: wallet, data: []) }
}

/// Era D: the payable 5-argument createTask, a TaskQueue, and the Relay with `/v1/now`.
public final class EraDNetwork: RPCTaskNetwork, @unchecked Sendable {
    public var profile: NetworkProfile { .eraD }
    public let rpc: EthereumClient
    /// One Relay client per wallet: each signs with its own key.
    public let relays: [Address: RelayClient]
    public let task: TaskContract
    public let queue: TaskQueueContract
    public let chainId: UInt64
    public let sdSchema: SDSchema
    private let queueCache = NSLock()
    private var cachedQueue: (state: QueueState, at: Date)?
    private var cachedLimit: (value: UInt64, at: Date)?

    public init(rpc: EthereumClient, relays: [Address: RelayClient], task: TaskContract, queue: TaskQueueContract, chainId: UInt64,
                sdSchema: SDSchema = .eraDDefault) {
        self.sdSchema = sdSchema
        self.rpc = rpc
        self.relays = relays
        self.task = task
        self.queue = queue
        self.chainId = chainId
    }

    /// Connects to the node and learns its chain id; the Relay signs each wallet's requests with its key.
    public static func connect(rpcURL: String, relayURL: String, taskContract: Address, taskQueueContract: Address,
                               keys: [PrivateKey], caFile: String? = nil, sdSchema: SDSchema = .eraDDefault,
                               logsBlockRange: UInt64? = nil) throws -> EraDNetwork {
        let (rpc, relays) = connectClients(rpcURL: rpcURL, relayURL: relayURL, keys: keys, caFile: caFile, logsBlockRange: logsBlockRange)
        return EraDNetwork(rpc: rpc, relays: relays, task: TaskContract(address: taskContract),
                           queue: TaskQueueContract(address: taskQueueContract), chainId: try rpc.chainId(), sdSchema: sdSchema)
    }

    public func createConditions(for call: ContractCall, from: Address, withTip: Bool) throws -> CreateConditions {
        try createConditions(for: call, from: from, withTip: withTip, first: []).conditions
    }

    public func funds(of wallet: Address) throws -> WalletFunds { try funds(of: wallet, token: nil) }

    public func admissionState(for request: TaskRequest) throws -> QueueState { try queueState() }

    public func queueState() throws -> QueueState {
        if let (state, at) = queueCache.withLock({ cachedQueue }), -at.timeIntervalSinceNow < 0.5 { return state }
        // The limit changes only by an owner transaction: asked once a minute.
        let knownLimit = queueCache.withLock { cachedLimit.flatMap { -$0.at.timeIntervalSinceNow < 60 ? $0.value : nil } }
        let block = BlockTag.number(try rpc.blockNumber())
        var requests: [(method: String, params: [JSON])] = [
            ("eth_call", EthereumClient.callParams(CallRequest(to: queue.address, data: TaskQueueContract.sizeSelector), block: block)),
        ]
        if knownLimit == nil {
            requests.append(("eth_call", EthereumClient.callParams(CallRequest(to: queue.address, data: TaskQueueContract.sizeLimitSelector))))
        }
        let answers = try rpc.batch(requests)
        func word(_ index: Int) throws -> UInt64 {
            try TaskQueueContract.decodeUInt64(try EthereumClient.decodeCallResult(try answers[index].rpcValue()))
        }
        let now = Date()
        let size = try word(0)
        guard case .number(let readBlock) = block else { throw ContractDecodingError("no block") }
        let state = QueueState(size: size, limit: try knownLimit ?? word(1), readBlock: readBlock,
                               cheapestPrice: size > 0 ? try cheapestQueuedPrice() : nil)
        queueCache.withLock {
            cachedQueue = (state, now)
            if knownLimit == nil { cachedLimit = (state.limit, now) }
        }
        return state
    }

    /// The TaskQueue has no getter for it, but `removeCheapestTask()` returns the cheapest task and
    /// only checks that the Task contract calls it: simulated from that address, it reads the task
    /// without removing anything. nil when the queue is empty by now, or when the node refuses the
    /// call or answers oddly: the price only feeds a warning, and must never hold up a create.
    private func cheapestQueuedPrice() throws -> BigUInt? {
        do {
            let data = try rpc.call(CallRequest(from: task.address, to: queue.address, data: TaskQueueContract.removeCheapestTaskSelector))
            return try TaskQueueContract.decodeQueuedPrice(data)
        } catch EthereumClientError.rpc {
            return nil
        } catch is ContractDecodingError {
            return nil
        }
    }

    public func createTaskCall(_ request: TaskRequest) throws -> ContractCall {
        let data = try task.createTaskCall(taskType: request.taskType, taskHash: request.taskHash, vramLimit: request.vramLimit,
                                           cap: request.cap)
        return ContractCall(to: task.address, data: data, value: request.fee)
    }

    public func cancelTaskCall(taskId: UInt64) -> ContractCall {
        ContractCall(to: task.address, data: task.cancelTaskCall(taskId: taskId))
    }

    // The fee is the createTask's value; a full queue waits in the queue instead of reverting.
    public func approveCall(amount: BigUInt) -> ContractCall? { nil }
    public func tokenFeePaid(in receipt: TransactionReceipt, by wallet: Address) -> BigUInt? { nil }
    public func lacksFreeNodes(revertReason reason: String) -> Bool { false }
    public var deletesTaskWhenResultsUploaded: Bool { true }

    public func tasksCreated(by creator: Address, fromNonce nonce: UInt64) throws -> [CreatedTask] {
        try tasksCreated(by: creator, fromNonce: nonce, filter: { from in
            LogFilter(fromBlock: .number(from), toBlock: .latest, address: task.address,
                      topics: [[TaskContract.taskPendingTopic], [TaskContract.word(creator)]])
        }, decode: { log in
            guard log.data.count >= 128, let id = TaskContract.uint64(fromWord: Array(log.data[0..<32])) else { return nil }
            return (id, Array(log.data[64..<96]))
        }, fee: { log in try rpc.transaction(log.transactionHash)?.value ?? 0 })
    }

    public func createdTaskId(in receipt: TransactionReceipt) -> UInt64? { task.createdTaskId(in: receipt) }

    public func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>] {
        try readTasks(taskIds, at: task.address) { try TaskContract.decodeTaskInfo($0) }
    }

    public func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome? {
        try rpc.getLogs(task.outcomeFilter(taskId: taskId, fromBlock: fromBlock)).lazy.compactMap(TaskContract.decodeOutcome).first
    }

    public func isQueued(taskId: UInt64) throws -> Bool {
        try TaskQueueContract.decodeBool(try rpc.call(CallRequest(to: queue.address, data: queue.includeCall(taskId: taskId))))
    }
}
