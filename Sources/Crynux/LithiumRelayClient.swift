import BigInt
import Ethereum
import Foundation
import HTTP
import Metrics
import Synchronization
import StrictJSON

/// Client of the live network's Relay (Lithium, crynux-relay@24ffc26) for one wallet.
///
/// Every request is signed as validate.ValidateSignature checks it: the handler's input struct is
/// `json.Marshal`ed, decoded into `interface{}` and marshalled again (so the keys are sorted, numbers
/// pass through float64, `task_fee` is a JSON string: models.BigInt.MarshalJSON), the decimal
/// timestamp is appended, and the 65-byte r‖s‖v (v 0/1) signature over keccak256 of that goes with
/// the request. The Relay refuses timestamps more than 60 s off its clock, so requests are stamped
/// with the Relay's time learned from `GET /v1/now` (or the local clock with `localClock`).
///
/// The Relay's verdicts (its 400 validation errors, and the validation service's own 500 words) are
/// returned; transport failures, timeouts, other statuses and malformed answers throw `RelayError`.
public final class LithiumRelayClient: LithiumRelay, Sendable {
    public let baseURL: String
    public var wallet: Address { key.address }
    private let key: PrivateKey
    private let http: HTTPClient
    private let timeout: Double?
    /// Keeps the Relay clock offset (`GET /v1/now`, re-measured when stale or after "Invalid signature").
    private let clock: RelayClient
    /// Spaces the starts of requests; one pacer shared by every wallet's client makes the rate the process's.
    private let pacer: RequestPacer

    public init(baseURL: String, key: PrivateKey, http: HTTPClient, timeout: Double? = nil, localClock: Bool = false,
                pacer: RequestPacer = RequestPacer(requestsPerSecond: 0), clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.key = key
        self.http = http
        self.timeout = timeout
        self.pacer = pacer
        self.clock = RelayClient(baseURL: base, key: key, http: http, timeout: timeout, localClock: localClock, clock: clock)
    }

    /// A create gives up well within the Relay's 60 s signature window: once it has given up, a
    /// request still on its way can no longer be accepted a minute later (the bridge waits 30 s too).
    public static let createTimeout = 30.0

    /// Offset (Relay clock − local clock) in seconds applied to request timestamps.
    public var clockOffset: Int64 { clock.clockOffset }

    /// The Relay's clock (`GET /v1/now`), which also sets the offset: the start-up and health checks.
    public func serverTime() throws(RelayError) -> Int64 { try clock.serverTime() }

    // MARK: create

    /// The exact bytes the Relay verifies a create against (without the timestamp): TaskInput of
    /// api/v1/inference_tasks/create_task.go re-marshalled, keys sorted, `timeout` omitted (0: not a
    /// fine-tune task).
    public static func createPayload(_ r: LithiumTaskRequest) -> [UInt8] {
        GoJSON.object([
            ("min_vram", .float64Integer(r.minVram)),
            ("nonce", .string(r.nonce.hex)),
            ("required_gpu", .string(r.requiredGPU)),
            ("required_gpu_vram", .float64Integer(r.requiredGPUVram)),
            ("task_args", .string(r.taskArgs)),
            ("task_fee", .string(String(r.taskFee))),
            ("task_id_commitment", .string(r.commitment.hex)),
            // A nil slice (no form value) is `null`; the Relay's `required` refuses it either way.
            ("task_model_ids", r.modelIds.isEmpty ? .null : .array(r.modelIds.map { .string($0) })),
            ("task_size", .float64Integer(r.taskSize)),
            ("task_type", .uint(UInt64(r.taskType.rawValue))),
            ("task_version", .string(r.taskVersion)),
        ], go122: true)
    }

    public func create(_ request: LithiumTaskRequest) throws(RelayError) -> LithiumCreateOutcome {
        try Self.counted("create") { () throws(RelayError) in try createTask(request) } kind: {
            switch $0 {
            case .created: nil
            case .alreadyUploaded: "already_uploaded"
            case .insufficientBalance: "insufficient_balance"
            case .rejected: "rejected"
            }
        }
    }

