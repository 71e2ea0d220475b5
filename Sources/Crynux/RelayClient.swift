import Ethereum
import Foundation
import HTTP
import Metrics
import Synchronization
import StrictJSON

public enum UploadOutcome: Sendable, Equatable {
    case uploaded
    /// "Task already uploaded": the Relay has the arguments (or the task was already aborted).
    case alreadyUploaded
    /// "Task not found on the Blockchain": the Relay has not synced the creating block yet; try again soon.
    case notYetOnChain
    /// Any other refusal, as `"<field>: <message>"`. Retrying the same request will not help.
    case rejected(String)
}

public enum DownloadOutcome: Sendable, Equatable {
    case data([UInt8], contentType: String)
    /// The results are not on the Relay yet ("Task results not uploaded", or 404); try again later.
    case notReady(String)
    /// Any other refusal, as `"<field>: <message>"`.
    case rejected(String)
}

/// A transient failure talking to the Relay (transport error, timeout, 5xx, unexpected route 404);
/// the same request may succeed later.
public struct RelayError: Error, Sendable, CustomStringConvertible {
    public let description: String
    /// The request did not get an HTTP answer at all (connection refused, timeout, …).
    public let isTransport: Bool

    public init(_ description: String, isTransport: Bool = false) {
        self.description = description
        self.isTransport = isTransport
    }
}

/// Client of the era-D Relay: signed upload of task arguments and signed download of results.
///
/// Every request is signed over Go's JSON of the request object followed by the decimal timestamp,
/// and the Relay refuses timestamps more than 60 s from its own clock, so the client learns the
/// offset between the local clock and the Relay's from `GET /v1/now` and stamps requests with
/// Relay time.
public final class RelayClient: Sendable {
    public let baseURL: String
    private let key: PrivateKey
    private let http: HTTPClient
    private let clock: @Sendable () -> Int64
    private let timeout: Double?
    /// The Relay has no `/v1/now` (Hydrogen's): requests are stamped with the local clock and the
    /// Relay's time is never asked.
    private let localClock: Bool
    private let state = Mutex(ClockState())

    /// How long a learned clock offset is trusted before it is measured again.
    static let offsetLifetime: Int64 = 600

    private struct ClockState {
        var offset: Int64 = 0
        /// Local time of the last measurement; nil before the first one.
        var measuredAt: Int64?
    }

    public init(baseURL: String, key: PrivateKey, http: HTTPClient, timeout: Double? = nil, localClock: Bool = false,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.localClock = localClock
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.key = key
        self.http = http
        self.timeout = timeout
        self.clock = clock
    }

    // MARK: clock

    /// The Relay's clock (`GET /v1/now`); also updates the offset used for request timestamps.
    public func serverTime() throws(RelayError) -> Int64 {
        let before = clock()
        let response = try send { try http.get(baseURL + "/v1/now", timeout: timeout) }
        let after = clock()
        guard response.status == 200 else {
            throw RelayError("GET /v1/now answered HTTP \(response.status): \(Self.snippet(response.body))")
        }
        guard case .object(let root)? = try? JSON.parse(bytes: response.body),
              case .object(let data)? = root["data"], case .number(let n)? = data["now"],
              let now = n.integerValue else {
            throw RelayError("GET /v1/now answered an unexpected body: \(Self.snippet(response.body))")
        }
        // The server read its clock somewhere between our two readings.
        let offset = now - (before + (after - before) / 2)
        state.withLock { $0 = ClockState(offset: offset, measuredAt: after) }
        return now
    }

    /// Offset (Relay clock − local clock) in seconds currently applied to timestamps.
    public var clockOffset: Int64 { state.withLock { $0.offset } }

    /// The timestamp to sign with: local time corrected by the learned offset, measured first if it is
    /// unknown or stale. A Relay that cannot tell its time (no /v1/now route) leaves the offset at 0.
    func timestamp(forceSync: Bool = false) throws(RelayError) -> Int64 {
        let now = clock()
        if localClock { return now }
        let (offset, measuredAt) = state.withLock { ($0.offset, $0.measuredAt) }
        if !forceSync, let measuredAt, now - measuredAt < Self.offsetLifetime, now >= measuredAt {
            return now + offset
        }
        do {
            _ = try serverTime()
        } catch {
            // A transport failure is transient for the caller's request as well; anything else means
            // the Relay cannot tell us its time, so sign with our own clock and ask again later.
            if error.isTransport { throw error }
            state.withLock { $0.measuredAt = now }
            return now + offset
        }
        return clock() + clockOffset
    }

    // MARK: signing

    /// `"0x"` + hex of r‖s‖v (v = 0/1) over keccak256(payload ‖ decimal timestamp), as the Relay verifies.
    public static func signRequest(payload: [UInt8], timestamp: Int64, key: PrivateKey) throws -> String {
        let hash = keccak256(payload + Array(String(timestamp).utf8))
        return try key.sign(hash: hash).bytes65.hex
    }

    // MARK: upload

    /// `POST /v1/inference_tasks` with the exact argument string whose keccak256 is the task hash.
    public func uploadTaskArguments(taskId: UInt64, arguments: String) throws(RelayError) -> UploadOutcome {
        try Self.counted("upload") { () throws(RelayError) in try upload(taskId: taskId, arguments: arguments) } kind: {
            switch $0 {
            case .uploaded, .alreadyUploaded: nil
            case .notYetOnChain: "not_yet_on_chain"
            case .rejected: "rejected"
            }
        }
    }

