import BigInt
import StrictJSON

/// An error object returned by the node (as opposed to a failure to reach it).
public struct JSONRPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int
    public let message: String
    /// Revert data when the node supplied hex in `error.data` (geth: `"data": "0x08c379a0…"`).
    public let data: [UInt8]?
    /// `error.data` as sent, whatever its shape.
    public let rawData: JSON?

    public init(code: Int, message: String, data: [UInt8]? = nil, rawData: JSON? = nil) {
        self.code = code
        self.message = message
        self.data = data
        self.rawData = rawData
    }

    init(json: JSON) {
        code = json["code"]?.intValue ?? 0
        message = json["message"]?.stringValue ?? "(no message)"
        rawData = json["data"].flatMap { $0.isNull ? nil : $0 }
        data = rawData.flatMap(Self.hexData)
    }

    /// Finds revert bytes in the shapes nodes use: `"0x…"` (geth), `"Reverted 0x…"` (Ganache/Nethermind),
    /// or an object with a nested `data` (Hardhat and RPC proxies).
    private static func hexData(_ json: JSON) -> [UInt8]? {
        switch json {
        case .string(let s):
            if let bytes = [UInt8](hex: s), s.hasPrefix("0x") { return bytes }
            if let range = s.range(of: "0x") {
                let candidate = s[range.lowerBound...].prefix { $0.isHexDigit || $0 == "x" }
                if let bytes = [UInt8](hex: String(candidate)), !bytes.isEmpty { return bytes }
            }
            return nil
        case .object(let o):
            return o["data"].flatMap(hexData) ?? o["originalError"].flatMap(hexData)
        default:
            return nil
        }
    }

    /// The decoded revert (Error(string), Panic(uint256) or raw bytes) from the node's revert data. Nodes that
    /// send no data but a message "execution reverted: <reason>" give `.error(<reason>)`.
    public var revertReason: RevertReason? {
        if let data, let reason = RevertReason.decode(data) { return reason }
        // Without data (Ethermint's estimates, older geth): the reason is in the message, possibly
        // behind a gRPC prefix.
        let marker = "execution reverted: "
        if data == nil, let range = message.range(of: marker), range.upperBound < message.endIndex {
            return .error(String(message[range.upperBound...]))
        }
        return nil
    }

    public var description: String {
        var text = "JSON-RPC error \(code): \(message)"
        if let reason = revertReason, !message.contains(reason.description) { text += " (revert: \(reason))" }
        return text
    }
}

public enum EthereumClientError: Error, Sendable, CustomStringConvertible {
    /// The node could not be reached or answered with an HTTP failure (timeout, refused connection, 5xx).
    /// Retrying later may succeed.
    case transport(String)
    /// The node answered with a JSON-RPC error.
    case rpc(JSONRPCError)
    /// The node answered with something that is not the expected JSON-RPC shape.
    case malformedResponse(String)

    public var isRetryable: Bool {
        if case .transport = self { return true }
        return false
    }

    public var rpcError: JSONRPCError? {
        if case .rpc(let e) = self { return e }
        return nil
    }

    public var description: String {
        switch self {
        case .transport(let message): return "Ethereum node unreachable: \(message)"
        case .rpc(let error): return error.description
        case .malformedResponse(let message): return "malformed JSON-RPC response: \(message)"
        }
    }
}

/// Arguments of `eth_call` and `eth_estimateGas`.
public struct CallRequest: Sendable, Equatable {
    public var from: Address?
    public var to: Address?
    public var data: [UInt8]
    public var value: BigUInt?
    public var gas: UInt64?
    public var gasPrice: BigUInt?
    public var maxFeePerGas: BigUInt?
    public var maxPriorityFeePerGas: BigUInt?

    public init(from: Address? = nil, to: Address? = nil, data: [UInt8] = [], value: BigUInt? = nil,
                gas: UInt64? = nil, gasPrice: BigUInt? = nil, maxFeePerGas: BigUInt? = nil,
                maxPriorityFeePerGas: BigUInt? = nil) {
        self.from = from
        self.to = to
        self.data = data
        self.value = value
        self.gas = gas
        self.gasPrice = gasPrice
        self.maxFeePerGas = maxFeePerGas
        self.maxPriorityFeePerGas = maxPriorityFeePerGas
    }

    public var json: JSON {
        var o: [String: JSON] = ["data": .string(data.hex)]
        if let from { o["from"] = .string(from.bytes.hex) }
        if let to { o["to"] = .string(to.bytes.hex) }
        if let value { o["value"] = .string(value.quantityHex) }
        if let gas { o["gas"] = .string(BigUInt(gas).quantityHex) }
        if let gasPrice { o["gasPrice"] = .string(gasPrice.quantityHex) }
        if let maxFeePerGas { o["maxFeePerGas"] = .string(maxFeePerGas.quantityHex) }
        if let maxPriorityFeePerGas { o["maxPriorityFeePerGas"] = .string(maxPriorityFeePerGas.quantityHex) }
        return .object(JSONObject(o))
    }
}

