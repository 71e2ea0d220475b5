import Ethereum
import Foundation
import HTTP
import Synchronization
import Testing

@testable import Crynux

/// An in-process imitation of the era-D Relay's task routes: it re-serialises each request the way the
/// Go Relay does, checks the signature and the ±60 s window, and answers with the Relay's messages.
final class SimulatedRelay: @unchecked Sendable {
    struct Task {
        var creator: Address
        var taskHash: [UInt8]
        var arguments: String?
        var results: [[UInt8]]?
        var kind: TaskKind
    }

    private let lock = NSLock()
    private var tasks: [UInt64: Task] = [:]
    private var skew: Int64 = 0
    private var override: FakeHTTPServer.Response?
    private var nowRoute = true
    private(set) var requests: [FakeHTTPServer.Request] = []
    private var server: FakeHTTPServer!

    var url: String { server.url }

    init() throws {
        server = try FakeHTTPServer { [unowned self] request in self.handle(request) }
    }

    func stop() { server.stop() }

    func register(taskId: UInt64, creator: Address, arguments: String, kind: TaskKind) {
        lock.withLock {
            tasks[taskId] = Task(creator: creator, taskHash: keccak256(Array(arguments.utf8)), kind: kind)
        }
    }

    func publishResults(taskId: UInt64, _ results: [[UInt8]]) { lock.withLock { tasks[taskId]?.results = results } }
    func setSkew(_ seconds: Int64) { lock.withLock { skew = seconds } }
    func setOverride(_ response: FakeHTTPServer.Response?) { lock.withLock { override = response } }
    func disableNowRoute() { lock.withLock { nowRoute = false } }
    func uploadedArguments(_ taskId: UInt64) -> String? { lock.withLock { tasks[taskId]?.arguments } }
    var requestCount: Int { lock.withLock { requests.count } }

    private var now: Int64 { Int64(Date().timeIntervalSince1970) + skew }

