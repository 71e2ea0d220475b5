import BigInt
import Foundation
import Metrics
import HTTP
import StrictJSON

/// Blocking JSON-RPC client for an Ethereum node. Safe to share between threads.
/// Every method throws `EthereumClientError` only.
public final class EthereumClient: @unchecked Sendable {
    public let url: String
    private let http: HTTPClient
    private let timeout: Double?
    private let lock = NSLock()
    private var nextId = 1  // guarded by lock
    /// The widest block range one eth_getLogs may span: configured, or learned from the node's
    /// refusal. nil: no limit known.
    private var logsBlockRange: UInt64?  // guarded by lock

    /// `timeout` overrides the HTTP client's total timeout for these requests.
    public init(url: String, http: HTTPClient = HTTPClient(), timeout: Double? = nil, logsBlockRange: UInt64? = nil) {
        self.url = url
        self.http = http
        self.timeout = timeout
        self.logsBlockRange = logsBlockRange.map { max($0, 1) }
    }

    // MARK: - Raw calls

    /// One call; returns `result` (possibly `.null`), throws `.rpc` for an error response.
    public func call(_ method: String, _ params: [JSON]) throws -> JSON {
        let id = reserveIds(1)
        Self.countRequest(method)
        let response = try post(Self.requestJSON(id: id, method: method, params: params))
        guard response.objectValue != nil else { throw RPCDecode.fail("expected a JSON-RPC object", response) }
        switch try Self.outcome(response) {
        case .success(let result):
            guard response["id"]?.intValue == id else { throw RPCDecode.fail("response id does not match \(id)", response["id"]) }
            return result
        case .failure(let error):
            Self.countError(method, error)
            throw EthereumClientError.rpc(error)
        }
    }

    /// Several calls in one HTTP request. Results are in request order, whatever order the node answers in.
    /// Per-call errors are `.failure`; transport and malformed responses throw.
    public func batch(_ requests: [(method: String, params: [JSON])]) throws -> [Result<JSON, JSONRPCError>] {
        guard !requests.isEmpty else { return [] }
        let first = reserveIds(requests.count)
        for request in requests { Self.countRequest(request.method) }
        let body = JSON.array(requests.enumerated().map { i, r in
            Self.requestJSON(id: first + i, method: r.method, params: r.params)
        })
        let response = try post(body)
        guard let items = response.arrayValue else {
            // A node without batch support answers with a single error object.
            if case .failure(let error)? = try? Self.outcome(response) { throw EthereumClientError.rpc(error) }
            throw RPCDecode.fail("expected a JSON array for a batch", response)
        }
        var byId = [Int: Result<JSON, JSONRPCError>]()
        for item in items {
            guard let id = item["id"]?.intValue, id >= first, id < first + requests.count else {
                throw RPCDecode.fail("batch response with unknown id", item["id"])
            }
            guard byId[id] == nil else { throw RPCDecode.fail("duplicate batch response id", item["id"]) }
            byId[id] = try Self.outcome(item)
        }
        return try (0..<requests.count).map { i in
            guard let result = byId[first + i] else {
                throw EthereumClientError.malformedResponse("no response for batch item \(i) (\(requests[i].method))")
            }
            if case .failure(let error) = result { Self.countError(requests[i].method, error) }
            return result
        }
    }

    /// Prometheus: crynux_rpc_requests_total by method, crynux_rpc_errors_total by method and kind
    /// (revert, rpc, transport, malformed), crynux_rpc_http_requests_total (a batch is one).
    private static func countRequest(_ method: String) {
        Counter(label: "crynux_rpc_requests_total", dimensions: [("method", method)]).increment()
    }

    private static func countError(_ method: String, _ error: JSONRPCError) {
        Counter(label: "crynux_rpc_errors_total", dimensions: [("method", method), ("kind", error.isExecutionRevert ? "revert" : "rpc")])
            .increment()
    }

    private static func countFailure(_ kind: String) {
        Counter(label: "crynux_rpc_errors_total", dimensions: [("method", "*"), ("kind", kind)]).increment()
    }

    // MARK: - Typed calls

    public func chainId() throws -> UInt64 {
        try RPCDecode.uint64(call("eth_chainId", []), "chainId")
    }

    public func blockNumber() throws -> UInt64 {
        try RPCDecode.uint64(call("eth_blockNumber", []), "blockNumber")
    }

    public func getBalance(_ address: Address, block: BlockTag = .latest) throws -> BigUInt {
        try RPCDecode.quantity(call("eth_getBalance", [.string(address.bytes.hex), block.json]), "balance")
    }