    private func upload(taskId: UInt64, arguments: String) throws(RelayError) -> UploadOutcome {
        let payload = GoJSON.object([("task_args", .string(arguments)), ("task_id", .uint(taskId))])
        let response = try sendSigned(payload) { ts, signature in
            let body = GoJSON.object([
                ("task_args", .string(arguments)), ("task_id", .uint(taskId)),
                ("timestamp", .int(ts)), ("signature", .string(signature)),
            ])
            return try self.http.post(self.baseURL + "/v1/inference_tasks", json: body, timeout: self.timeout)
        }
        switch response.status {
        case 200:
            return .uploaded
        case 400:
            let error = RelayValidationError(body: response.body)
            switch error.message {
            case "Task not found on the Blockchain": return .notYetOnChain
            case "Task already uploaded": return .alreadyUploaded
            default: return .rejected(error.description)
            }
        default:
            throw RelayError("POST /v1/inference_tasks answered HTTP \(response.status): \(Self.snippet(response.body))")
        }
    }

    // MARK: download

    /// `GET /v1/inference_tasks/{id}/results/{index}`. The content type comes from the file name the
    /// Relay gives (`0.png` / `0.json`), else from `kind`, else from the bytes.
    public func downloadResult(taskId: UInt64, index: Int, kind: TaskKind? = nil) throws(RelayError) -> DownloadOutcome {
        try Self.counted("download") { () throws(RelayError) in try download(taskId: taskId, index: index, kind: kind) } kind: {
            switch $0 {
            case .data: nil
            case .notReady: "not_ready"
            case .rejected: "rejected"
            }
        }
    }

    private func download(taskId: UInt64, index: Int, kind: TaskKind?) throws(RelayError) -> DownloadOutcome {
        precondition(index >= 0, "result indexes start at 0")
        let payload = GoJSON.object([("image_num", .string(String(index))), ("task_id", .uint(taskId))])
        let response = try sendSigned(payload) { ts, signature in
            try self.http.get(self.baseURL + "/v1/inference_tasks/\(taskId)/results/\(index)?timestamp=\(ts)&signature=\(signature)",
                              timeout: self.timeout)
        }
        switch response.status {
        case 200:
            return .data(response.body, contentType: Self.contentType(of: response, kind: kind))
        case 404:
            return .notReady("HTTP 404: \(Self.snippet(response.body))")
        case 400:
            let error = RelayValidationError(body: response.body)
            if error.message == "Task results not uploaded" { return .notReady(error.description) }
            return .rejected(error.description)
        default:
            throw RelayError("GET result \(index) of task \(taskId) answered HTTP \(response.status): "
                + Self.snippet(response.body))
        }
    }

    /// Signs `payload` with the current timestamp and sends the request `build` makes. An expired
    /// timestamp reads as "Invalid signature": then the clock is measured again and it is sent once more.
    private func sendSigned(_ payload: [UInt8], _ build: (Int64, String) throws -> HTTPResponse) throws(RelayError) -> HTTPResponse {
        var response: HTTPResponse
        var resynced = false
        repeat {
            let ts = try timestamp(forceSync: resynced)
            let signature = try sign(payload, ts)
            response = try send { try build(ts, signature) }
            guard !resynced, response.status == 400, RelayValidationError(body: response.body).message == "Invalid signature" else { break }
            resynced = true
        } while true
        return response
    }

    static func contentType(of response: HTTPResponse, kind: TaskKind?) -> String {
        if let disposition = response.header("content-disposition")?.lowercased() {
            if disposition.contains(".png") { return "image/png" }
            if disposition.contains(".json") { return "application/json" }
        }
        if let kind { return kind.resultContentType }
        if response.body.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "image/png" }
        if (try? JSON.parse(bytes: response.body)) != nil { return "application/json" }
        return "application/octet-stream"
    }

    // MARK: plumbing

    /// Counts a Relay request and, when it did not get what it asked for, why (Prometheus:
    /// crynux_relay_requests_total and crynux_relay_errors_total by endpoint and kind).
    private static func counted<T>(_ endpoint: String, _ body: () throws(RelayError) -> T, kind: (T) -> String?) throws(RelayError) -> T {
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

    private func sign(_ payload: [UInt8], _ timestamp: Int64) throws(RelayError) -> String {
        do {
            return try Self.signRequest(payload: payload, timestamp: timestamp, key: key)
        } catch {
            throw RelayError("signing the Relay request failed: \(error)")
        }
    }

    private func send(_ request: () throws -> HTTPResponse) throws(RelayError) -> HTTPResponse {
        do {
            return try request()
        } catch {
            throw RelayError("Relay request failed: \(error)", isTransport: true)
        }
    }

    static func snippet(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        return text.isEmpty ? "(empty body)" : text
    }
}

/// The Relay's 400 body: `{"message":"validation_error","data":{"field_name":…,"message":…}}`.
struct RelayValidationError: CustomStringConvertible {
    let field: String?
    let message: String

    init(body: [UInt8]) {
        if case .object(let root)? = try? JSON.parse(bytes: body) {
            if case .object(let data)? = root["data"], case .string(let message)? = data["message"] {
                self.message = message
                self.field = data["field_name"]?.stringValue
                return
            }
            if case .string(let message)? = root["message"] {
                self.message = message
                self.field = nil
                return
            }
        }
        self.message = "HTTP 400: " + RelayClient.snippet(body)
        self.field = nil
    }

    var description: String { field.map { "\($0): \(message)" } ?? message }
}
