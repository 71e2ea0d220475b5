import BigInt
import Ethereum
import Foundation
import HTTP
import StrictJSON

/// A network generation reached through one JSON-RPC node and one Relay: what every generation
/// does the same way (transactions, nonces, replays, the Relay's routes) is implemented here once.
public protocol RPCTaskNetwork: TaskNetwork {
    var rpc: EthereumClient { get }
    /// One Relay client per wallet: each signs with its own key.
    var relays: [Address: RelayClient] { get }
}

/// The node client and one Relay client per key, sharing one HTTP client.
func connectClients(rpcURL: String, relayURL: String, keys: [PrivateKey], caFile: String?, logsBlockRange: UInt64?,
                    relayLocalClock: Bool = false) -> (rpc: EthereumClient, relays: [Address: RelayClient]) {
    let http = HTTPClient(options: HTTPOptions(connectTimeout: 5, totalTimeout: 20, caFile: caFile))
    var relays: [Address: RelayClient] = [:]
    for key in keys { relays[key.address] = RelayClient(baseURL: relayURL, key: key, http: http, localClock: relayLocalClock) }
    return (EthereumClient(url: rpcURL, http: http, logsBlockRange: logsBlockRange), relays)
}

extension RPCTaskNetwork {
    public func estimateGas(_ call: ContractCall, from: Address) throws -> GasEstimate {
        do {
            return .gas(try rpc.estimateGas(call.request(from: from)))
        } catch EthereumClientError.rpc(let error) where error.isExecutionRevert {
            return .reverts(error.revertText)
        }
    }

    public func gasPrice() throws -> BigUInt { try rpc.gasPrice() }
    public func nodeChainId() throws -> UInt64 { try rpc.chainId() }
    public func maxPriorityFeePerGas() throws -> BigUInt { try rpc.maxPriorityFeePerGas() }
    public func pendingNonce(of wallet: Address) throws -> UInt64 { try rpc.getTransactionCount(wallet, block: .pending) }
    public func minedNonce(of wallet: Address) throws -> UInt64 { try rpc.getTransactionCount(wallet, block: .latest) }
    public func send(raw: [UInt8]) throws -> SendVerdict { try rpc.send(raw: raw) }
    public func receipt(of hash: [UInt8]) throws -> TransactionReceipt? { try rpc.getTransactionReceipt(hash) }

    public func transactionThatUsed(nonce: UInt64, of wallet: Address) throws -> [UInt8]? {
        guard let block = try rpc.firstBlock(whereNonceOf: wallet, exceeds: nonce),
              let transactions = try rpc.blockTransactions(block) else { return nil }
        return transactions.first { $0.from == wallet && $0.nonce == nonce }?.hash
    }

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

    public func uploadTaskArguments(taskId: UInt64, arguments: String, signer: Address) throws -> UploadOutcome {
        try relay(signer).uploadTaskArguments(taskId: taskId, arguments: arguments)
    }

    public func downloadResult(taskId: UInt64, index: Int, signer: Address) throws -> DownloadOutcome {
        try relay(signer).downloadResult(taskId: taskId, index: index)
    }

    func relay(_ signer: Address) throws -> RelayClient {
        guard let relay = relays[signer] else { throw RelayError("no key for wallet \(signer.checksummed)") }
        return relay
    }

    /// `first` requests, then the wallet's balance, the createTask's estimate, the gas price and the
    /// tip when asked for, in one batch; the answers to `first` come back in order. A node answers
    /// the items one after the other, each at the latest block of its moment: what `first` reads is
    /// never newer than the estimate.
    func createConditions(for call: ContractCall, from: Address, withTip: Bool, first: [(method: String, params: [JSON])])
        throws -> (conditions: CreateConditions, first: [Result<JSON, JSONRPCError>]) {
        // The pending balance: what the wallet's transactions already in the pool leave.
        var requests = first + [("eth_getBalance", [.string(from.bytes.hex), BlockTag.pending.json]),
                                ("eth_estimateGas", [call.request(from: from).json]), ("eth_gasPrice", [])]
        if withTip { requests.append(("eth_maxPriorityFeePerGas", [])) }
        let answers = try rpc.batch(requests)
        let n = first.count
        let estimate: GasEstimate
        switch answers[n + 1] {
        case .success(let json): estimate = .gas(try EthereumClient.decodeUInt64(json))
        case .failure(let error) where error.isExecutionRevert: estimate = .reverts(error.revertText)
        // A wallet short of the value: geth refuses the estimate itself ("insufficient funds for gas
        // * price + value"), an Ethermint EVM stops at the transfer ("insufficient balance for
        // transfer"). Not a node failure to retry soon: the create stage waits for funds.
        case .failure(let error) where error.message.contains("insufficient funds") || error.message.contains("insufficient balance"):
            estimate = .reverts(error.message)
        case .failure(let error): throw EthereumClientError.rpc(error)
        }
        let conditions = CreateConditions(estimate: estimate, gasPrice: try EthereumClient.decodeQuantity(try answers[n + 2].rpcValue()),
                                          tip: withTip ? try EthereumClient.decodeQuantity(try answers[n + 3].rpcValue()) : nil,
                                          nativeBalance: try EthereumClient.decodeQuantity(try answers[n].rpcValue()))
        return (conditions, Array(answers[..<n]))
    }