    private func createTask(_ r: LithiumTaskRequest) throws(RelayError) -> LithiumCreateOutcome {
        let c = r.commitment.hex
        let path = "/v1/inference_tasks/\(c)"
        let response = try sendSigned(Self.createPayload(r)) { ts, signature in
            var fields: [(String, String)] = [
                ("min_vram", String(r.minVram)), ("nonce", r.nonce.hex), ("required_gpu", r.requiredGPU),
                ("required_gpu_vram", String(r.requiredGPUVram)), ("task_args", r.taskArgs), ("task_size", String(r.taskSize)),
                ("task_type", String(r.taskType.rawValue)), ("task_version", r.taskVersion), ("task_fee", String(r.taskFee)),
            ]
            fields += r.modelIds.map { ("task_model_ids", $0) }
            fields += [("timestamp", String(ts)), ("signature", signature)]
            return try self.http.request("POST", self.baseURL + path,
                                         headers: ["Content-Type": "application/x-www-form-urlencoded"],
                                         body: Self.formEncode(fields), timeout: min(self.timeout ?? Self.createTimeout, Self.createTimeout))
        }
        switch response.status {
        case 200:
            let task = try Self.parseTaskAnswer(response, route: "POST " + path)
            guard task.commitment == r.commitment else {
                throw RelayError("POST \(path) answered with the task \(task.commitment.hex)")
            }
            guard task.creator == wallet else {
                throw RelayError("POST \(path) created the task for \(task.creator), not \(wallet)")
            }
            return .created(task)
        case 400:
            let error = RelayValidationError(body: response.body)
            switch error.message {
            case "Task already uploaded": return .alreadyUploaded
            case "Insufficient relay account balance": return .insufficientBalance
            default: return .rejected(error.description)
            }
        default:
            throw RelayError("POST \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    // MARK: lookups

    public func task(_ commitment: [UInt8]) throws(RelayError) -> LithiumLookup {
        try Self.counted("task") { () throws(RelayError) in try getTask(commitment) } kind: {
            switch $0 {
            case .found: nil
            case .notFound: "not_found"
            case .rejected: "rejected"
            }
        }
    }

    private func getTask(_ commitment: [UInt8]) throws(RelayError) -> LithiumLookup {
        let path = "/v1/inference_tasks/\(commitment.hex)"
        let response = try signedGet(path, payload: GoJSON.object([("task_id_commitment", .string(commitment.hex))]))
        switch response.status {
        case 200:
            let task = try Self.parseTaskAnswer(response, route: "GET " + path)
            guard task.commitment == commitment else { throw RelayError("GET \(path) answered with the task \(task.commitment.hex)") }
            return .found(task)
        case 400:
            let error = RelayValidationError(body: response.body)
            return error.message == "Task not found" ? .notFound : .rejected(error.description)
        default:
            throw RelayError("GET \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    public func selectedNode(_ commitment: [UInt8]) throws(RelayError) -> LithiumSelectedNodeLookup {
        try Self.counted("selected_node") { () throws(RelayError) in try getSelectedNode(commitment) } kind: {
            switch $0 {
            case .found, .notStarted: nil
            case .notFound: "not_found"
            case .rejected: "rejected"
            }
        }
    }

    private func getSelectedNode(_ commitment: [UInt8]) throws(RelayError) -> LithiumSelectedNodeLookup {
        let path = "/v1/inference_tasks/\(commitment.hex)/selected_node"
        let response = try signedGet(path, payload: GoJSON.object([("task_id_commitment", .string(commitment.hex))]))
        switch response.status {
        case 200:
            // GetSelectedNodeInfoResponse.Data has no json tag: Go names the key "Data".
            guard case .object(let root)? = try? JSON.parse(bytes: response.body),
                  case .object(let data)? = root["Data"] ?? root["data"],
                  let addressText = data["address"]?.stringValue, let address = Address(hex: addressText),
                  let gpuName = data["gpu_name"]?.stringValue, let vram = Self.uint64(data["gpu_vram"]) else {
                throw RelayError("GET \(path) answered an unexpected body: \(RelayClient.snippet(response.body))")
            }
            return .found(LithiumSelectedNode(address: address, gpuName: gpuName, gpuVram: vram))
        case 400:
            let error = RelayValidationError(body: response.body)
            switch error.message {
            case "Task not started": return .notStarted
            case "Task not found": return .notFound
            default: return .rejected(error.description)
            }
        default:
            throw RelayError("GET \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    // MARK: validate

    /// The 500 answers of the validation service (service/validate_task.go, hexutil, go-ecvrf, decred's
    /// ParsePubKey, gorm's missing record) that are the Relay's verdict on this request, not a fault.
    static let validationVerdicts = [
        "illegal task state", "task id incorrect", "invalid sampling seed", "invalid public key", "malformed public key",
        "invalid vrf proof", "invalid proof", "not task creator", "task is selected for validation",
        "task is not selected for validation", "task group validation expired", "task group size is not 3",
        "record not found", "empty hex string", "hex string without 0x prefix", "hex string of odd length",
        "invalid hex string", "public key is not on curve",
    ]

    public func validate(commitments: [[UInt8]], taskId: [UInt8], proof: [UInt8], publicKey: [UInt8]) throws(RelayError) -> LithiumValidateOutcome {
        try Self.counted("validate") { () throws(RelayError) in
            try validateTask(commitments: commitments, taskId: taskId, proof: proof, publicKey: publicKey)
        } kind: {
            switch $0 {
            case .validated: nil
            case .refused: "refused"
            }
        }
    }

    private func validateTask(commitments: [[UInt8]], taskId: [UInt8], proof: [UInt8], publicKey: [UInt8]) throws(RelayError) -> LithiumValidateOutcome {
        let list: GoJSON.Value = .array(commitments.map { .string($0.hex) })
        let input: [(String, GoJSON.Value)] = [
            ("public_key", .string(publicKey.hex)), ("task_id", .string(taskId.hex)),
            ("task_id_commitments", list), ("vrf_proof", .string(proof.hex)),
        ]
        let path = "/v1/inference_tasks/validate"
        let response = try sendSigned(GoJSON.object(input, go122: true)) { ts, signature in
            try self.http.post(self.baseURL + path, json: GoJSON.object(input + [("timestamp", .int(ts)), ("signature", .string(signature))]),
                               timeout: self.timeout)
        }
        switch response.status {
        case 200:
            return .validated
        case 400:
            return .refused(RelayValidationError(body: response.body).description)
        case 500:
            if case .object(let root)? = try? JSON.parse(bytes: response.body), let message = root["message"]?.stringValue,
               Self.validationVerdicts.contains(where: { message.hasPrefix($0) }) {
                return .refused(message)
            }
            fallthrough
        default:
            throw RelayError("POST \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    // MARK: cancel

    public func cancel(_ commitment: [UInt8]) throws(RelayError) -> LithiumCancelOutcome {
        try Self.counted("cancel") { () throws(RelayError) in try abortTask(commitment) } kind: {
            switch $0 {
            case .cancelled: nil
            case .tooLate: "too_late"
            case .notFound: "not_found"
            case .rejected: "rejected"
            }
        }
    }

    private func abortTask(_ commitment: [UInt8]) throws(RelayError) -> LithiumCancelOutcome {
        let reason = UInt64(LithiumAbortReason.creatorCancelled.rawValue)
        let path = "/v1/inference_tasks/\(commitment.hex)/abort_reason"
        let payload = GoJSON.object([("abort_reason", .uint(reason)), ("task_id_commitment", .string(commitment.hex))])
        let response = try sendSigned(payload) { ts, signature in
            let body = GoJSON.object([
                ("task_id_commitment", .string(commitment.hex)), ("abort_reason", .uint(reason)),
                ("timestamp", .int(ts)), ("signature", .string(signature)),
            ])
            return try self.http.post(self.baseURL + path, json: body, timeout: self.timeout)
        }
        switch response.status {
        case 200:
            return .cancelled
        case 400:
            let error = RelayValidationError(body: response.body)
            switch error.message {
            case "Task can no longer be cancelled": return .tooLate
            case "Task not found": return .notFound
            default: return .rejected(error.description)
            }
        default:
            throw RelayError("POST \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    // MARK: results

    public func result(_ commitment: [UInt8], index: Int, kind: TaskKind) throws(RelayError) -> DownloadOutcome {
        try Self.counted("result") { () throws(RelayError) in try getResult(commitment, index: index, kind: kind) } kind: {
            switch $0 {
            case .data: nil
            case .notReady: "not_ready"
            case .rejected: "rejected"
            }
        }
    }

    private func getResult(_ commitment: [UInt8], index: Int, kind: TaskKind) throws(RelayError) -> DownloadOutcome {
        guard index >= 0 else { return .rejected("index: result indexes start at 0") }
        let path = "/v1/inference_tasks/\(commitment.hex)/results/\(index)"
        // GetResultInput: the index is a string field (a path value).
        let payload = GoJSON.object([("index", .string(String(index))), ("task_id_commitment", .string(commitment.hex))])
        let response = try signedGet(path, payload: payload)
        switch response.status {
        case 200:
            return .data(response.body, contentType: RelayClient.contentType(of: response, kind: kind))
        case 400:
            let error = RelayValidationError(body: response.body)
            return error.message == "Task results not uploaded" ? .notReady(error.description) : .rejected(error.description)
        default:
            throw RelayError("GET result \(index) of \(commitment.hex) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
    }

    // MARK: balance

    public func balance() throws(RelayError) -> BigUInt {
        try Self.counted("balance") { () throws(RelayError) in try getBalance() } kind: { _ in nil }
    }

    private func getBalance() throws(RelayError) -> BigUInt {
        // The Relay compares the path with the recovered signer as EIP-55 strings.
        let address = wallet.checksummed
        let path = "/v2/relay_account/\(address)/balance"
        let response = try signedGet(path, payload: GoJSON.object([("address", .string(address))]))
        guard response.status == 200 else {
            throw RelayError("GET \(path) answered HTTP \(response.status): \(RelayClient.snippet(response.body))")
        }
        guard case .object(let root)? = try? JSON.parse(bytes: response.body), let text = root["data"]?.stringValue,
              let wei = Self.decimal(text) else {
            throw RelayError("GET \(path) answered an unexpected body: \(RelayClient.snippet(response.body))")
        }
        return wei
    }

    // MARK: task JSON

    /// `{"message":"success","data":{…}}` with the task of api/v1/inference_tasks/task_response.go.
    static func parseTaskAnswer(_ response: HTTPResponse, route: String) throws(RelayError) -> LithiumTask {
        guard case .object(let root)? = try? JSON.parse(bytes: response.body), let data = root["data"] else {
            throw RelayError("\(route) answered an unexpected body: \(RelayClient.snippet(response.body))")
        }
        do {
            return try parseTask(data)
        } catch {
            throw RelayError("\(route) answered a malformed task (\(error.description)): \(RelayClient.snippet(response.body))")
        }
    }

    /// A task object, strictly: every field the stages use must be there with its Go type and range.
    public static func parseTask(_ json: JSON) throws(RelayError) -> LithiumTask {
        guard case .object(let o) = json else { throw RelayError("task is not an object") }
        func field(_ name: String) throws(RelayError) -> JSON {
            guard let value = o[name] else { throw RelayError("\(name) missing") }
            return value
        }
        func uint(_ name: String, max: UInt64 = .max) throws(RelayError) -> UInt64 {
            guard let n = uint64(try field(name)), n <= max else { throw RelayError("\(name) is not an integer in 0...\(max)") }
            return n
        }
        func string(_ name: String) throws(RelayError) -> String {
            guard let s = try field(name).stringValue else { throw RelayError("\(name) is not a string") }
            return s
        }
        func hexBytes(_ name: String, count: Int) throws(RelayError) -> [UInt8] {
            let text = try string(name)
            guard text.hasPrefix("0x"), let bytes = [UInt8](hex: text), bytes.count == count else {
                throw RelayError("\(name) is not 0x and \(count) bytes of hex")
            }
            return bytes
        }
        func time(_ name: String) throws(RelayError) -> Date? {
            guard let value = o[name], value != .null else { return nil }
            guard let text = value.stringValue, let date = parseGoTime(text) else { throw RelayError("\(name) is not an RFC 3339 time") }
            return date
        }
        let creatorText = try string("creator")
        guard let creator = Address(hex: creatorText) else { throw RelayError("creator is not an address") }
        let nodeText = try string("selected_node")
        var node: Address?
        if !nodeText.isEmpty {
            guard let address = Address(hex: nodeText) else { throw RelayError("selected_node is not an address") }
            node = address
        }
        guard let status = LithiumStatus(rawValue: UInt8(try uint("status", max: 255))) else { throw RelayError("status out of range") }
        guard let reason = LithiumAbortReason(rawValue: UInt8(try uint("abort_reason", max: 255))) else {
            throw RelayError("abort_reason out of range")
        }
        guard let fee = decimal(try string("task_fee")) else { throw RelayError("task_fee is not a decimal string") }
        return LithiumTask(
            sequence: try uint("sequence"), commitment: try hexBytes("task_id_commitment", count: 32), creator: creator,
            samplingSeed: try hexBytes("sampling_seed", count: 32), status: status, abortReason: reason,
            taskError: UInt8(try uint("task_error", max: 255)), timeout: try uint("timeout"), score: try string("score"),
            selectedNode: node, taskFee: fee, taskSize: try uint("task_size"),
            createTime: try time("create_time"), startTime: try time("start_time"), scoreReadyTime: try time("score_ready_time"),
            validatedTime: try time("validated_time"), resultUploadedTime: try time("result_uploaded_time"))
    }

    /// A JSON number written as plain decimal digits that fits a UInt64 (Go writes uint64 so).
    static func uint64(_ json: JSON?) -> UInt64? {
        guard let literal = json?.numberValue?.literal, !literal.isEmpty, literal.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return nil
        }
        return UInt64(literal)
    }

    static func decimal(_ text: String) -> BigUInt? {
        guard !text.isEmpty, text.utf8.count <= 100, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return BigUInt(text, radix: 10)
    }

    /// Go's time.Time JSON (RFC 3339 with optional fraction of up to 9 digits, `Z` or ±hh:mm).
    static func parseGoTime(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func digits(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var n = 0
            for c in b[from..<(from + count)] {
                guard c >= 0x30 && c <= 0x39 else { return nil }
                n = n * 10 + Int(c - 0x30)
            }
            return n
        }
        guard b.count >= 20, let year = digits(0, 4), b[4] == 0x2D, let month = digits(5, 2), b[7] == 0x2D, let day = digits(8, 2),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"), let hour = digits(11, 2), b[13] == 0x3A,
              let minute = digits(14, 2), b[16] == 0x3A, let second = digits(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == 0x2E {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
                fraction += Double(b[i] - 0x30) * scale
                scale /= 10
                i += 1
            }
            guard i > start, i - start <= 9 else { return nil }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == 0x2B || b[i] == 0x2D, let oh = digits(i + 1, 2), i + 3 < b.count, b[i + 3] == 0x3A, let om = digits(i + 4, 2),
                  oh < 24, om < 60 {
            offset = (oh * 3600 + om * 60) * (b[i] == 0x2D ? -1 : 1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Days from civil (Howard Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        let seconds = Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
        return Date(timeIntervalSince1970: seconds)
    }

    // MARK: plumbing

    /// `application/x-www-form-urlencoded`: everything but the unreserved characters percent-encoded.
    static func formEncode(_ fields: [(String, String)]) -> [UInt8] {
        func encode(_ s: String) -> [UInt8] {
            var out: [UInt8] = []
            let hex = Array("0123456789ABCDEF".utf8)
            for c in s.utf8 {
                switch c {
                case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x2D, 0x2E, 0x5F, 0x7E: out.append(c)
                default: out += [0x25, hex[Int(c >> 4)], hex[Int(c & 0xF)]]
                }
            }
            return out
        }
        var body: [UInt8] = []
        for (i, (name, value)) in fields.enumerated() {
            if i > 0 { body.append(UInt8(ascii: "&")) }
            body += encode(name) + [UInt8(ascii: "=")] + encode(value)
        }
        return body
    }

    private func signedGet(_ path: String, payload: [UInt8]) throws(RelayError) -> HTTPResponse {
        try sendSigned(payload) { ts, signature in
            try self.http.get(self.baseURL + path + "?timestamp=\(ts)&signature=\(signature)", timeout: self.timeout)
        }
    }

    /// Signs `payload` with the current timestamp and sends the request `build` makes. An expired
    /// timestamp reads as "Invalid signature" (v1) or 401 (v2): then the clock is measured again and
    /// the request sent once more.
    private func sendSigned(_ payload: [UInt8], _ build: (Int64, String) throws -> HTTPResponse) throws(RelayError) -> HTTPResponse {
        var response: HTTPResponse
        var resynced = false
        repeat {
            let ts = try clock.timestamp(forceSync: resynced)
            let signature: String
            do {
                signature = try RelayClient.signRequest(payload: payload, timestamp: ts, key: key)
            } catch {
                throw RelayError("signing the Relay request failed: \(error)")
            }
            pacer.waitForSlot()
            do {
                response = try build(ts, signature)
            } catch {
                throw RelayError("Relay request failed: \(error)", isTransport: true)
            }
            let expired = response.status == 401
                || (response.status == 400 && RelayValidationError(body: response.body).message == "Invalid signature")
            guard !resynced, expired else { break }
            resynced = true
        } while true
        return response
    }

    /// crynux_relay_requests_total / crynux_relay_errors_total by endpoint (`lithium_<route>`) and kind.
    private static func counted<T>(_ endpoint: String, _ body: () throws(RelayError) -> T, kind: (T) -> String?) throws(RelayError) -> T {
        let endpoint = "lithium_" + endpoint
        Counter(label: "crynux_relay_requests_total", dimensions: [("endpoint", endpoint)]).increment()
        do {
            let value = try body()
            if let kind = kind(value) {
                Counter(label: "crynux_relay_errors_total", dimensions: [("endpoint", endpoint), ("kind", kind)]).increment()
            }
            return value
        } catch {
            Counter(label: "crynux_relay_errors_total", dimensions: [("endpoint", endpoint), ("kind", error.isTransport ? "transport" : "http")])
                .increment()
            throw error
        }
    }
}

/// A request rate limit: each request takes the next free slot, 1/rate seconds after the previous
/// one. Shared by the clients of one process, so `--relay-request-rate` bounds the process, whatever
/// the number of wallets.
public final class RequestPacer: Sendable {
    /// Seconds between the starts of two requests; 0 = no spacing.
    private let interval: Double
    /// Monotonic time (s) before which the next request may not start.
    private let nextSlot = Mutex<Double>(0)

    public init(requestsPerSecond rate: Double) {
        interval = rate > 0 && rate.isFinite ? 1 / rate : 0
    }

    public func waitForSlot() {
        guard interval > 0 else { return }
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        let wait = nextSlot.withLock { next -> Double in
            let start = Swift.max(now, next)
            next = start + interval
            return start - now
        }
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}