    public func getTransactionCount(_ address: Address, block: BlockTag = .pending) throws -> UInt64 {
        try RPCDecode.uint64(call("eth_getTransactionCount", [.string(address.bytes.hex), block.json]), "nonce")
    }

    public func gasPrice() throws -> BigUInt {
        try RPCDecode.quantity(call("eth_gasPrice", []), "gasPrice")
    }

    public func maxPriorityFeePerGas() throws -> BigUInt {
        try RPCDecode.quantity(call("eth_maxPriorityFeePerGas", []), "maxPriorityFeePerGas")
    }

    public func feeHistory(blockCount: Int, newest: BlockTag, rewardPercentiles: [Double]) throws -> FeeHistory {
        let params: [JSON] = [.string(BigUInt(blockCount).quantityHex), newest.json,
                              .array(rewardPercentiles.map { .number(JSONNumber($0)) })]
        return try RPCDecode.feeHistory(call("eth_feeHistory", params))
    }

    public func estimateGas(_ call: CallRequest) throws -> UInt64 {
        try RPCDecode.uint64(self.call("eth_estimateGas", [call.json]), "gas estimate")
    }

    /// Returns the transaction hash the node reports.
    public func sendRawTransaction(_ raw: [UInt8]) throws -> [UInt8] {
        try RPCDecode.hash(call("eth_sendRawTransaction", [.string(raw.hex)]), "transaction hash")
    }

    /// nil while the transaction is not mined (or unknown to the node).
    public func getTransactionReceipt(_ hash: [UInt8]) throws -> TransactionReceipt? {
        try Self.decodeReceipt(call("eth_getTransactionReceipt", [.string(hash.hex)]))
    }

    /// Return data of an `eth_call`. A revert is `.rpc` with `revertReason` set when the node sent the data.
    public func call(_ call: CallRequest, block: BlockTag = .latest) throws -> [UInt8] {
        try Self.decodeCallResult(self.call("eth_call", Self.callParams(call, block: block)))
    }

    /// Logs matching `filter`. Nodes limit the block range of one query (Ethermint: 10,000 blocks by
    /// default); a range wider than the known limit is asked in chunks, and a node that names its
    /// limit in a refusal is asked again in chunks of that size.
    public func getLogs(_ filter: LogFilter) throws -> [Log] {
        let from: UInt64
        switch filter.fromBlock {
        case .number(let n): from = n
        case .earliest: from = 0
        case .latest, .pending: return try getLogsOnce(filter)
        }
        if let range = lock.withLock({ logsBlockRange }) {
            return try getLogsInChunks(filter, from: from, range: range)
        }
        do {
            return try getLogsOnce(filter)
        } catch EthereumClientError.rpc(let error) {
            guard let range = Self.logsBlockRangeLimit(in: error.message) else { throw EthereumClientError.rpc(error) }
            lock.withLock { logsBlockRange = range }
            return try getLogsInChunks(filter, from: from, range: range)
        }
    }

    private func getLogsInChunks(_ filter: LogFilter, from: UInt64, range: UInt64) throws -> [Log] {
        let to: UInt64
        switch filter.toBlock {
        case .number(let n): to = n
        case .earliest: to = 0
        case .latest, .pending: to = try blockNumber()
        }
        guard from <= to else { return [] }
        var logs: [Log] = []
        var start = from
        while true {
            // Ethermint refuses `to - from > limit`: a chunk spans `range` blocks, ends included.
            let (end, overflow) = start.addingReportingOverflow(range - 1)
            var chunk = filter
            chunk.fromBlock = .number(start)
            chunk.toBlock = .number(overflow ? to : min(end, to))
            logs += try getLogsOnce(chunk)
            if overflow || end >= to { return logs }
            start = end + 1
        }
    }

    /// The block-range limit a node names when it refuses an eth_getLogs, e.g. Ethermint's
    /// "maximum [from, to] blocks distance: 10000"; 1,000 when it only says the range is too wide.
    public static func logsBlockRangeLimit(in message: String) -> UInt64? {
        let text = message.lowercased()
        if let marker = text.range(of: "blocks distance: ") {
            let digits = text[marker.upperBound...].prefix { $0.isASCII && $0.isNumber }
            if let n = UInt64(digits), n > 0 { return n }
        }
        if text.contains("block range") && (text.contains("exceed") || text.contains("too") || text.contains("limit")) {
            return 1_000
        }
        return nil
    }

    private func getLogsOnce(_ filter: LogFilter) throws -> [Log] {
        let result = try call("eth_getLogs", [filter.json])
        guard let items = result.arrayValue else { throw RPCDecode.fail("eth_getLogs result", result) }
        return try items.map(RPCDecode.log)
    }