    private func validation(_ field: String, _ message: String) -> FakeHTTPServer.Response {
        .json(400, #"{"message":"validation_error","data":{"field_name":"\#(field)","message":"\#(message)"}}"#)
    }

    /// The Relay's signer check: keccak(Go JSON ‖ timestamp), |now − timestamp| ≤ 60, recover with v 0/1.
    private func signer(_ payload: [UInt8], timestamp: Int64, signature: String) -> Address? {
        guard abs(now - timestamp) <= 60, signature.hasPrefix("0x"),
              let raw = [UInt8](hex: String(signature.dropFirst(2))), raw.count == 65, raw[64] < 4 else { return nil }
        let hash = keccak256(payload + Array(String(timestamp).utf8))
        guard let sig = try? Signature(bytes65: raw) else { return nil }
        return try? sig.recoverAddress(hash: hash)
    }

    private func handle(_ request: FakeHTTPServer.Request) -> FakeHTTPServer.Response {
        lock.lock()
        defer { lock.unlock() }
        requests.append(request)
        if let override { return override }
        let parts = request.path.split(separator: "/").map(String.init)
        switch (request.method, parts.count) {
        case ("GET", 2) where parts == ["v1", "now"] && nowRoute:
            return .json(200, #"{"message":"success","data":{"now":\#(now)}}"#)
        case ("POST", 2) where parts == ["v1", "inference_tasks"]:
            return upload(request)
        case ("GET", 5) where parts[0] == "v1" && parts[1] == "inference_tasks" && parts[3] == "results":
            return download(taskId: UInt64(parts[2]), index: parts[4], request)
        default:
            return FakeHTTPServer.Response(status: 404, body: Array("404 page not found".utf8))
        }
    }

    private func upload(_ request: FakeHTTPServer.Request) -> FakeHTTPServer.Response {
        guard let body = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let args = body["task_args"] as? String, let id = (body["task_id"] as? NSNumber)?.uint64Value, id != 0,
              let ts = (body["timestamp"] as? NSNumber)?.int64Value, let signature = body["signature"] as? String else {
            return validation("task_args", "required")
        }
        let payload = GoJSON.object([("task_args", .string(args)), ("task_id", .uint(id))])
        guard let signer = signer(payload, timestamp: ts, signature: signature) else {
            return validation("signature", "Invalid signature")
        }
        guard var task = tasks[id] else { return validation("task_id", "Task not found on the Blockchain") }
        guard task.creator == signer else { return validation("signature", "Signer not allowed") }
        guard task.arguments == nil else { return validation("task_id", "Task already uploaded") }
        guard keccak256(Array(args.utf8)) == task.taskHash else { return validation("task_hash", "Task hash mismatch") }
        task.arguments = args
        tasks[id] = task
        return .json(200, #"{"message":"success","data":{"task_id":\#(id)}}"#)
    }

    private func download(taskId: UInt64?, index: String, _ request: FakeHTTPServer.Request) -> FakeHTTPServer.Response {
        guard let id = taskId, let ts = Int64(request.query["timestamp"] ?? ""), let signature = request.query["signature"] else {
            return validation("timestamp", "required")
        }
        let payload = GoJSON.object([("image_num", .string(index)), ("task_id", .uint(id))])
        guard let signer = signer(payload, timestamp: ts, signature: signature) else {
            return validation("signature", "Invalid signature")
        }
        guard let task = tasks[id] else { return validation("task_id", "Task not found") }
        guard task.creator == signer else { return validation("signature", "Signer not allowed") }
        guard let results = task.results else { return validation("task_id", "Task results not uploaded") }
        guard let i = Int(index), results.indices.contains(i) else { return validation("image_num", "File not found") }
        let ext = task.kind == .sd ? "png" : "json"
        return FakeHTTPServer.Response(status: 200, headers: [
            "Content-Type": "application/octet-stream",
            "Content-Disposition": "attachment; filename=\(i).\(ext)",
            "Content-Transfer-Encoding": "binary",
        ], body: results[i])
    }
}

private let testKey = try! PrivateKey(hex: "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
private let otherKey = try! PrivateKey(hex: "0x0000000000000000000000000000000000000000000000000000000000000007")
private let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]

/// A settable clock for the client under test.
private final class TestClock: Sendable {
    private let value: Mutex<Int64>
    init(_ start: Int64 = Int64(Date().timeIntervalSince1970)) { value = Mutex(start) }
    func now() -> Int64 { value.withLock { $0 } }
    func advance(_ seconds: Int64) { value.withLock { $0 += seconds } }
}

@Suite(.serialized) struct RelayClientTests {
    let http = HTTPClient(options: HTTPOptions(connectTimeout: 2, totalTimeout: 5))

    private func client(_ relay: SimulatedRelay, key: PrivateKey = testKey, clock: TestClock = TestClock()) -> RelayClient {
        RelayClient(baseURL: relay.url + "/", key: key, http: http, clock: { clock.now() })
    }

    @Test func signatureRecoversToTheSigner() throws {
        let payload = GoJSON.object([("task_id", .uint(42))])
        let signature = try RelayClient.signRequest(payload: payload, timestamp: 1_700_000_000, key: testKey)
        #expect(signature.count == 132)
        #expect(signature.hasPrefix("0x"))
        #expect(signature == signature.lowercased())
        let raw = [UInt8](hex: signature)!
        #expect(raw[64] == 0 || raw[64] == 1)
        // keccak of `{"task_id":42}1700000000` is the §2.5 vector.
        let hash = [UInt8](hex: "0x5b66ce7ed90590b05b2dc2c5e0696b8e1c7e4ce2b7516bc496883f516bd5f9df")!
        #expect(try Signature(bytes65: raw).recoverAddress(hash: hash) == testKey.address)
    }

    @Test func uploadLifecycle() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        let c = client(relay)
        let args = #"{"base_model":"m","prompt":"a <cat> & a \"dog\" — 猫 \u2028","task_config":{"num_images":1}}"#

        #expect(try c.uploadTaskArguments(taskId: 7, arguments: args) == .notYetOnChain)
        relay.register(taskId: 7, creator: testKey.address, arguments: args, kind: .sd)
        #expect(try c.uploadTaskArguments(taskId: 7, arguments: args) == .uploaded)
        #expect(relay.uploadedArguments(7) == args)
        #expect(try c.uploadTaskArguments(taskId: 7, arguments: args) == .alreadyUploaded)
    }

    @Test func uploadRejections() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        relay.register(taskId: 8, creator: testKey.address, arguments: #"{"a":1}"#, kind: .gpt)
        #expect(try client(relay).uploadTaskArguments(taskId: 8, arguments: #"{"a":2}"#)
            == .rejected("task_hash: Task hash mismatch"))
        #expect(try client(relay, key: otherKey).uploadTaskArguments(taskId: 8, arguments: #"{"a":1}"#)
            == .rejected("signature: Signer not allowed"))
    }

