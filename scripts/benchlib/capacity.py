#!/usr/bin/env python3
"""The local network's own capacity for era-D createTask, measured by a plain client.

    .venv-devnet/bin/python scripts/benchlib/capacity.py --devnet $DEVNET_DIR/devnet.json \
        --txs N --concurrency C --account-index K [--fee-per-result-wei W] [--estimate-once]

Sends N createTask transactions from account K with at most C in flight, each the one the
worker would send for a one-image SD job, and prints one JSON line on stdout (txs, concurrency,
seconds, tx_per_s, latency_p50_s, latency_p95_s from send to receipt, reverted, errors, ...).
Exits non-zero, with the reason on stderr, when the devnet cannot be reached, the node refuses
a call or a transaction, or a transaction reverts or is not mined in time. See README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

# What the worker sends (Sources/Crynux/TaskContract.swift, Sources/Worker/CreateStage.swift,
# Sources/Worker/WorkerConfig.swift, Sources/Crynux/StableDiffusionArguments.swift).
CREATE_TASK = "createTask(uint256,bytes32,bytes32,uint256,uint256)"
CREATE_TASK_SELECTOR = bytes.fromhex("043b438f")
TASK_TYPE_SD = 0
VRAM_LIMIT_SD15 = 8  # GB, for base model crynux-ai/stable-diffusion-v1-5
CAP = 1  # task_config.num_images
FEE_PER_RESULT_WEI = 41 * 10**17  # WorkerConfig.feePerResultWei: 4.1 CNX per image
MINIMUM_GAS_LIMIT = 1_500_000  # WorkerConfig.minimumGasLimit: floor under twice the estimate

POLL_S = 0.02
RECEIPT_TIMEOUT_S = 120
MAX_POLL_ERRORS_IN_A_ROW = 10


class Failure(Exception):
    """A reason to stop the whole run."""


class RPC:
    """JSON-RPC over one keep-alive HTTP connection per thread."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.local = threading.local()

    def _post(self, body: bytes) -> bytes:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request("POST", self.path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.local.conn = None
            raise Failure(f"JSON-RPC at http://{self.host}:{self.port}{self.path} unreachable: {exc!r}") from None
        if response.status != 200:
            raise Failure(f"JSON-RPC answered HTTP {response.status}: {data[:200]!r}")
        return data

    def batch(self, calls: list[tuple[str, list]]) -> list:
        """Results in order; any error object is a Failure naming the method."""
        body = json.dumps([{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)])
        answers = sorted(json.loads(self._post(body.encode())), key=lambda a: a["id"])
        for (method, _), answer in zip(calls, answers):
            if "error" in answer:
                raise Failure(f"{method} refused: {answer['error']}")
        return [a["result"] for a in answers]

    def call(self, method: str, params: list):
        return self.batch([(method, params)])[0]


def task_arguments(account_index: int, serial: int) -> str:
    """A one-image SD argument string; a distinct serial gives each task its own hash."""
    return json.dumps({"base_model": "crynux-ai/stable-diffusion-v1-5", "prompt": f"capacity {account_index}-{serial}",
                       "task_config": {"num_images": CAP}}, separators=(",", ":"))


def create_task_data(task_hash: bytes) -> bytes:
    # dataHash is zero: the worker never sets it (TaskContract.createTaskCall's default).
    return CREATE_TASK_SELECTOR + encode(["uint256", "bytes32", "bytes32", "uint256", "uint256"],
                                         [TASK_TYPE_SD, task_hash, b"\0" * 32, VRAM_LIMIT_SD15, CAP])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def admin_stats(url: str | None) -> dict:
    """Task counters of the devnet (free nodes matter: createTask gas grows with them)."""
    if not url:
        return {}
    try:
        with urllib.request.urlopen(url + "/admin/stats", timeout=10) as r:
            return json.load(r).get("tasks", {})
    except OSError:
        return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devnet", required=True, help="path of $DEVNET_DIR/devnet.json")
    ap.add_argument("--txs", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--account-index", type=int, default=0)
    ap.add_argument("--fee-per-result-wei", type=int, default=FEE_PER_RESULT_WEI)
    ap.add_argument("--estimate-once", action="store_true",
                    help="estimate gas and price once for the run (the worker asks for every task)")
    args = ap.parse_args()
    if args.txs < 1 or args.concurrency < 1:
        ap.error("--txs and --concurrency must be at least 1")
    assert keccak(text=CREATE_TASK)[:4] == CREATE_TASK_SELECTOR

    try:
        with open(args.devnet) as f:
            devnet = json.load(f)
        account = Account.from_key(devnet["accounts"][args.account_index]["private_key"])
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise Failure(f"cannot use account {args.account_index} of {args.devnet}: {exc!r}") from None
    contract = devnet["task_contract"]
    chain_id = int(devnet["chain_id"])
    rpc = RPC(devnet["rpc_url"])

    node_chain = int(rpc.call("eth_chainId", []), 16)
    if node_chain != chain_id:
        raise Failure(f"the node's chain id is {node_chain}, devnet.json says {chain_id}")
    first_nonce = int(rpc.call("eth_getTransactionCount", [account.address, "pending"]), 16)
    value = args.fee_per_result_wei * CAP
    stats_start = admin_stats(devnet.get("admin_url"))

    def conditions(data: bytes) -> tuple[int, int]:
        """Gas limit and price as CreateStage.sign sets them (one batch, as TaskNetwork.createConditions)."""
        call = {"from": account.address, "to": contract, "data": "0x" + data.hex(), "value": hex(value)}
        estimate, price = rpc.batch([("eth_estimateGas", [call]), ("eth_gasPrice", [])])
        return max(2 * int(estimate, 16), MINIMUM_GAS_LIMIT), int(price, 16)

    fixed = conditions(create_task_data(keccak(text=task_arguments(args.account_index, first_nonce)))) \
        if args.estimate_once else None

    lock = threading.Lock()  # the counters below
    send_lock = threading.Lock()  # the nonce counter: held from taking a nonce to the node's answer
    state = {"next": 0, "nonce": first_nonce, "reverted": 0, "errors": 0, "gas_used": 0}
    latencies: list[float] = []
    failures: list[str] = []

    def receipt_of(tx_hash: str, sent_at: float) -> dict:
        """Polls until mined. A failed poll is counted and retried (a few in a row), not fatal."""
        in_a_row = 0
        while True:
            try:
                receipt = rpc.call("eth_getTransactionReceipt", [tx_hash])
                in_a_row = 0
            except Failure:
                in_a_row += 1
                with lock:
                    state["errors"] += 1
                if in_a_row >= MAX_POLL_ERRORS_IN_A_ROW:
                    raise
                receipt = None
            if receipt is not None:
                return receipt
            if time.monotonic() - sent_at > RECEIPT_TIMEOUT_S:
                raise Failure(f"tx {tx_hash} not mined within {RECEIPT_TIMEOUT_S} s")
            time.sleep(POLL_S)

    def slot():
        while not failures:
            with lock:
                if state["next"] >= args.txs:
                    return
                index = state["next"]
                state["next"] += 1
            # first_nonce + index is distinct within the run and across runs of this account.
            data = create_task_data(keccak(text=task_arguments(args.account_index, first_nonce + index)))
            gas, price = fixed or conditions(data)
            # Sign and send under the nonce lock, so that the node sees the nonces in order:
            # Ethermint refuses a gap, and geth would park a later nonce until the gap fills.
            with send_lock:
                if failures:
                    return
                # Legacy EIP-155, as the worker signs by default (WorkerConfig.useEIP1559 = false).
                tx = {"nonce": state["nonce"], "gasPrice": price, "gas": gas, "to": contract, "value": value,
                      "data": data, "chainId": chain_id}
                raw = "0x" + account.sign_transaction(tx).raw_transaction.hex()
                sent_at = time.monotonic()
                tx_hash = rpc.call("eth_sendRawTransaction", [raw])
                state["nonce"] += 1
            receipt = receipt_of(tx_hash, sent_at)
            with lock:
                latencies.append(time.monotonic() - sent_at)
                state["gas_used"] += int(receipt["gasUsed"], 16)
                if receipt["status"] != "0x1":
                    state["reverted"] += 1

    def guarded():
        try:
            slot()
        except Exception as exc:  # any failure stops every slot, and the run
            with lock:
                failures.append(str(exc) if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(min(args.concurrency, args.txs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    if failures:
        raise Failure(failures[0])

    stats_end = admin_stats(devnet.get("admin_url"))
    print(json.dumps({
        "txs": args.txs, "concurrency": args.concurrency, "seconds": round(seconds, 3),
        "tx_per_s": round(args.txs / seconds, 2),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(percentile(latencies, 0.95), 3),
        "reverted": state["reverted"], "errors": state["errors"],
        "estimate": "once" if args.estimate_once else "each tx",
        "gas_used_mean": state["gas_used"] // args.txs,
        "free_nodes_start": stats_start.get("free_nodes"), "free_nodes_end": stats_end.get("free_nodes"),
        "queued_end": stats_end.get("queued"),
    }))
    if state["reverted"]:
        print(f"capacity: {state['reverted']} of {args.txs} createTask transactions reverted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        sys.exit(2)