    /// The transactions of a mined block: hash, sender, nonce and value of each. nil for a block
    /// the node does not have.
    public func blockTransactions(_ block: UInt64) throws -> [MinedTransaction]? {
        let result = try call("eth_getBlockByNumber", [BlockTag.number(block).json, true])
        if result.isNull { return nil }
        guard let items = result["transactions"]?.arrayValue else { throw RPCDecode.fail("block.transactions", result) }
        return try items.map(RPCDecode.minedTransaction)
    }

    /// The first block after which `wallet` had sent more than `nonce` transactions, i.e. the block
    /// holding its transaction with that nonce; nil when the latest block does not have it yet.
    /// A binary search over eth_getTransactionCount: about log2(blocks) calls, for rare paths.
    public func firstBlock(whereNonceOf wallet: Address, exceeds nonce: UInt64) throws -> UInt64? {
        var high = try blockNumber()
        guard try getTransactionCount(wallet, block: .number(high)) > nonce else { return nil }
        var low: UInt64 = 0
        while low < high {
            let middle = low + (high - low) / 2
            if try getTransactionCount(wallet, block: .number(middle)) > nonce { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// The Unix time of a block; nil for a block the node does not have.
    public func blockTimestamp(_ block: UInt64) throws -> UInt64? {
        let result = try call("eth_getBlockByNumber", [BlockTag.number(block).json, false])
        return result.isNull ? nil : try RPCDecode.uint64(result["timestamp"], "block.timestamp")
    }

    /// A transaction the node knows (mined or pending); nil when it does not.
    public func transaction(_ hash: [UInt8]) throws -> MinedTransaction? {
        let result = try call("eth_getTransactionByHash", [.string(hash.hex)])
        return result.isNull ? nil : try RPCDecode.minedTransaction(result)
    }

    // MARK: - Helpers for batches

    public static func callParams(_ call: CallRequest, block: BlockTag = .latest) -> [JSON] {
        [call.json, block.json]
    }

    public static func decodeCallResult(_ json: JSON) throws -> [UInt8] {
        try RPCDecode.data(json, "eth_call result")
    }

    public static func decodeQuantity(_ json: JSON) throws -> BigUInt {
        try RPCDecode.quantity(json, "quantity")
    }

    public static func decodeUInt64(_ json: JSON) throws -> UInt64 {
        try RPCDecode.uint64(json, "quantity")
    }

    public static func decodeReceipt(_ json: JSON) throws -> TransactionReceipt? {
        try RPCDecode.receipt(json)
    }

    // MARK: - Plumbing

    private func reserveIds(_ count: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let first = nextId
        nextId += count
        if nextId > 1 << 50 { nextId = 1 }
        return first
    }

    private static func requestJSON(id: Int, method: String, params: [JSON]) -> JSON {
        ["jsonrpc": "2.0", "id": .int(id), "method": .string(method), "params": .array(params)]
    }

    /// `.success(result)` / `.failure(error)` for one response object.
    private static func outcome(_ response: JSON) throws -> Result<JSON, JSONRPCError> {
        if let error = response["error"], !error.isNull {
            guard error.objectValue != nil else { throw RPCDecode.fail("error is not an object", error) }
            return .failure(JSONRPCError(json: error))
        }
        guard let result = response["result"] else { throw RPCDecode.fail("neither result nor error", response) }
        return .success(result)
    }

    private func post(_ body: JSON) throws -> JSON {
        Counter(label: "crynux_rpc_http_requests_total").increment()
        let response: HTTPResponse
        do {
            response = try http.post(url, json: body.serialized(), timeout: timeout)
        } catch let error as HTTPError {
            Self.countFailure("transport")
            throw EthereumClientError.transport(error.description)
        }
        let snippet = String(decoding: response.body.prefix(300), as: UTF8.self)
        if response.status >= 500 || response.status == 429 || response.status == 408 {
            Self.countFailure("transport")
            throw EthereumClientError.transport("HTTP \(response.status): \(snippet)")
        }
        let json: JSON
        do {
            json = try JSON.parse(bytes: response.body)
        } catch {
            Self.countFailure("malformed")
            throw EthereumClientError.malformedResponse("HTTP \(response.status), not JSON: \(snippet)")
        }
        // Some nodes send JSON-RPC errors with 4xx statuses; those bodies are still meaningful.
        if !(200..<300).contains(response.status), json["error"] == nil, json.arrayValue == nil {
            throw EthereumClientError.malformedResponse("HTTP \(response.status): \(snippet)")
        }
        return json
    }
}
