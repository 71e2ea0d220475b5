"""Admin API (JSON over HTTP, own port): knobs, funding, mining, results, stats.

    GET  /admin/config            all knobs
    POST /admin/config            partial update {"knob": value, ...} -> all knobs
    POST /admin/config/reset      back to the start-up values -> all knobs
    POST /admin/fund              {"address": "0x..", "wei": "<decimal>"} -> mined transfer
    POST /admin/mine              mine a block now -> {"block_number": n}
    GET  /admin/results/{id}      {"files": [{"index", "sha256", "size"}]} as uploaded by the nodes
    GET  /admin/stats             counters (chain, pool, relay, nodes, faults fired)
    POST /admin/tasks/{id}/outcome  {"outcome": "success|error|illegal|stuck"} -> {"task_id", "outcome", "applied"}
    POST /admin/cnx               hydrogen, lithium: {"address": "0x..", "balance": "<decimal wei>"} -> CNX balance set
                                  (minted from / drained to the operator) -> {"tx_hash", "block_number", "balance"}
  --profile lithium (tasks are named by their task_id_commitment):
    GET  /admin/lithium/tasks/{c}            the Relay's row: status, abort reason, fee, node, seed, score, files' sha256
    POST /admin/lithium/tasks/{c}/outcome    {"outcome": "success|error|wrong|stuck|no_upload"}: the node's answer
    GET  /admin/lithium/accounts/{address}   {"balance", "events"}: the Relay Account and its ledger
    POST /admin/lithium/accounts/{address}   {"balance": "<decimal wei>"}: set the Relay Account's balance
    POST /admin/lithium/creator_keys         {"private_keys": ["0x.."]}: creators whose seeds vrf_select_share may pick
    POST /admin/lithium/whitelist            {"addresses": ["0x.."] | null}: task_whitelist_enabled (null = off)
    POST /admin/lithium/fault_creators       {"addresses": ["0x.."] | null}: only these creators' tasks and requests
                                             meet the node-fault and lost-answer knobs (null = everyone's)
"""

from __future__ import annotations

import hashlib
import json
import re

from . import hexutil as hx
from .config import wei
from .httpbase import Handler