    /// The wallet's native balance, the gas price, its pending and mined nonces and, given the fee
    /// token, its token balance, in one batch.
    func funds(of wallet: Address, token: CNXToken?) throws -> WalletFunds {
        var requests: [(method: String, params: [JSON])] = [
            ("eth_getBalance", [.string(wallet.bytes.hex), BlockTag.pending.json]),
            ("eth_gasPrice", []),
            ("eth_getTransactionCount", [.string(wallet.bytes.hex), BlockTag.pending.json]),
            ("eth_getTransactionCount", [.string(wallet.bytes.hex), BlockTag.latest.json]),
        ]
        if let token {
            requests.append(("eth_call", EthereumClient.callParams(CallRequest(to: token.address, data: token.balanceOfCall(owner: wallet)))))
        }
        let answers = try rpc.batch(requests)
        let pending = try EthereumClient.decodeUInt64(try answers[2].rpcValue())
        let mined = try EthereumClient.decodeUInt64(try answers[3].rpcValue())
        return WalletFunds(native: try EthereumClient.decodeQuantity(try answers[0].rpcValue()),
                           token: token == nil ? nil : try CNXToken.decodeAmount(try EthereumClient.decodeCallResult(try answers[4].rpcValue())),
                           gasPrice: try EthereumClient.decodeQuantity(try answers[1].rpcValue()),
                           unminedNonces: pending > mined ? pending - mined : 0)
    }

    /// `getTask` of each id at `latest`, in one batch; one result per id, in order.
    func readTasks(_ taskIds: [UInt64], at contract: Address, decode: ([UInt8]) throws -> TaskInfo) throws
        -> [Result<TaskState, any Error>] {
        // getTask(uint256) has the same selector in both eras; only the struct differs.
        let requests = taskIds.map { id in
            let call = CallRequest(to: contract, data: TaskContract.getTaskSelector + ABI.uintWord(id))
            return (method: "eth_call", params: EthereumClient.callParams(call, block: .latest))
        }
        return try rpc.batch(requests).map { answer in
            Result { TaskState(try decode(try EthereumClient.decodeCallResult(try answer.get()))) }
        }
    }

    /// The tasks whose creation logs `filter` finds from the block of `creator`'s transaction with
    /// `nonce` on. `decode` reads a creation log (nil: not one); a task logged more than once
    /// (Hydrogen: once per selected node) is listed once.
    func tasksCreated(by creator: Address, fromNonce nonce: UInt64, filter: (_ fromBlock: UInt64) -> LogFilter,
                      decode: (Log) -> (taskId: UInt64, taskHash: [UInt8])?, fee: (Log) throws -> BigUInt) throws -> [CreatedTask] {
        guard let from = try rpc.firstBlock(whereNonceOf: creator, exceeds: nonce) else { return [] }
        var times: [UInt64: UInt64] = [:]
        var seen: Set<UInt64> = []
        return try rpc.getLogs(filter(from)).compactMap { log in
            guard let (id, taskHash) = decode(log), seen.insert(id).inserted else { return nil }
            if times[log.blockNumber] == nil { times[log.blockNumber] = try rpc.blockTimestamp(log.blockNumber) ?? 0 }
            return CreatedTask(taskId: id, taskHash: taskHash, txHash: log.transactionHash, block: log.blockNumber,
                               time: times[log.blockNumber]!, fee: try fee(log))
        }
    }
}

extension ContractCall {
    /// The call as eth_estimateGas and eth_call take it (no value field for a zero value).
    func request(from: Address) -> CallRequest {
        CallRequest(from: from, to: to, data: data, value: value.isZero ? nil : value)
    }
}

extension JSONRPCError {
    /// The reason of a revert, or the node's message when it gave none.
    var revertText: String { revertReason?.description ?? message }
}

extension TaskState {
    /// The phase of a task from its `getTask` struct (both eras decide alike).
    init(_ info: TaskInfo) {
        let deadline = info.timeout.bitWidth <= 64 ? UInt64(info.timeout) : UInt64.max
        if !info.exists {
            self.init(phase: .absent)
        } else if info.succeeded {
            self.init(phase: .succeeded(resultNode: info.resultNode), deadline: deadline)
        } else if info.aborted {
            self.init(phase: .aborted, deadline: deadline)
        } else {
            self.init(phase: .running, deadline: deadline)
        }
    }
}

extension Result where Success == JSON, Failure == JSONRPCError {
    /// A batch item's result, or its error as the client throws one for a single call.
    func rpcValue() throws -> JSON {
        switch self {
        case .success(let json): return json
        case .failure(let error): throw EthereumClientError.rpc(error)
        }
    }
}
