import BigInt
import Ethereum
import Foundation
import StrictJSON

/// The Hydrogen network (era B): the wallet approves the Task contract to pull the fee in CNX, a
/// 4-argument nonpayable createTask picks three nodes at once or reverts (no queue), and the Relay
/// has no `/v1/now`.
public final class HydrogenNetwork: RPCTaskNetwork, @unchecked Sendable {
    public var profile: NetworkProfile { .hydrogen }
    public let rpc: EthereumClient
    public let relays: [Address: RelayClient]
    public let task: HydrogenTaskContract
    public let token: CNXToken
    /// Where Node.sol's views are read; nil: createTasks are not admitted against the free nodes
    /// (a createTask that finds too few reverts, and costs its gas).
    public let node: HydrogenNodeContract?
    public let chainId: UInt64
    public let sdSchema: SDSchema
    /// How long one reading of the free nodes serves the process (a test asks for 0: every call reads).
    public var admissionReadingAge = 0.5
    private let admissionCache = NSLock()
    private var cachedAdmission: [String: (state: QueueState, at: Date)] = [:]

    public init(rpc: EthereumClient, relays: [Address: RelayClient], task: HydrogenTaskContract, token: CNXToken,
                node: HydrogenNodeContract? = nil, chainId: UInt64, sdSchema: SDSchema = .hydrogenDefault) {
        self.rpc = rpc
        self.relays = relays
        self.task = task
        self.token = token
        self.node = node
        self.chainId = chainId
        self.sdSchema = sdSchema
    }

    /// Connects to the node and learns its chain id; the Relay signs each wallet's requests with its
    /// key and the local clock.
    public static func connect(rpcURL: String, relayURL: String, taskContract: Address, tokenContract: Address,
                               nodeContract: Address? = nil, keys: [PrivateKey], caFile: String? = nil, sdSchema: SDSchema = .hydrogenDefault,
                               logsBlockRange: UInt64? = nil) throws -> HydrogenNetwork {
        let (rpc, relays) = connectClients(rpcURL: rpcURL, relayURL: relayURL, keys: keys, caFile: caFile,
                                           logsBlockRange: logsBlockRange, relayLocalClock: true)
        return HydrogenNetwork(rpc: rpc, relays: relays, task: HydrogenTaskContract(address: taskContract),
                               token: CNXToken(address: tokenContract), node: nodeContract.map(HydrogenNodeContract.init),
                               chainId: try rpc.chainId(), sdSchema: sdSchema)
    }

    // MARK: transactions

    /// The fee is the contract's private `taskFeePerNode` × 3, pulled in CNX: `request.fee` and
    /// `request.cap` are not part of the call.
    public func createTaskCall(_ request: TaskRequest) throws -> ContractCall {
        let data = try task.createTaskCall(taskType: request.taskType, taskHash: request.taskHash, vramLimit: request.vramLimit)
        return ContractCall(to: task.address, data: data)
    }

    /// The refund of a cancel comes back in CNX.
    public func cancelTaskCall(taskId: UInt64) -> ContractCall {
        ContractCall(to: task.address, data: task.cancelTaskCall(taskId: taskId))
    }

    public func approveCall(amount: BigUInt) -> ContractCall? {
        ContractCall(to: token.address, data: token.approveCall(spender: task.address, amount: amount))
    }

    /// The standing is read before the estimate: an approval mined between the two then shows as a
    /// short allowance (read again) rather than as a createTask that reverts for want of one.
    public func createConditions(for call: ContractCall, from: Address, withTip: Bool) throws -> CreateConditions {
        let (base, answers) = try createConditions(for: call, from: from, withTip: withTip, first: [
            ("eth_call", EthereumClient.callParams(CallRequest(to: token.address, data: token.balanceOfCall(owner: from)))),
            ("eth_call", EthereumClient.callParams(CallRequest(to: token.address,
                                                               data: token.allowanceCall(owner: from, spender: task.address)))),
        ])
        func amount(_ i: Int) throws -> BigUInt {
            try CNXToken.decodeAmount(try EthereumClient.decodeCallResult(try answers[i].rpcValue()))
        }
        let standing = TokenStanding(balance: try amount(0), allowance: try amount(1))
        return CreateConditions(estimate: base.estimate, gasPrice: base.gasPrice, tip: base.tip, token: standing,
                                nativeBalance: base.nativeBalance)
    }