    @Test func correctsForTheRelaysClock() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        relay.setSkew(3600)
        relay.register(taskId: 9, creator: testKey.address, arguments: "{}", kind: .gpt)
        let c = client(relay)
        #expect(try c.uploadTaskArguments(taskId: 9, arguments: "{}") == .uploaded)
        #expect(abs(c.clockOffset - 3600) <= 2)
        let t = try c.serverTime()
        #expect(abs(t - Int64(Date().timeIntervalSince1970) - 3600) <= 2)
    }

    @Test func remeasuresTheClockWhenTheLocalClockJumps() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        relay.register(taskId: 10, creator: testKey.address, arguments: "{}", kind: .gpt)
        let clock = TestClock()
        let c = client(relay, clock: clock)
        #expect(try c.uploadTaskArguments(taskId: 99, arguments: "{}") == .notYetOnChain)
        clock.advance(-120)
        #expect(try c.uploadTaskArguments(taskId: 10, arguments: "{}") == .uploaded)
        #expect(abs(c.clockOffset - 120) <= 2)
    }

    @Test func remeasuresTheClockWhenASignatureIsRefused() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        relay.register(taskId: 10, creator: testKey.address, arguments: "{}", kind: .gpt)
        let c = client(relay)
        #expect(try c.uploadTaskArguments(taskId: 99, arguments: "{}") == .notYetOnChain)
        // The Relay's clock moves while our measured offset is still fresh: an expired timestamp
        // reads as "Invalid signature", and the client measures again and retries once.
        relay.setSkew(-300)
        let before = relay.requestCount
        #expect(try c.uploadTaskArguments(taskId: 10, arguments: "{}") == .uploaded)
        #expect(relay.requestCount - before == 3)  // refused POST, GET /v1/now, accepted POST
        #expect(abs(c.clockOffset + 300) <= 2)

        relay.setSkew(0)
        relay.publishResults(taskId: 10, [Array("{}".utf8)])
        #expect(try c.downloadResult(taskId: 10, index: 0) == .data(Array("{}".utf8), contentType: "application/json"))
    }

    @Test func worksWithoutTheNowRoute() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        relay.disableNowRoute()
        relay.register(taskId: 11, creator: testKey.address, arguments: "{}", kind: .gpt)
        let c = client(relay)
        #expect(try c.uploadTaskArguments(taskId: 11, arguments: "{}") == .uploaded)
        #expect(c.clockOffset == 0)
        #expect(throws: RelayError.self) { try c.serverTime() }
    }

    @Test func transientFailuresThrow() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        let c = client(relay)
        _ = try c.serverTime()
        relay.setOverride(.json(500, #"{"message":"database is locked"}"#))
        #expect(throws: RelayError.self) { try c.uploadTaskArguments(taskId: 1, arguments: "{}") }
        #expect(throws: RelayError.self) { try c.downloadResult(taskId: 1, index: 0) }
        relay.setOverride(FakeHTTPServer.Response(status: 404, body: Array("404 page not found".utf8)))
        #expect(throws: RelayError.self) { try c.uploadTaskArguments(taskId: 1, arguments: "{}") }
        relay.setOverride(.json(502, "<html>bad gateway</html>"))
        #expect(throws: RelayError.self) { try c.downloadResult(taskId: 1, index: 0) }

        // Nothing listens on the port once the server is stopped.
        relay.stop()
        do {
            _ = try c.uploadTaskArguments(taskId: 1, arguments: "{}")
            Issue.record("expected a transport error")
        } catch {
            #expect(error.isTransport)
        }
    }

    @Test func downloadLifecycle() throws {
        let relay = try SimulatedRelay()
        defer { relay.stop() }
        let c = client(relay)
        relay.register(taskId: 12, creator: testKey.address, arguments: "{}", kind: .sd)
        guard case .notReady(let why) = try c.downloadResult(taskId: 12, index: 0) else {
            Issue.record("expected notReady"); return
        }
        #expect(why == "task_id: Task results not uploaded")

        relay.publishResults(taskId: 12, [png, png + [4]])
        #expect(try c.downloadResult(taskId: 12, index: 1) == .data(png + [4], contentType: "image/png"))
        #expect(try c.downloadResult(taskId: 12, index: 2) == .rejected("image_num: File not found"))
        #expect(try client(relay, key: otherKey).downloadResult(taskId: 12, index: 0)
            == .rejected("signature: Signer not allowed"))

        let json = Array(#"{"model":"m","choices":[]}"#.utf8)
        relay.register(taskId: 13, creator: testKey.address, arguments: "{}", kind: .gpt)
        relay.publishResults(taskId: 13, [json])
        #expect(try c.downloadResult(taskId: 13, index: 0) == .data(json, contentType: "application/json"))

        relay.setOverride(FakeHTTPServer.Response(status: 404, body: []))
        guard case .notReady = try c.downloadResult(taskId: 13, index: 0) else { Issue.record("404 is not ready"); return }
    }

    @Test func contentTypeFallbacks() {
        func response(_ headers: [String: String], _ body: [UInt8]) -> HTTPResponse {
            HTTPResponse(status: 200, headers: headers, body: body)
        }
        #expect(RelayClient.contentType(of: response(["content-disposition": "attachment; filename=0.json"], png), kind: .sd)
            == "application/json")
        #expect(RelayClient.contentType(of: response([:], [1, 2]), kind: .sd) == "image/png")
        #expect(RelayClient.contentType(of: response([:], [1, 2]), kind: .gpt) == "application/json")
        #expect(RelayClient.contentType(of: response([:], png), kind: nil) == "image/png")
        #expect(RelayClient.contentType(of: response([:], Array("{}".utf8)), kind: nil) == "application/json")
        #expect(RelayClient.contentType(of: response([:], [0xFF]), kind: nil) == "application/octet-stream")
    }

    @Test func validationBodies() {
        let e = RelayValidationError(body: Array(#"{"message":"validation_error","data":{"field_name":"task_id","message":"Task already uploaded"}}"#.utf8))
        #expect(e.field == "task_id" && e.message == "Task already uploaded")
        #expect(RelayValidationError(body: Array("oops".utf8)).description == "HTTP 400: oops")
        #expect(RelayValidationError(body: Array(#"{"message":"bad"}"#.utf8)).description == "bad")
    }
}
