import Dispatch
import Foundation
import HTTP
import TestSupport
import Testing

@Suite("HTTPClient against a local server")
struct HTTPClientTests {
    private func stats(_ client: HTTPClient, _ server: TestServer) throws -> (connections: Int, requests: Int) {
        let response = try client.get(server.base + "/stats")
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Int]
        return (object?["connections"] ?? -1, object?["requests"] ?? -1)
    }

    @Test func fiveMegabyteBodyArrivesIntact() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient()
        let size = 5 * 1024 * 1024
        let response = try client.get(server.base + "/bytes?n=\(size)&seed=42")
        #expect(response.status == 200)
        #expect(response.body.count == size)
        #expect(response.header("Content-Length") == String(size))
        #expect(response.headers["content-type"] == "application/octet-stream")
        #expect(String(crc32(response.body)) == response.header("x-crc32"))
    }

    @Test func totalTimeoutFires() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient(options: HTTPOptions(totalTimeout: 30))
        let start = Date()
        #expect {
            _ = try client.get(server.base + "/sleep?ms=3000", timeout: 0.4)
        } throws: { error in
            guard case HTTPError.timeout = error else { return false }
            return true
        }
        #expect(Date().timeIntervalSince(start) < 2.5)

        // The default timeout from the options applies when no per-call timeout is given.
        let short = HTTPClient(options: HTTPOptions(totalTimeout: 0.3))
        #expect(throws: HTTPError.self) { _ = try short.get(server.base + "/sleep?ms=3000") }
        // And a request within the limit still succeeds on the same clients afterwards.
        #expect(try client.get(server.base + "/sleep?ms=10", timeout: 5).body == Array("slept".utf8))
        #expect(try short.get(server.base + "/sleep?ms=1").status == 200)
    }

    @Test func bodyOverTheCapIsRefused() throws {
        let server = try TestServer()
        defer { server.stop() }
        let limit = 1_000_000
        let client = HTTPClient(options: HTTPOptions(maxResponseBytes: limit))

        // With Content-Length curl refuses up front; a chunked body is cut off by the write callback.
        for path in ["/bytes?n=\(limit + 1)", "/stream?n=\(3 * limit)"] {
            #expect {
                _ = try client.get(server.base + path)
            } throws: { error in
                guard case HTTPError.bodyTooLarge(let reported) = error else { return false }
                return reported == limit && "\(error)".contains("exceeds the limit of 1000000 bytes")
            }
        }
        #expect(try client.get(server.base + "/bytes?n=\(limit)").body.count == limit)
        #expect(try client.get(server.base + "/stream?n=\(limit)").body.count == limit)
    }

    @Test func connectionsAreKeptAlive() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient()
        for i in 0..<10 {
            let response = try client.get(server.base + "/bytes?n=\(1000 + i)")
            #expect(response.body.count == 1000 + i)
        }
        _ = try client.post(server.base + "/echo", json: Array("{}".utf8))
        let seen = try stats(client, server)
        #expect(seen.requests == 12)
        #expect(seen.connections == 1)
    }

    @Test func concurrentRequestsFromManyThreads() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient()
        let threads = 8, perThread = 12
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for i in 0..<perThread {
                let n = 10_000 + thread * 1000 + i
                do {
                    let response = try client.get(server.base + "/bytes?n=\(n)&seed=\(thread)")
                    if response.body.count != n || String(crc32(response.body)) != response.header("x-crc32") {
                        failures.add("thread \(thread) request \(i): corrupted body")
                    }
                    let payload = Array("thread \(thread) request \(i)".utf8)
                    let echoed = try client.request("PUT", server.base + "/echo", body: payload)
                    if echoed.body != payload { failures.add("thread \(thread) request \(i): wrong echo") }
                } catch {
                    failures.add("thread \(thread) request \(i): \(error)")
                }
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        let seen = try stats(client, server)
        #expect(seen.requests == threads * perThread * 2 + 1)
        // Handles go back to the pool, so no more connections than threads ever ran at once.
        #expect(seen.connections <= threads)
    }

    @Test func methodsHeadersAndBodies() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient()
        let body = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }

        let posted = try client.post(server.base + "/echo", json: body, headers: ["X-Echo": "hello"])
        #expect(posted.status == 200)
        #expect(posted.body == body)
        #expect(posted.header("X-Method") == "POST")
        #expect(posted.header("x-echo") == "hello")
        #expect(posted.header("x-content-type") == "application/json")

        let custom = try client.post(server.base + "/echo", json: [], headers: ["content-type": "text/plain"])
        #expect(custom.header("x-content-type") == "text/plain")
        #expect(custom.body.isEmpty)

        for method in ["PUT", "PATCH", "DELETE"] {
            let response = try client.request(method, server.base + "/echo", body: Array(method.utf8))
            #expect(response.header("x-method") == method)
            #expect(response.body == Array(method.utf8))
        }
        let deleted = try client.request("DELETE", server.base + "/echo")
        #expect(deleted.header("x-method") == "DELETE")
        #expect(deleted.body.isEmpty)

        let multi = try client.get(server.base + "/multi")
        #expect(multi.headers["x-multi"] == "a, b")
    }

    @Test func httpErrorStatusesAreResponses() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = HTTPClient()
        for code in [400, 404, 500, 503] {
            let response = try client.get(server.base + "/status?code=\(code)")
            #expect(response.status == code)
            #expect(response.body == Array("status \(code)".utf8))
            #expect(response.isSuccess == false)
        }
    }

    @Test func connectionRefusedIsATransportError() throws {
        let client = HTTPClient(options: HTTPOptions(connectTimeout: 2))
        #expect {
            _ = try client.get("http://127.0.0.1:\(closedPort())/")
        } throws: { error in
            guard case HTTPError.transport(let message) = error else { return false }
            return message.contains("127.0.0.1")
        }
    }

    @Test func invalidRequestsAreRejected() throws {
        let client = HTTPClient()
        #expect(throws: HTTPError.self) { _ = try client.get("ftp://127.0.0.1/file") }
        #expect(throws: HTTPError.self) { _ = try client.get("not a url") }
        #expect(throws: HTTPError.self) { _ = try client.get("file:///etc/passwd") }
        #expect(throws: HTTPError.self) { _ = try client.request("GET\r\nX: y", "http://127.0.0.1:1/") }
        #expect(throws: HTTPError.self) {
            _ = try client.get("http://127.0.0.1:1/", headers: ["X-Evil": "a\r\nInjected: 1"])
        }
    }

    @Test func errorsDoNotLeakURLSecrets() throws {
        let client = HTTPClient(options: HTTPOptions(connectTimeout: 2))
        do {
            _ = try client.get("http://user:secret@127.0.0.1:\(closedPort())/v3/pathkey?apikey=topsecret")
            Issue.record("expected an error")
        } catch {
            // Providers put keys in the credentials, the path or the query: only scheme and host remain.
            let text = "\(error)"
            #expect(!text.contains("topsecret"))
            #expect(!text.contains("secret@"))
            #expect(!text.contains("pathkey"))
            #expect(text.contains("http://127.0.0.1:"))
        }
        #expect(redactedURL("https://u:p@rpc.example:8545/v3/KEY?x=1#f") == "https://rpc.example:8545/…")
        #expect(redactedURL("http://127.0.0.1:8545") == "http://127.0.0.1:8545")
    }

    /// A self-signed certificate (its own CA) for `altName`, written to `dir`.
    private func certificate(in dir: URL, name: String, altName: String) throws -> (cert: String, key: String) {
        let cert = dir.appendingPathComponent("\(name)-cert.pem").path
        let key = dir.appendingPathComponent("\(name)-key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                             "-subj", "/CN=\(name)", "-addext", "subjectAltName=\(altName)", "-keyout", key, "-out", cert]
        openssl.standardError = FileHandle.nullDevice
        openssl.standardOutput = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        #expect(openssl.terminationStatus == 0)
        return (cert, key)
    }

    @Test func aPrivateCAIsTrustedOnlyForTheRightHost() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("http-ca-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let right = try certificate(in: dir, name: "right", altName: "IP:127.0.0.1")
        let other = try certificate(in: dir, name: "other", altName: "IP:127.0.0.1")
        let wrongHost = try certificate(in: dir, name: "elsewhere", altName: "DNS:relay.example")
        let server = try TestServer(tls: right)
        defer { server.stop() }
        // The server's CA named: the request goes through.
        let trusting = HTTPClient(options: HTTPOptions(caFile: right.cert))
        #expect(try trusting.get(server.base + "/bytes?n=10").body.count == 10)
        // Another CA: refused.
        #expect(throws: HTTPError.self) { _ = try HTTPClient(options: HTTPOptions(caFile: other.cert)).get(server.base + "/bytes?n=10") }
        // The right CA, but a certificate for another host name: refused.
        let misnamed = try TestServer(tls: wrongHost)
        defer { misnamed.stop() }
        #expect(throws: HTTPError.self) {
            _ = try HTTPClient(options: HTTPOptions(caFile: wrongHost.cert)).get(misnamed.base + "/bytes?n=10")
        }
    }

    @Test func tlsCertificatesAreVerified() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("http-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (cert, key) = try certificate(in: dir, name: "127.0.0.1", altName: "IP:127.0.0.1")

        let server = try TestServer(tls: (cert, key))
        defer { server.stop() }
        #expect(server.base.hasPrefix("https://"))
        // A self-signed certificate is not trusted: the request must fail rather than go through.
        #expect {
            _ = try HTTPClient().get(server.base + "/bytes?n=10")
        } throws: { error in
            guard case HTTPError.transport(let message) = error else { return false }
            return message.lowercased().contains("certificate") || message.contains("SSL")
        }
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ item: String) { lock.lock(); items.append(item); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