class AdminError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Admin:
    def __init__(self, devnet):
        self.devnet = devnet

    def route(self, method: str, path: str, body: bytes):
        d = self.devnet
        if path == "/admin/config" and method == "GET":
            return d.config.snapshot()
        if path == "/admin/config" and method == "POST":
            update = self._json(body)
            if not isinstance(update, dict):
                raise AdminError(400, "expected a JSON object of knob values")
            try:
                return d.config.update(update)
            except ValueError as exc:
                raise AdminError(400, str(exc)) from None
        if path == "/admin/config/reset" and method == "POST":
            return d.config.reset()
        if path == "/admin/fund" and method == "POST":
            return self._fund(self._json(body))
        if path == "/admin/mine" and method == "POST":
            return {"block_number": d.chain.mine()}
        if path == "/admin/stats" and method == "GET":
            return d.stats()
        m = re.fullmatch(r"/admin/tasks/([0-9]+)/outcome", path)
        if m and method == "POST":
            return self._outcome(int(m.group(1)), self._json(body))
        if path == "/admin/cnx" and method == "POST":
            return self._cnx(self._json(body))
        if path.startswith("/admin/lithium/"):
            if d.profile != "lithium":
                raise AdminError(400, "only with --profile lithium")
            return self._lithium(method, path, self._json(body) if method == "POST" else None)
        m = re.fullmatch(r"/admin/results/([0-9]+)", path)
        if m and method == "GET":
            files = d.relay.results.get(int(m.group(1)))
            if files is None:
                raise AdminError(404, f"no results uploaded for task {m.group(1)}")
            return {"files": [{"index": i, "sha256": hashlib.sha256(f).hexdigest(), "size": len(f)} for i, f in enumerate(files)]}
        raise AdminError(404, f"no route {method} {path}")

    @staticmethod
    def _json(body: bytes):
        try:
            return json.loads(body or b"null")
        except ValueError:
            raise AdminError(400, "body is not JSON") from None

    def _outcome(self, task_id: int, req):
        if not isinstance(req, dict) or not isinstance(req.get("outcome"), str):
            raise AdminError(400, 'expected {"outcome": "success" | "error" | "illegal" | "stuck"}')
        try:
            applied = self.devnet.nodes.force_outcome(task_id, req["outcome"])
        except ValueError as exc:
            raise AdminError(400, str(exc)) from None
        return {"task_id": task_id, "outcome": req["outcome"], "applied": applied}

    def _cnx(self, req):
        d = self.devnet
        if d.profile not in ("hydrogen", "lithium"):
            raise AdminError(400, "the CNX token exists only with --profile hydrogen or lithium")
        if not isinstance(req, dict):
            raise AdminError(400, 'expected {"address": "0x...", "balance": "<decimal wei>"}')
        try:
            address = hx.parse_address(req.get("address"), "address")
        except hx.ParamError as exc:
            raise AdminError(400, str(exc)) from None
        try:
            amount = wei(req.get("balance"))
        except ValueError:
            raise AdminError(400, "balance must be a non-negative decimal string (wei)") from None
        receipt = d.deployment.set_cnx_balance(address, amount)
        if receipt["status"] != "0x1":
            raise AdminError(500, "devSetBalance reverted (operator out of CNX?)")
        balance = d.deployment.call(d.deployment.token, "balanceOf", address)
        return {"tx_hash": receipt["transactionHash"], "block_number": int(receipt["blockNumber"], 16), "balance": str(balance)}

    def _lithium(self, method: str, path: str, req):
        from eth_keys import keys as eth_keys
        from eth_utils import to_checksum_address

        relay = self.devnet.relay
        if (m := re.fullmatch(r"/admin/lithium/tasks/(0x[0-9a-fA-F]{64})", path)) and method == "GET":
            row = relay.admin_task(m.group(1))
            if row is None:
                raise AdminError(404, "no such task")
            return row
        if (m := re.fullmatch(r"/admin/lithium/tasks/(0x[0-9a-fA-F]{64})/outcome", path)) and method == "POST":
            outcomes = ("success", "error", "wrong", "stuck", "no_upload")
            if not isinstance(req, dict) or req.get("outcome") not in outcomes:
                raise AdminError(400, "expected {\"outcome\": " + " | ".join(outcomes) + "}")
            return {"applied": relay.force_outcome(m.group(1), req["outcome"])}
        if m := re.fullmatch(r"/admin/lithium/accounts/(0x[0-9a-fA-F]{40})", path):
            address = to_checksum_address(m.group(1))
            if method == "GET":
                return relay.account(address)
            try:
                return relay.set_balance(address, wei((req or {}).get("balance")))
            except ValueError:
                raise AdminError(400, "balance must be a non-negative decimal string (wei)") from None
        if path == "/admin/lithium/creator_keys" and method == "POST":
            added = []
            for text in (req or {}).get("private_keys") or []:
                try:
                    key = eth_keys.PrivateKey(bytes.fromhex(text.removeprefix("0x")))
                except (ValueError, TypeError, AttributeError):
                    raise AdminError(400, "private_keys: expected 0x-hex secp256k1 keys") from None
                with relay.lock:
                    relay.creator_keys[key.public_key.to_checksum_address()] = key.to_bytes()
                added.append(key.public_key.to_checksum_address())
            return {"added": added}
        if path == "/admin/lithium/whitelist" and method == "POST":
            addresses = (req or {}).get("addresses")
            with relay.lock:
                relay.whitelist = None if addresses is None else {to_checksum_address(a) for a in addresses}
            return {"whitelist": None if addresses is None else sorted(relay.whitelist)}
        if path == "/admin/lithium/fault_creators" and method == "POST":
            addresses = (req or {}).get("addresses")
            with relay.lock:
                relay.fault_creators = None if addresses is None else {to_checksum_address(a) for a in addresses}
            return {"fault_creators": None if addresses is None else sorted(relay.fault_creators)}
        raise AdminError(404, f"no route {method} {path}")

    def _fund(self, req):
        if not isinstance(req, dict):
            raise AdminError(400, 'expected {"address": "0x...", "wei": "<decimal>"}')
        try:
            address = hx.parse_address(req.get("address"), "address")
        except hx.ParamError as exc:
            raise AdminError(400, str(exc)) from None
        wei = req.get("wei")
        if isinstance(wei, str) and wei.isdigit():
            wei = int(wei)
        if isinstance(wei, bool) or not isinstance(wei, int) or wei < 0:
            raise AdminError(400, "wei must be a non-negative decimal string")
        chain = self.devnet.chain
        tx_hash = chain.send_internal(address, b"", wei, gas=21000)
        if chain.config["block_time_ms"] > 0:
            chain.mine()
        receipt = chain.wait_receipt(tx_hash)
        return {"tx_hash": receipt["transactionHash"], "block_number": int(receipt["blockNumber"], 16)}


class AdminHandler(Handler):
    def _handle(self, method):
        admin: Admin = self.server.app
        body = self.read_body() if method == "POST" else b""
        try:
            status, result = 200, admin.route(method, self.path.split("?")[0], body or b"")
        except AdminError as exc:
            status, result = exc.status, {"error": str(exc)}
        except Exception as exc:  # report devnet bugs instead of hanging
            status, result = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self.send(status, json.dumps(result).encode())

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")