public enum BlockTag: Sendable, Equatable {
    case latest, pending, earliest
    case number(UInt64)

    public var json: JSON {
        switch self {
        case .latest: return "latest"
        case .pending: return "pending"
        case .earliest: return "earliest"
        case .number(let n): return .string(BigUInt(n).quantityHex)
        }
    }
}

public struct Log: Sendable, Equatable {
    public var address: Address
    public var topics: [[UInt8]]
    public var data: [UInt8]
    public var blockNumber: UInt64
    public var transactionHash: [UInt8]
    public var logIndex: UInt64
    /// True when a reorganisation dropped the block holding this log.
    public var removed: Bool

    public init(address: Address, topics: [[UInt8]], data: [UInt8], blockNumber: UInt64 = 0,
                transactionHash: [UInt8] = [], logIndex: UInt64 = 0, removed: Bool = false) {
        self.address = address
        self.topics = topics
        self.data = data
        self.blockNumber = blockNumber
        self.transactionHash = transactionHash
        self.logIndex = logIndex
        self.removed = removed
    }

    /// Decodes this log as `event`, or returns nil when topic 0 is a different event.
    public func decode(_ event: ABIEvent) throws -> [ABIValue]? {
        guard topics.first == event.topic else { return nil }
        return try event.decode(topics: topics, data: data)
    }
}

public struct TransactionReceipt: Sendable, Equatable {
    public var transactionHash: [UInt8]
    /// true for status 1 (success), false for 0 (reverted).
    public var status: Bool
    public var blockNumber: UInt64
    public var gasUsed: UInt64
    public var effectiveGasPrice: BigUInt?
    public var logs: [Log]
    public var contractAddress: Address?
    public var from: Address?
    public var to: Address?

    public init(transactionHash: [UInt8], status: Bool, blockNumber: UInt64, gasUsed: UInt64,
                effectiveGasPrice: BigUInt? = nil, logs: [Log] = [], contractAddress: Address? = nil,
                from: Address? = nil, to: Address? = nil) {
        self.transactionHash = transactionHash
        self.status = status
        self.blockNumber = blockNumber
        self.gasUsed = gasUsed
        self.effectiveGasPrice = effectiveGasPrice
        self.logs = logs
        self.contractAddress = contractAddress
        self.from = from
        self.to = to
    }
}

/// `eth_getLogs` filter. `topics[i]`: nil matches anything at position i, otherwise any of the listed values.
public struct LogFilter: Sendable, Equatable {
    public var fromBlock: BlockTag
    public var toBlock: BlockTag
    public var address: Address?
    public var topics: [[[UInt8]]?]

    public init(fromBlock: BlockTag, toBlock: BlockTag = .latest, address: Address? = nil, topics: [[[UInt8]]?] = []) {
        self.fromBlock = fromBlock
        self.toBlock = toBlock
        self.address = address
        self.topics = topics
    }

    public var json: JSON {
        var o: [String: JSON] = ["fromBlock": fromBlock.json, "toBlock": toBlock.json]
        if let address { o["address"] = .string(address.bytes.hex) }
        if !topics.isEmpty {
            o["topics"] = .array(topics.map { position in
                guard let options = position else { return .null }
                return options.count == 1 ? .string(options[0].hex) : .array(options.map { .string($0.hex) })
            })
        }
        return .object(JSONObject(o))
    }
}

/// A transaction as `eth_getBlockByNumber` and `eth_getTransactionByHash` show it.
public struct MinedTransaction: Sendable, Equatable {
    public var hash: [UInt8]
    public var from: Address
    public var nonce: UInt64
    public var value: BigUInt
    /// nil while pending.
    public var blockNumber: UInt64?

    public init(hash: [UInt8], from: Address, nonce: UInt64, value: BigUInt, blockNumber: UInt64?) {
        self.hash = hash
        self.from = from
        self.nonce = nonce
        self.value = value
        self.blockNumber = blockNumber
    }
}

public struct FeeHistory: Sendable, Equatable {
    public var oldestBlock: UInt64
    /// One more entry than blocks requested: the last is the next block's base fee.
    public var baseFeePerGas: [BigUInt]
    public var reward: [[BigUInt]]
    public var gasUsedRatio: [Double]

    public init(oldestBlock: UInt64, baseFeePerGas: [BigUInt], reward: [[BigUInt]], gasUsedRatio: [Double] = []) {
        self.oldestBlock = oldestBlock
        self.baseFeePerGas = baseFeePerGas
        self.reward = reward
        self.gasUsedRatio = gasUsedRatio
    }
}