    public func funds(of wallet: Address) throws -> WalletFunds { try funds(of: wallet, token: token) }

    public func tokenFeePaid(in receipt: TransactionReceipt, by wallet: Address) -> BigUInt? {
        token.transferred(in: receipt, from: wallet, to: task.address)
    }

    public func lacksFreeNodes(revertReason reason: String) -> Bool { HydrogenTaskContract.lacksFreeNodes(reason) }

    // No queue: a createTask without three free nodes reverts instead.
    public func queueState() throws -> QueueState { QueueState(size: 0, limit: .max, cheapestPrice: nil) }

    /// The tasks of the request's kind the free nodes could start, as the limit of an empty queue:
    /// the block first, then the view at `latest` (never older than that block). Without it, every
    /// worker estimating against the same free nodes signs createTasks that revert by their block.
    public func admissionState(for request: TaskRequest) throws -> QueueState {
        guard let node else { return try queueState() }
        // As era D's queue reading: a process's threads share one reading per kind of request for
        // half a second, so a backlog waiting for nodes costs no request per job.
        let kind = "\(request.taskType)/\(request.vramLimit)"
        if let (state, at) = admissionCache.withLock({ cachedAdmission[kind] }), -at.timeIntervalSinceNow < admissionReadingAge { return state }
        let answers = try rpc.batch([
            ("eth_blockNumber", []),
            ("eth_call", EthereumClient.callParams(CallRequest(to: node.address,
                                                               data: try node.startableTasksCall(taskType: request.taskType, vramLimit: request.vramLimit)))),
        ])
        let block = try EthereumClient.decodeUInt64(try answers[0].rpcValue())
        let room: UInt64
        switch answers[1] {
        case .success(let json):
            room = try HydrogenNodeContract.decodeStartableTasks(try EthereumClient.decodeCallResult(json),
                                                                  taskType: request.taskType, vramLimit: request.vramLimit)
        case .failure(let error) where error.isExecutionRevert:
            room = 0  // "No kind of gpu … meets condition"
        case .failure(let error):
            throw EthereumClientError.rpc(error)
        }
        // A GPT task needs three free nodes of one GPU model; an SD task on its way may take its
        // three from three models, leaving each one short: counted three times against GPT's room.
        let state = QueueState(size: 0, limit: room, readBlock: block, sdWeight: request.taskType == TaskKind.gpt.taskType ? 3 : 1)
        admissionCache.withLock { cachedAdmission[kind] = (state, Date()) }
        return state
    }
    public func isQueued(taskId: UInt64) throws -> Bool { false }

    public func createdTaskId(in receipt: TransactionReceipt) -> UInt64? { task.createdTaskId(in: receipt) }

    public func tasksCreated(by creator: Address, fromNonce nonce: UInt64) throws -> [CreatedTask] {
        try tasksCreated(by: creator, fromNonce: nonce, filter: { task.createdFilter(creator: creator, fromBlock: $0) },
                         decode: HydrogenTaskContract.decodeCreated, fee: { log in
            try rpc.getTransactionReceipt(log.transactionHash).flatMap { tokenFeePaid(in: $0, by: creator) } ?? 0
        })
    }

    // MARK: tasks

    /// A finished task can stay readable (Task.sol's tryDeleteTask waits until none of its nodes
    /// has a task): success is a result node on a task not aborted, as in era D.
    public func readTasks(_ taskIds: [UInt64]) throws -> [Result<TaskState, any Error>] {
        try readTasks(taskIds, at: task.address, decode: HydrogenTaskContract.decodeTaskInfo)
    }

    public func finishedOutcome(taskId: UInt64, fromBlock: UInt64) throws -> TaskOutcome? {
        try rpc.getLogs(task.outcomeFilter(fromBlock: fromBlock)).lazy
            .compactMap { HydrogenTaskContract.decodeOutcome($0, taskId: taskId) }.first
    }
}
