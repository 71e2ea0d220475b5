"""An independent client for the devnet tests: eth-account, eth-abi, http.client.

Deliberately does not import devnetlib, so the tests check the devnet from
the outside the way the Swift worker will talk to it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

SCRIPTS_DIR = Path(__file__).resolve().parents[2]
ZERO32 = b"\x00" * 32

TASK_INFO = "(uint256,uint256,address,bytes32,bytes32,uint256,bool,address[],bytes32[],bytes32[],uint256[],bytes[],uint256[],address,bool,uint256,uint256,uint256)"
TOPIC = {
    name: keccak(sig.encode())
    for name, sig in {
        "TaskPending": "TaskPending(uint256,uint256,address,bytes32,bytes32)",
        "TaskStarted": "TaskStarted(uint256,uint256,address,address,bytes32,bytes32,uint256)",
        "TaskSuccess": "TaskSuccess(uint256,bytes,address)",
        "TaskAborted": "TaskAborted(uint256,string)",
        "TaskResultUploaded": "TaskResultUploaded(uint256)",
        "TaskResultCommitmentsReady": "TaskResultCommitmentsReady(uint256)",
        "TaskNodeSuccess": "TaskNodeSuccess(uint256,address,uint256)",
        "TaskNodeCancelled": "TaskNodeCancelled(uint256,address)",
    }.items()
}
# era-D task arguments (stable-diffusion-task @68b52d2: base_model is a string, cfg > 0)
SD_ARGS = {
    "base_model": "crynux-ai/sdxl-turbo",
    "prompt": "a red fox in the snow",
    "negative_prompt": "",
    "task_config": {"num_images": 2, "seed": 42, "steps": 1, "cfg": 1},
}
# the same in the @8fcf6e7 (Aug 2024) form, refused by the era-D relay
SD_ARGS_V2 = {
    "version": "2.0.0",
    "base_model": {"name": "crynux-ai/sdxl-turbo"},
    "prompt": "a red fox in the snow",
    "negative_prompt": "",
    "task_config": {"num_images": 2, "seed": 42, "steps": 1, "cfg": 0},
}
GPT_ARGS = {"model": "gpt2", "messages": [{"role": "user", "content": "hello devnet"}]}


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


class RPCFailure(Exception):
    def __init__(self, error: dict):
        super().__init__(error.get("message"))
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


class HTTP:
    """One keep-alive connection per thread to one base URL."""

    def __init__(self, base: str, timeout: float = 30):
        u = urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float | None = None):
        for attempt in (0, 1):
            conn = getattr(self.local, "conn", None)
            if conn is None or timeout is not None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
                if timeout is None:
                    self.local.conn = conn
            try:
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
                if timeout is not None:
                    conn.close()
                return resp.status, dict(resp.getheaders()), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.local.conn = None
                if attempt:
                    raise


class Client:
    def __init__(self, info: dict):
        self.info = info
        self.rpc_http = HTTP(info["rpc_url"])
        self.relay_http = HTTP(info["relay_url"])
        self.admin_http = HTTP(info["admin_url"])
        self.task = to_checksum_address(info["task_contract"]) if info.get("task_contract") else None
        self.queue = to_checksum_address(info["task_queue_contract"]) if info.get("task_queue_contract") else None
        self.chain_id = info["chain_id"]
        self._id = 0

    # ------------------------------------------------------------ JSON-RPC

    def rpc_raw(self, payload, timeout=None):
        status, _, body = self.rpc_http.request(
            "POST", "/", json.dumps(payload).encode(), {"Content-Type": "application/json"}, timeout=timeout
        )
        return status, body

    def rpc(self, method: str, *params):
        self._id += 1
        status, body = self.rpc_raw({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)})
        assert status == 200, (status, body)
        reply = json.loads(body)
        if "error" in reply:
            raise RPCFailure(reply["error"])
        return reply["result"]

    def call(self, to: str, data: bytes, sender: str | None = None, block="latest") -> bytes:
        req = {"to": to, "data": "0x" + data.hex()}
        if sender:
            req["from"] = sender
        return bytes.fromhex(self.rpc("eth_call", req, block)[2:])

    def nonce(self, address: str) -> int:
        return int(self.rpc("eth_getTransactionCount", address, "pending"), 16)

    def sign(self, account, to, data=b"", value=0, nonce=None, gas=2_000_000, legacy=False, gas_price=None, chain_id=None, **extra):
        tx = {
            "chainId": self.chain_id if chain_id is None else chain_id,
            "nonce": self.nonce(account.address) if nonce is None else nonce,
            "gas": gas,
            "to": to,
            "value": value,
            "data": data,
        }
        if legacy:
            tx["gasPrice"] = gas_price or int(self.rpc("eth_gasPrice"), 16)
        else:
            tx.update(type=2, maxFeePerGas=gas_price or 2 * 10**9, maxPriorityFeePerGas=extra.pop("tip", 10**9))
        tx.update(extra)
        return bytes(account.sign_transaction(tx).raw_transaction)

    def send_raw(self, raw: bytes) -> str:
        return self.rpc("eth_sendRawTransaction", "0x" + raw.hex())

    def receipt(self, tx_hash: str, timeout: float = 20) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.rpc("eth_getTransactionReceipt", tx_hash)
            if r is not None:
                return r
            time.sleep(0.05)
        raise TimeoutError(f"no receipt for {tx_hash}")

    def transact(self, account, to, data=b"", value=0, **kw) -> dict:
        return self.receipt(self.send_raw(self.sign(account, to, data, value, **kw)))

    # ------------------------------------------------------------ Task contract

    @staticmethod
    def create_task_data(task_type, task_hash, vram, cap, data_hash=ZERO32) -> bytes:
        return selector("createTask(uint256,bytes32,bytes32,uint256,uint256)") + encode(
            ["uint256", "bytes32", "bytes32", "uint256", "uint256"], [task_type, task_hash, data_hash, vram, cap]
        )

    def create_task(self, account, args: str, task_type=0, vram=8, cap=None, fee=10**16, **kw):
        """Returns (receipt, task_id or None)."""
        if cap is None:
            cap = json.loads(args).get("task_config", {}).get("num_images", 6) if task_type == 0 else 1
        data = self.create_task_data(task_type, keccak(args.encode()), vram, cap)
        receipt = self.transact(account, self.task, data, fee, **kw)
        return receipt, self.task_id_from(receipt)

    def task_id_from(self, receipt) -> int | None:
        for lg in receipt["logs"]:
            if lg["address"].lower() == self.task.lower() and lg["topics"][0] == "0x" + TOPIC["TaskPending"].hex():
                return int(lg["data"][2:66], 16)
        return None

    def get_task(self, task_id: int) -> dict:
        out = self.call(self.task, selector("getTask(uint256)") + encode(["uint256"], [task_id]))
        (t,) = decode([TASK_INFO], out)
        names = ["id", "taskType", "creator", "taskHash", "dataHash", "vramLimit", "isSuccess", "selectedNodes", "commitments",
                 "nonces", "commitmentSubmitRounds", "results", "resultDisclosedRounds", "resultNode", "aborted", "timeout",
                 "balance", "totalBalance"]
        return dict(zip(names, t))

    def queued(self, task_id: int) -> bool:
        (b,) = decode(["bool"], self.call(self.queue, selector("include(uint256)") + encode(["uint256"], [task_id])))
        return b

    def outcome_logs(self, task_id: int) -> list[dict]:
        return self.rpc("eth_getLogs", {
            "fromBlock": "0x0", "address": self.task,
            "topics": [["0x" + TOPIC["TaskSuccess"].hex(), "0x" + TOPIC["TaskAborted"].hex()], "0x" + task_id.to_bytes(32, "big").hex()],
        })

    def wait_outcome(self, task_id: int, timeout: float = 20) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            logs = self.outcome_logs(task_id)
            if logs:
                return logs[0]
            time.sleep(0.1)
        raise TimeoutError(f"task {task_id}: no TaskSuccess/TaskAborted")

    # ------------------------------------------------------------ relay

    @staticmethod
    def go_quote(s: str) -> str:
        # Go encoding/json string escaping, written independently of devnetlib
        out = json.dumps(s, ensure_ascii=False)
        return out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")

    @staticmethod
    def relay_sign(account, payload: bytes, timestamp: int, v_offset: int = 0, high_s: bool = False) -> str:
        digest = keccak(payload + str(timestamp).encode())
        signed = Account.unsafe_sign_hash(digest, account.key)
        r, s, v = signed.r, signed.s, signed.v - 27
        if high_s:
            n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
            s, v = n - s, 1 - v
        return "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + bytes([v + v_offset]).hex()

    def upload(self, account, task_id: int, args: str, timestamp: int | None = None, **sign_kw):
        ts = int(time.time()) if timestamp is None else timestamp
        payload = ('{"task_args":' + self.go_quote(args) + ',"task_id":' + str(task_id) + "}").encode()
        body = json.dumps({"task_args": args, "task_id": task_id, "timestamp": ts, "signature": self.relay_sign(account, payload, ts, **sign_kw)})
        status, _, data = self.relay_http.request("POST", "/v1/inference_tasks", body.encode(), {"Content-Type": "application/json"})
        return status, json.loads(data) if data else None

    def upload_when_synced(self, account, task_id: int, args: str, timeout: float = 10):
        deadline = time.time() + timeout
        while True:
            status, body = self.upload(account, task_id, args)
            if status == 400 and body["data"]["message"] == "Task not found on the Blockchain" and time.time() < deadline:
                time.sleep(0.1)
                continue
            return status, body

    def result(self, account, task_id: int, index: int, timestamp: int | None = None):
        ts = int(time.time()) if timestamp is None else timestamp
        payload = ('{"image_num":"' + str(index) + '","task_id":' + str(task_id) + "}").encode()
        q = urlencode({"timestamp": ts, "signature": self.relay_sign(account, payload, ts)})
        status, headers, data = self.relay_http.request("GET", f"/v1/inference_tasks/{task_id}/results/{index}?{q}")
        return status, headers, data

    # ------------------------------------------------------------ admin

    def admin(self, method: str, path: str, body=None):
        status, _, data = self.admin_http.request(method, path, json.dumps(body).encode() if body is not None else None,
                                                  {"Content-Type": "application/json"})
        return status, json.loads(data)

    def knobs(self, **values) -> dict:
        status, body = self.admin("POST", "/admin/config", values)
        assert status == 200, body
        return body

    def stats(self) -> dict:
        return self.admin("GET", "/admin/stats")[1]


class DevnetProcess:
    """A devnet started with `python -m devnetlib` in its own state dir."""

    def __init__(self, *flags: str, state_dir: str | None = None):
        self.tmp = None
        if state_dir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="devnet-test-")
            state_dir = self.tmp.name
        self.state_dir = Path(state_dir)
        cache = os.environ.get("DEVNET_CACHE_DIR") or str(self.state_dir)
        env = dict(os.environ, PYTHONPATH=str(SCRIPTS_DIR))
        self.log = open(self.state_dir / "devnet.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devnetlib", "--state-dir", str(self.state_dir), "--cache-dir", cache, *flags],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.time() + 60
        info_file = self.state_dir / "devnet.json"
        while True:
            if info_file.exists():
                info = json.loads(info_file.read_text())
                if info.get("pid") == self.proc.pid:
                    break
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("devnet did not start:\n" + (self.state_dir / "devnet.log").read_text())
            time.sleep(0.05)
        self.info = info
        self.client = Client(info)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        keep = os.environ.get("DEVNET_KEEP_LOG")
        if keep:  # debugging aid: copy the devnet's log out of the temp dir
            Path(keep).write_text((self.state_dir / "devnet.log").read_text())
        if self.tmp:
            self.tmp.cleanup()