// MARK: - Decoding JSON-RPC results

enum RPCDecode {
    static func fail(_ what: String, _ json: JSON?) -> EthereumClientError {
        .malformedResponse("\(what): \(json.map { String($0.description.prefix(200)) } ?? "missing")")
    }

    static func quantity(_ json: JSON?, _ what: String) throws -> BigUInt {
        guard let s = json?.stringValue, let v = BigUInt(quantityHex: s) else { throw fail("\(what) is not a hex quantity", json) }
        return v
    }

    static func uint64(_ json: JSON?, _ what: String) throws -> UInt64 {
        let v = try quantity(json, what)
        guard v.bitWidth <= 64 else { throw fail("\(what) exceeds 64 bits", json) }
        return UInt64(v)
    }

    static func data(_ json: JSON?, _ what: String) throws -> [UInt8] {
        guard let s = json?.stringValue, s.hasPrefix("0x"), let b = [UInt8](hex: s) else {
            throw fail("\(what) is not hex data", json)
        }
        return b
    }

    static func hash(_ json: JSON?, _ what: String) throws -> [UInt8] {
        let b = try data(json, what)
        guard b.count == 32 else { throw fail("\(what) is not 32 bytes", json) }
        return b
    }

    static func address(_ json: JSON?, _ what: String) throws -> Address {
        let b = try data(json, what)
        guard b.count == 20 else { throw fail("\(what) is not an address", json) }
        return Address(bytes: b)
    }

    static func optionalAddress(_ json: JSON?, _ what: String) throws -> Address? {
        guard let json, !json.isNull else { return nil }
        return try address(json, what)
    }

    static func log(_ json: JSON) throws -> Log {
        guard let topics = json["topics"]?.arrayValue else { throw fail("log.topics", json["topics"]) }
        return Log(
            address: try address(json["address"], "log.address"),
            topics: try topics.map { try hash($0, "log topic") },
            data: try data(json["data"], "log.data"),
            blockNumber: try uint64(json["blockNumber"], "log.blockNumber"),
            transactionHash: try hash(json["transactionHash"], "log.transactionHash"),
            logIndex: try uint64(json["logIndex"], "log.logIndex"),
            removed: json["removed"]?.boolValue ?? false)
    }

    static func receipt(_ json: JSON) throws -> TransactionReceipt? {
        if json.isNull { return nil }
        guard json.objectValue != nil else { throw fail("receipt", json) }
        guard let logs = json["logs"]?.arrayValue else { throw fail("receipt.logs", json["logs"]) }
        let status = try quantity(json["status"], "receipt.status")
        guard status <= 1 else { throw fail("receipt.status", json["status"]) }
        let price = json["effectiveGasPrice"]
        return TransactionReceipt(
            transactionHash: try hash(json["transactionHash"], "receipt.transactionHash"),
            status: status == 1,
            blockNumber: try uint64(json["blockNumber"], "receipt.blockNumber"),
            gasUsed: try uint64(json["gasUsed"], "receipt.gasUsed"),
            effectiveGasPrice: price == nil || price!.isNull ? nil : try quantity(price, "receipt.effectiveGasPrice"),
            logs: try logs.map(log),
            contractAddress: try optionalAddress(json["contractAddress"], "receipt.contractAddress"),
            from: try optionalAddress(json["from"], "receipt.from"),
            to: try optionalAddress(json["to"], "receipt.to"))
    }

    static func minedTransaction(_ json: JSON) throws -> MinedTransaction {
        let block = json["blockNumber"]
        return MinedTransaction(hash: try hash(json["hash"], "tx.hash"), from: try address(json["from"], "tx.from"),
                                nonce: try uint64(json["nonce"], "tx.nonce"), value: try quantity(json["value"], "tx.value"),
                                blockNumber: block == nil || block!.isNull ? nil : try uint64(block, "tx.blockNumber"))
    }

    static func feeHistory(_ json: JSON) throws -> FeeHistory {
        guard let baseFees = json["baseFeePerGas"]?.arrayValue else { throw fail("feeHistory.baseFeePerGas", json) }
        let rewards = json["reward"]?.arrayValue ?? []
        return FeeHistory(
            oldestBlock: try uint64(json["oldestBlock"], "feeHistory.oldestBlock"),
            baseFeePerGas: try baseFees.map { try quantity($0, "baseFeePerGas") },
            reward: try rewards.map { block in
                guard let items = block.arrayValue else { throw fail("feeHistory.reward", block) }
                return try items.map { try quantity($0, "reward") }
            },
            gasUsedRatio: (json["gasUsedRatio"]?.arrayValue ?? []).compactMap(\.doubleValue))
    }
}
