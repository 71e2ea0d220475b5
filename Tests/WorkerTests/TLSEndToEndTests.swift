import Foundation
import JobQueue
import TestSupport
import Testing

/// The worker against the local network behind TLS with a private CA (`--ca-file`): it works
/// with the right CA, and stops trying with another CA or a certificate for another host name.
@Suite("TLS with a private CA (end to end)")
struct TLSEndToEndTests {
    /// A TLS reverse proxy in front of one plain-HTTP upstream (argv: cert, key, upstream).
    static let proxy = #"""
import http.server, socketserver, ssl, sys, threading, urllib.request, urllib.error
cert, key, upstream = sys.argv[1], sys.argv[2], sys.argv[3]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = urllib.request.Request(upstream + self.path, body if body else None, method=self.command,
                                         headers={k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")})
        try:
            reply = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as error:
            reply = error
        data = reply.read()
        self.send_response(reply.status if hasattr(reply, "status") else reply.code)
        for k, v in reply.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = forward
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
server = Server(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
"""#

    static func certificate(in dir: URL, name: String, altName: String) throws -> (cert: String, key: String) {
        let cert = dir.appendingPathComponent("\(name)-cert.pem").path
        let key = dir.appendingPathComponent("\(name)-key.pem").path
        let (status, output) = try Devnet.runProcess("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(name)",
            "-addext", "subjectAltName=\(altName)", "-keyout", key, "-out", cert,
        ])
        guard status == 0 else { throw TestSetupError("openssl: \(output)") }
        return (cert, key)
    }

    @Test func theWorkerTrustsItsPrivateCAAndNothingElse() throws {
        let devnet = try Devnet.shared()
        let harness = try PipelineHarness(devnet: devnet)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let right = try Self.certificate(in: dir, name: "devnet", altName: "IP:127.0.0.1")
        let other = try Self.certificate(in: dir, name: "stranger", altName: "IP:127.0.0.1")
        let misnamed = try Self.certificate(in: dir, name: "elsewhere", altName: "DNS:relay.example")

        func proxies(_ pair: (cert: String, key: String)) throws -> (rpc: ScriptServer, relay: ScriptServer) {
            (try ScriptServer(script: Self.proxy, arguments: [pair.cert, pair.key, devnet.rpcURL]),
             try ScriptServer(script: Self.proxy, arguments: [pair.cert, pair.key, devnet.relayURL]))
        }
        func worker(_ name: String, _ servers: (rpc: ScriptServer, relay: ScriptServer), ca: String, extra: [String] = []) throws -> WorkerProcess {
            try harness.startWorker(name: name, extra: [
                "--rpc-url", "https://127.0.0.1:\(servers.rpc.port)", "--relay-url", "https://127.0.0.1:\(servers.relay.port)",
                "--ca-file", ca,
            ] + extra)
        }

        // The right CA: a job goes all the way through TLS.
        let good = try proxies(right)
        defer { good.rpc.stop(); good.relay.stop() }
        let id = try JobStore.submit(try harness.db(), JobSubmission(kind: "gpt", taskArgs: PipelineHarness.gptArgs("over TLS")))
        let ok = try worker("tls", good, ca: right.cert, extra: ["--exit-when-idle"])
        #expect(ok.wait(timeout: 120) == 0, "\(ok.output)")
        #expect(try JobStore.job(try harness.db(), id: id)?.status == .succeeded)

        // Another CA, or the right CA for another host name: the node is never reached.
        let strangers = try proxies(misnamed)
        defer { strangers.rpc.stop(); strangers.relay.stop() }
        for (name, servers, ca) in [("wrong-ca", good, other.cert), ("wrong-host", strangers, misnamed.cert)] {
            let refused = try worker(name, servers, ca: ca)
            #expect(refused.waitForOutput(containing: "retrying", timeout: 60), "\(name): \(refused.output)")
            refused.signal(SIGTERM)
            _ = refused.wait(timeout: 60)
            let lower = refused.output.lowercased()
            #expect(lower.contains("certificate") || lower.contains("ssl") || lower.contains("tls"), "\(name): \(refused.output)")
            #expect(!refused.output.contains("started:"), "\(name)")
        }
    }
}
