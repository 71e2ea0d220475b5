import Foundation
import TestSupport

/// A throwaway HTTP/1.1 server (Python's http.server) on 127.0.0.1 with an OS-chosen port.
/// It exits when the test process closes its stdin, so a crashed test run leaves nothing behind.
final class TestServer: @unchecked Sendable {
    private let server: ScriptServer
    var process: Process { server.process }
    var port: Int { server.port }
    var base: String { "\(scheme)://127.0.0.1:\(port)" }
    let scheme: String

    init(tls: (cert: String, key: String)? = nil) throws {
        scheme = tls == nil ? "http" : "https"
        server = try ScriptServer(script: Self.script, arguments: tls.map { [$0.cert, $0.key] } ?? [])
    }

    func stop() { server.stop() }

    /// Routes: /bytes?n=&seed= (Content-Length, X-CRC32 header), /stream?n= (chunked, no length),
    /// /sleep?ms=, /status?code=, /stats (connections and requests seen), /multi (repeated header),
    /// anything else echoes the request body with X-Method and X-Echo headers.
    static let script = #"""
import http.server, os, random, socketserver, ssl, sys, threading, time, zlib, json
from urllib.parse import urlparse, parse_qs

stats = {"connections": 0, "requests": 0}
lock = threading.Lock()

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def setup(self):
        super().setup()
        with lock: stats["connections"] += 1
    def send(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers: self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
    def handle_any(self):
        with lock: stats["requests"] += 1
        u = urlparse(self.path); q = {k: v[0] for k, v in parse_qs(u.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if u.path == "/bytes":
            data = random.Random(int(q.get("seed", "1"))).randbytes(int(q["n"]))
            self.send(200, data, [("X-CRC32", str(zlib.crc32(data))), ("Content-Type", "application/octet-stream")])
        elif u.path == "/stream":
            n = int(q["n"]); data = random.Random(7).randbytes(n)
            self.send_response(200); self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            for i in range(0, n, 65536):
                part = data[i:i + 65536]
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/sleep":
            time.sleep(int(q["ms"]) / 1000); self.send(200, b"slept")
        elif u.path == "/status":
            code = int(q["code"]); self.send(code, b"status %d" % code)
        elif u.path == "/stats":
            with lock: self.send(200, json.dumps(stats).encode())
        elif u.path == "/multi":
            self.send(200, b"", [("X-Multi", "a"), ("X-Multi", "b")])
        else:
            self.send(200, body, [("X-Method", self.command), ("X-Echo", self.headers.get("X-Echo", "")),
                                  ("X-Content-Type", self.headers.get("Content-Type", ""))])
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address): pass  # clients aborting transfers on purpose

server = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
def watch_stdin():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=watch_stdin, daemon=True).start()
server.serve_forever()
"""#
}

struct TestServerError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// CRC-32 (IEEE, as zlib.crc32) to compare large bodies with the server's digest.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var table = [UInt32](repeating: 0, count: 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        table[i] = c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

