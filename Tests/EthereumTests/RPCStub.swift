import Foundation
import TestSupport

/// A canned JSON-RPC server (Python http.server on 127.0.0.1) for testing the client's plumbing:
/// typed result parsing, batches, error objects and transport failures. It is not a chain.
final class RPCStub: @unchecked Sendable {
    private let server: ScriptServer
    var port: Int { server.port }
    var url: String { "http://127.0.0.1:\(port)/" }
    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    init() throws { server = try ScriptServer(script: Self.script) }

    func stop() { server.stop() }

    static let revertData = "0x08c379a0" + "0000000000000000000000000000000000000000000000000000000000000020"
        + "0000000000000000000000000000000000000000000000000000000000000011"
        + "496e76616c6964207461736b2074797065000000000000000000000000000000"  // "Invalid task type"
    static let panicData = "0x4e487b71" + "0000000000000000000000000000000000000000000000000000000000000012"
    static let txHash = "0x" + String(repeating: "ab", count: 32)
    static let contract = "0x" + String(repeating: "11", count: 20)

    /// Paths: `/` JSON-RPC (batches answered in reverse order), `/http500`, `/http429`, `/slow`, `/notjson`,
    /// `/nobatch` (answers any batch with one error object), `/http400rpc` (JSON-RPC error with status 400),
    /// `/last` (the previous request body, for checking what the client sent).
    static let script = #"""
import http.server, json, os, socketserver, sys, threading, time

REVERT = "\#(revertData)"
PANIC = "\#(panicData)"
TXHASH = "\#(txHash)"
CONTRACT = "\#(contract)"
last = {"body": b"null"}

def log(i, topics, data):
    return {"address": CONTRACT, "topics": topics, "data": data, "blockNumber": "0x10",
            "transactionHash": TXHASH, "logIndex": hex(i), "removed": False, "blockHash": "0x" + "cd" * 32,
            "transactionIndex": "0x0"}

def answer(req):
    m, p = req.get("method"), req.get("params", [])
    def ok(r): return {"jsonrpc": "2.0", "id": req.get("id"), "result": r}
    def err(code, msg, data=None):
        e = {"code": code, "message": msg}
        if data is not None: e["data"] = data
        return {"jsonrpc": "2.0", "id": req.get("id"), "error": e}
    if m == "eth_chainId": return ok("0x2710")
    if m == "eth_blockNumber": return ok("0x1b4")
    if m == "eth_getBalance": return ok("0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
    if m == "eth_getTransactionCount": return ok("0x7" if p[1] == "pending" else "0x5")
    if m == "eth_gasPrice": return ok("0x3b9aca00")
    if m == "eth_maxPriorityFeePerGas": return ok("0x0")
    if m == "eth_feeHistory":
        return ok({"oldestBlock": "0x10", "baseFeePerGas": ["0x1", "0x2", "0x3"], "gasUsedRatio": [0.5, 0.25],
                   "reward": [["0xa", "0xb"], ["0xc", "0xd"]]})
    if m == "eth_estimateGas":
        if p[0].get("data") == "0xdead": return err(3, "execution reverted: Invalid task type", REVERT)
        return ok("0x5208")
    if m == "eth_sendRawTransaction":
        if p[0] == "0x00": return err(-32000, "nonce too low")
        return ok(TXHASH)
    if m == "eth_getTransactionReceipt":
        if p[0] == "0x" + "00" * 32: return ok(None)
        return ok({"transactionHash": p[0], "status": "0x1", "blockNumber": "0x10", "gasUsed": "0x5208",
                   "effectiveGasPrice": "0x3b9aca00", "contractAddress": None, "from": CONTRACT, "to": CONTRACT,
                   "logs": [log(0, ["0x" + "01" * 32, "0x" + "00" * 31 + "2a"], "0x1234")]})
    if m == "eth_call":
        data = p[0].get("data")
        if data == "0xdead": return err(3, "execution reverted: Invalid task type", REVERT)
        if data == "0xbeef": return err(3, "execution reverted", PANIC)
        if data == "0xcafe": return err(-32015, "VM execution error.", "Reverted " + REVERT)
        if data == "0xf00d": return err(3, "execution reverted", {"data": REVERT, "message": "nested"})
        if data == "0xabcd": return err(-32000, "execution reverted: No available node")
        if data == "0x": return ok("0x")
        return ok("0x" + "00" * 31 + "2a")
    if m == "eth_getLogs" and p[0].get("address") == "0x" + "22" * 20:
        # An Ethermint-like node: at most 100 blocks apart; one log per block asked for.
        f = p[0]
        start = int(f["fromBlock"], 16)
        end = 0x1b4 if f["toBlock"] == "latest" else int(f["toBlock"], 16)
        if end - start > 100: return err(-32000, "maximum [from, to] blocks distance: 100")
        return ok([dict(log(0, ["0x" + "02" * 32], "0x"), blockNumber=hex(b)) for b in range(start, end + 1)])
    if m == "eth_getLogs":
        return ok([log(0, ["0x" + "02" * 32], "0x"), log(1, ["0x" + "03" * 32, "0x" + "04" * 32], "0xff")])
    if m == "bad_result": return {"jsonrpc": "2.0", "id": req.get("id")}
    if m == "wrong_id": return {"jsonrpc": "2.0", "id": 999999, "result": "0x1"}
    return err(-32601, "the method " + str(m) + " does not exist/is not available")

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.send(200, last["body"])
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/last": last["body"] = body
        if self.path == "/http500": return self.send(500, b"upstream exploded")
        if self.path == "/http429": return self.send(429, b"slow down")
        if self.path == "/notjson": return self.send(200, b"<html>hello</html>")
        if self.path == "/slow":
            time.sleep(3); return self.send(200, b"{}")
        req = json.loads(body)
        if self.path == "/http400rpc":
            return self.send(400, json.dumps({"jsonrpc": "2.0", "id": None,
                                              "error": {"code": -32600, "message": "invalid request"}}).encode())
        if isinstance(req, list):
            if self.path == "/nobatch":
                return self.send(200, json.dumps({"jsonrpc": "2.0", "id": None,
                                                  "error": {"code": -32600, "message": "batch not supported"}}).encode())
            out = [answer(r) for r in req]
            if self.path == "/dropone": out = out[1:]
            out.reverse()
        else:
            out = answer(req)
        self.send(200, json.dumps(out).encode())

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address): pass

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
def watch():
    sys.stdin.buffer.read(); os._exit(0)
threading.Thread(target=watch, daemon=True).start()
server.serve_forever()
"""#
}
