"""--profile lithium: the live Crynux network's Relay (crynux-relay@24ffc26).

No chain transaction per task: an application signs HTTP requests, the Relay
queues, dispatches and validates tasks off chain and takes the fee from the
creator's Relay Account. What an application sees is re-implemented here:

* routes of api/v1/routes.go an application uses (create, get, selected_node,
  validate, abort_reason, results, now) and the signed v2 balance read;
* the binding (tonic: form fields for create, JSON bodies, path and query
  params; validator `required` in struct order), the handlers' checks in
  their order, status codes (400 validation_error, 500 exception, 401 from the
  v2 middleware, gin's plain 404) and their wordings;
* signatures over Go's re-marshalled JSON (sorted keys, numbers through
  float64), recovered with coincurve, the 60 s window, the signer as creator;
* statuses 0-11 and abort reasons 0-10 (models/inference_task.go), the queue
  ordered by priority = fee / (estimated node seconds x VRAM weight), then id
  (docs/task-pricing.md), one deadline per status (docs/task_timeout.md) and
  the ledger effects of each ending (service/task_status.go);
* validation (service/validate_task.go): the VRF proof verified by vrf.py
  (pure Python, independent of the libsecp256k1 the client uses), selection
  `beta mod 100 == 0`, single and group validation with SD scores compared
  per 8-byte block by Hamming distance and LLM scores by equality;
* Relay Accounts: charged at create, refunded / paid by the endings, credited
  by ERC20 CNX transfers to the deposit address on the devnet chain once
  `deposit_confirmations` blocks deep.

Nodes are simulated inside the Relay (no node API is exposed). Differences
from the real Relay are listed in README.md ("Lithium").
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import json
import logging
import math
import re
import secrets
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from . import gojson, results, vrf
from .gosig import SignaturePanic, recover_signers
from .httpbase import Handler
from .relay import BindError, MAX_BODY, SCHEMA_DIR, _go_time, _reject_constant

log = logging.getLogger("devnet.lithium")

# models/inference_task.go
(QUEUED, STARTED, PARAMETERS_UPLOADED, ERROR_REPORTED, SCORE_READY, VALIDATED, GROUP_VALIDATED,
 END_INVALIDATED, END_SUCCESS, END_ABORTED, END_GROUP_REFUND, END_GROUP_SUCCESS) = range(12)
TERMINAL = {END_INVALIDATED, END_SUCCESS, END_ABORTED, END_GROUP_REFUND, END_GROUP_SUCCESS}
(ABORT_NONE, ABORT_TIMEOUT, ABORT_MODEL_DOWNLOAD_FAILED, ABORT_INCORRECT_RESULT, ABORT_TASK_FEE_TOO_LOW,
 ABORT_GROUP_TIMEOUT, ABORT_ERROR_REPORTED, ABORT_CREATOR_CANCELLED, ABORT_CREATOR_VALIDATION_TIMEOUT,
 ABORT_RESULT_UPLOAD_TIMEOUT, ABORT_NODE_SLASHED) = range(11)
TASK_SD, TASK_LLM, TASK_SD_FT_LORA = range(3)
# models/node.go NodeStatus
NODE_AVAILABLE, NODE_BUSY = 1, 2

# relay_account event types (docs/deposit_withdraw_and_risk_control.md)
EVENT_TASK_INCOME, EVENT_DEPOSIT, EVENT_TASK_PAYMENT, EVENT_TASK_REFUND = 0, 3, 4, 5

CNX = 10**18
RELAY_ACCOUNT_START = 10_000 * CNX  # each test account's Relay Account at start
NODE_VERSION = (3, 5, 0)  # crynux-node v3.5.0
GPU_NAMES = ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090", "NVIDIA A100", "NVIDIA RTX A6000",
             "Apple M2 Max", "NVIDIA GeForce RTX 4080", "NVIDIA L40", "NVIDIA H100"]
NODE_NETWORK = "devnet"
DEPOSIT_ADDRESS = keccak(b"crynux-devnet relay deposit address")[12:]
TRANSFER_TOPIC = keccak(b"Transfer(address,address,uint256)")
# config.example.yml task_schema: what the relay reports schema errors against
SCHEMA_URLS = {
    TASK_SD: "https://raw.githubusercontent.com/crynux-network/stable-diffusion-task/main/schema/stable-diffusion-inference-task.json",
    TASK_LLM: "https://raw.githubusercontent.com/crynux-network/gpt-task/refs/tags/v3.1.0/schema/gpt-inference-task.json",
}
BASE_VRAM = 8  # config.example.yml task_pricing.base_vram


class InsufficientBalance(Exception):
    pass


class ClientGone(Exception):
    """The client hung up while its request was held (relay_hold): nothing was done."""


class Exception500(Exception):
    """ExceptionResponse: HTTP 500 {"message": <error text>}."""


@dataclass
class SimNode:
    address: str
    gpu_name: str
    gpu_vram: int
    current: str | None = None  # the commitment it runs

    @property
    def status(self) -> int:
        return NODE_BUSY if self.current else NODE_AVAILABLE


@dataclass
class LTask:
    id: int
    commitment: str
    task_args: str
    creator: str
    sampling_seed: str
    nonce: str
    task_type: int
    task_version: str
    min_vram: int
    required_gpu: str
    required_gpu_vram: int
    task_fee: int
    task_size: int
    model_ids: list
    create_time: float
    priority: int
    estimated_seconds: float
    timeout: int = 0
    status: int = QUEUED
    abort_reason: int = ABORT_NONE
    task_error: int = 0
    score: str = ""
    qos_score: int | None = None
    selected_node: str = ""
    task_id: str = ""
    start_time: float | None = None
    score_ready_time: float | None = None
    validated_time: float | None = None
    result_uploaded_time: float | None = None
    files: list = field(default_factory=list)  # what the node computed (uploaded after validation)
    forced: str | None = None  # admin: the node's outcome for this task


# ---------------------------------------------------------------- binding


def _parse_uint(raw: str, name: str, bits: int = 64) -> int:
    # strconv.ParseUint(raw, 10, bits) as tonic binds a form/query/path value
    if not (raw.isascii() and raw.isdigit()):
        raise BindError(name, f'strconv.ParseUint: parsing "{raw}": invalid syntax')
    if int(raw) >= 2**bits:
        raise BindError(name, f'strconv.ParseUint: parsing "{raw}": value out of range')
    return int(raw)


def _parse_int(raw: str, name: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise BindError(name, f'strconv.ParseInt: parsing "{raw}": invalid syntax')
    if not -(2**63) <= int(raw) < 2**63:
        raise BindError(name, f'strconv.ParseInt: parsing "{raw}": value out of range')
    return int(raw)


def _hexutil_decode(text: str) -> bytes:
    """go-ethereum hexutil.Decode: 0x required, even length, hex digits."""
    if text == "":
        raise ValueError("empty hex string")
    if not text.startswith(("0x", "0X")):
        raise ValueError("hex string without 0x prefix")
    digits = text[2:]
    if len(digits) % 2:
        raise ValueError("hex string of odd length")
    if not re.fullmatch(r"[0-9a-fA-F]*", digits):
        raise ValueError("invalid hex string")
    return bytes.fromhex(digits)


def _json_body(body: bytes, fields: dict) -> dict:
    """gin's JSON binding into a struct of the given (name -> kind) fields:
    kinds "string", "uint8", "strings" ([]string). Unknown keys are ignored;
    keys match case-insensitively as encoding/json does."""
    values = {name: ([] if kind == "strings" else "" if kind == "string" else 0) for name, kind in fields.items()}
    present = set()
    if not body.strip():
        return values | {"_present": present}
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:
        raise BindError("", f"invalid JSON body: {exc}") from None
    if not isinstance(doc, dict):
        raise BindError("", "json: cannot unmarshal into Go value of a struct type")
    for key, value in doc.items():
        name = key if key in fields else next((n for n in fields if n.lower() == key.lower()), None)
        if name is None or value is None:
            continue
        kind = fields[name]
        if kind == "string" and isinstance(value, str):
            values[name] = value
        elif kind == "strings" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            values[name] = value
        elif kind in ("uint8", "int64") and isinstance(value, int) and not isinstance(value, bool):
            low, high = (0, 256) if kind == "uint8" else (-(2**63), 2**63)
            if not low <= value < high:
                raise BindError("", f"json: cannot unmarshal number {value} into Go struct field .{name} of type {kind}")
            values[name] = value
        else:
            raise BindError("", f"json: cannot unmarshal {type(value).__name__} into Go struct field .{name} of type {kind}")
        present.add(name)
    return values | {"_present": present}


def _required(checks: list[tuple[str, bool]]):
    """validator `required`, first failing field in struct order."""
    for name, ok in checks:
        if not ok:
            raise BindError(name, "required")


def _model_name(name):
    # models/model_id.go NormalizeModelName: URLs keep their case
    if isinstance(name, str) and not name.startswith(("http://", "https://")):
        return name.lower()
    return name


def normalize_task_args(task_args: str, task_type: int) -> str:
    """models/model_id.go NormalizeTaskArgsModelNames, run after the schema
    check: model names lowercased, then the whole document re-marshalled by
    Go (keys sorted, compact, <>& escaped; numbers kept as written, UseNumber).
    What the Relay stores and serves is this, not the bytes that were sent."""
    args = json.loads(task_args, parse_int=gojson.Number, parse_float=gojson.Number, parse_constant=_reject_constant)
    if not isinstance(args, dict):
        return task_args

    def in_object(key, name_key):
        obj = args.get(key)
        if isinstance(obj, dict) and isinstance(obj.get(name_key), str):
            obj[name_key] = _model_name(obj[name_key])

    if task_type == TASK_SD:
        if isinstance(args.get("base_model"), str):
            args["base_model"] = _model_name(args["base_model"])
        else:
            in_object("base_model", "name")
        for key in ("lora", "controlnet", "refiner"):
            in_object(key, "model")
        for key in ("unet", "vae", "textual_inversion"):
            if isinstance(args.get(key), str):
                args[key] = _model_name(args[key])
    elif task_type == TASK_LLM and isinstance(args.get("model"), str):
        args["model"] = _model_name(args["model"])
    return gojson.remarshal(args, go122=True)


def _hamming_ok(h1: bytes, h2: bytes, threshold: int) -> bool:
    # service/validate_task.go checkHammingDistance: per 8-byte block, distance < threshold
    if len(h1) != len(h2) or len(h1) % 8:
        return False
    for i in range(0, len(h1), 8):
        if sum(bin(a ^ b).count("1") for a, b in zip(h1[i:i + 8], h2[i:i + 8])) >= threshold:
            return False
    return True


def _qos_score(order: int) -> int:
    # service/qos.go:17,23 TASK_SCORE_REWARDS: the faster of a validated group earns more
    return (10, 5, 2)[order]


# ---------------------------------------------------------------- the relay


class LithiumRelay:
    def __init__(self, config, chain=None, token_address: bytes | None = None, accounts: list | None = None):
        self.config = config
        self.chain = chain
        self.token_address = token_address
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.tasks: dict[str, LTask] = {}
        self.balances: dict[str, int] = {}
        self.ledger: list[dict] = []  # relay_account_events
        self.deposits: dict[str, dict] = {}  # tx hash -> record (idempotency)
        self.creator_keys: dict[str, bytes] = {}  # address -> key: for the selection knob only
        self.whitelist: set[str] | None = None  # task_whitelist_enabled with these creators
        # Creators the fault knobs (node faults, lost answers) apply to; None: everyone. Lets one
        # test suite turn faults on for its own wallet while others share the network.
        self.fault_creators: set[str] | None = None
        self.nodes: list[SimNode] = []
        self.requests = 0
        self.held = 0  # requests waiting in relay_hold now
        self.requests_by_kind: dict[str, int] = {}
        self.counts = {"created": 0, "dispatched": 0, "validated": 0, "groups": 0, "deposits": 0}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._timers: list = []  # (due, seq, commitment, status at push, action)
        self._queue: list = []  # (-priority, id, commitment) of queued tasks, dispatch order
        self.groups: dict[str, list] = {}  # task_id -> the tasks validated under it
        self._dispatch_needed = False
        self.sd_schema = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "sd-lithium.json").read_text()))
        self.gpt_schema = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "gpt-v3.1.0.json").read_text()))
        for account in accounts or []:
            address = to_checksum_address(account["address"])
            self.balances[address] = RELAY_ACCOUNT_START
            self.creator_keys[address] = bytes.fromhex(account["private_key"][2:])
        self._set_node_count(config["nodes"])
        config.on_change(self._on_config)
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="lithium-relay", daemon=True).start()
        if chain is not None and token_address is not None:
            threading.Thread(target=self._follow_deposits, name="lithium-deposits", daemon=True).start()

    def stop(self):
        self._stop.set()

    # ------------------------------------------------------------ nodes

    def _set_node_count(self, n: int):
        """Idle nodes join or quit at once; a busy one quits when its task ends."""
        with self.lock:
            self.node_target = n
            kinds = self.config["node_gpu_kinds"]
            while len(self.nodes) < n:
                self._node_serial = getattr(self, "_node_serial", -1) + 1
                i = self._node_serial
                address = to_checksum_address(keccak(f"crynux-devnet lithium node {i}".encode())[12:])
                self.nodes.append(SimNode(address, GPU_NAMES[i % kinds % len(GPU_NAMES)], self.config["node_vram_gb"]))
            self._trim_nodes()
            self._dispatch_needed = True
            self.wake.notify_all()

    def _trim_nodes(self):
        for node in [n for n in reversed(self.nodes) if n.current is None]:
            if len(self.nodes) <= self.node_target:
                break
            self.nodes.remove(node)

    def _on_config(self, changed: dict):
        if "nodes" in changed:
            self._set_node_count(changed["nodes"])
        if "node_vram_gb" in changed or "node_gpu_kinds" in changed:
            with self.lock:
                kinds = self.config["node_gpu_kinds"]
                for i, node in enumerate(self.nodes):
                    node.gpu_vram = self.config["node_vram_gb"]
                    node.gpu_name = GPU_NAMES[i % kinds % len(GPU_NAMES)]
                self._dispatch_needed = True
                self.wake.notify_all()

    def _node(self, address: str) -> SimNode | None:
        return next((n for n in self.nodes if n.address == address), None)

    # ------------------------------------------------------------ ledger

    def _event(self, kind: int, reason: str, address: str, amount: int):
        self.ledger.append({"type": kind, "reason": reason, "address": address, "amount": str(amount), "time": time.time()})

    def _charge(self, task: LTask):
        # service/relay_account.go chargeTaskFromRelayAccount
        balance = self.balances.get(task.creator, 0)
        if balance < task.task_fee:
            raise InsufficientBalance()
        self.balances[task.creator] = balance - task.task_fee
        self._event(EVENT_TASK_PAYMENT, f"{EVENT_TASK_PAYMENT}-{task.commitment}", task.creator, task.task_fee)

    def _refund(self, task: LTask):
        self.balances[task.creator] = self.balances.get(task.creator, 0) + task.task_fee
        self._event(EVENT_TASK_REFUND, f"{EVENT_TASK_REFUND}-{task.commitment}", task.creator, task.task_fee)

    def _pay(self, task: LTask, node_address: str, amount: int):
        # the successful-task split (DAO, operator, delegators) is one income here
        self.balances[node_address] = self.balances.get(node_address, 0) + amount
        self._event(EVENT_TASK_INCOME, f"{EVENT_TASK_INCOME}-{task.commitment}-{node_address}", node_address, amount)

    # ------------------------------------------------------------ deposits

    def _follow_deposits(self):
        """ERC20 CNX Transfer logs to the deposit address (deposit-withdraw-only
        networks): credited to the sender once `deposit_confirmations` deep."""
        seen = 0
        pending: list[tuple[int, str, str, int]] = []
        chain = self.chain
        while not self._stop.is_set():
            head = chain.head
            while seen < head:
                seen += 1
                for rec in chain.blocks[seen].logs:
                    if rec.address != self.token_address or len(rec.topics) != 3 or rec.topics[0] != TRANSFER_TOPIC:
                        continue
                    if rec.topics[2][12:] != DEPOSIT_ADDRESS:
                        continue
                    sender = rec.topics[1][12:]
                    amount = int(rec.json["data"][2:] or "0", 16)
                    if sender == b"\x00" * 20 or amount <= 0:
                        continue
                    pending.append((seen, rec.json["transactionHash"], to_checksum_address(sender), amount))
            depth = self.config["deposit_confirmations"]
            due = [p for p in pending if head - p[0] + 1 >= depth]
            if due:
                pending = [p for p in pending if p not in due]
                with self.lock:
                    for block, tx_hash, sender, amount in due:
                        if tx_hash in self.deposits:
                            continue
                        self.deposits[tx_hash] = {"tx_hash": tx_hash, "block": block, "address": sender, "amount": str(amount)}
                        self.balances[sender] = self.balances.get(sender, 0) + amount
                        self._event(EVENT_DEPOSIT, f"{EVENT_DEPOSIT}-{tx_hash}-{NODE_NETWORK}", sender, amount)
                        self.counts["deposits"] += 1
            with chain.new_block:
                if chain.head == head:
                    chain.new_block.wait(0.2)

    # ------------------------------------------------------------ scheduling

    def _timer(self, delay_s: float, task: LTask, action: str):
        heapq.heappush(self._timers, (time.monotonic() + max(0.0, delay_s), next(self._seq), task.commitment, task.status, action))
        self.wake.notify_all()

    def _deadline(self, task: LTask):
        """docs/task_timeout.md: exactly one deadline, the current status's."""
        c = self.config
        if task.status == QUEUED:
            self._timer(task.create_time + c["queue_timeout_s"] - time.time(), task, "deadline")
        elif task.status in (STARTED, PARAMETERS_UPLOADED):
            self._timer(task.start_time + task.timeout - time.time(), task, "deadline")
        elif task.status in (SCORE_READY, ERROR_REPORTED):
            self._timer(task.score_ready_time + c["app_validation_timeout_s"] - time.time(), task, "deadline")
        elif task.status in (VALIDATED, GROUP_VALIDATED):
            self._timer(task.validated_time + c["result_upload_timeout_s"] - time.time(), task, "deadline")

    def _set_status(self, task: LTask, status: int):
        task.status = status
        self._deadline(task)

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, commitment, status, action = heapq.heappop(self._timers)
                    task = self.tasks.get(commitment)
                    if task is None or task.status != status:
                        continue  # a later transition replaced this deadline
                    try:
                        self._fire(task, action)
                    except Exception:
                        log.exception("lithium: %s of %s failed", action, commitment)
                if self._dispatch_needed:
                    self._dispatch_needed = False
                    self._dispatch()
                wait = 0.5 if not self._timers else min(0.5, max(0.001, self._timers[0][0] - time.monotonic()))
                if not self._dispatch_needed:
                    self.wake.wait(wait)

    def _fire(self, task: LTask, action: str):
        if action == "deadline":
            reason = {QUEUED: ABORT_TIMEOUT, STARTED: ABORT_TIMEOUT, PARAMETERS_UPLOADED: ABORT_TIMEOUT,
                      SCORE_READY: ABORT_CREATOR_VALIDATION_TIMEOUT, ERROR_REPORTED: ABORT_CREATOR_VALIDATION_TIMEOUT,
                      VALIDATED: ABORT_RESULT_UPLOAD_TIMEOUT, GROUP_VALIDATED: ABORT_RESULT_UPLOAD_TIMEOUT}[task.status]
            self.config.count(f"lithium_timeout_{reason}")
            task.abort_reason = reason
            self._end_aborted(task)
        elif action == "node_done":
            self._node_reports(task)
        elif action == "upload":
            self._results_uploaded(task)

    def _dispatch(self):
        """task_matching.go, simplified: queued tasks by priority desc, id asc;
        each takes the first free node that fits (VRAM, GPU, version)."""
        free = [n for n in self.nodes if n.current is None]
        if not free:
            return
        kept = []
        for i, entry in enumerate(self._queue):
            if not free:
                kept.extend(self._queue[i:])
                break
            task = self.tasks[entry[2]]
            if task.status != QUEUED:
                continue  # cancelled or timed out
            node = next((n for n in free if self._fits(task, n)), None)
            if node is None:
                kept.append(entry)
                continue
            free.remove(node)
            self._start(task, node)
        self._queue = kept

    @staticmethod
    def _fits(task: LTask, node: SimNode) -> bool:
        major, minor, patch = (int(x) for x in task.task_version.split("."))
        if not (NODE_VERSION[0] == major and (NODE_VERSION[1], NODE_VERSION[2]) >= (minor, patch)):
            return False
        if task.required_gpu:
            return node.gpu_name == task.required_gpu and node.gpu_vram == task.required_gpu_vram
        return node.gpu_vram >= task.min_vram

    def _start(self, task: LTask, node: SimNode):
        # SetTaskStatusStarted: node, start time, the timeout the relay computes, status in one update
        node.current = task.commitment
        task.selected_node = node.address
        task.start_time = time.time()
        fixed = self.config["execution_timeout_s"]
        task.timeout = fixed if fixed > 0 else int(min(7200, max(60, math.ceil(2 * task.estimated_seconds))))
        self._set_status(task, STARTED)
        self.counts["dispatched"] += 1
        self._timer(self.config["task_duration_ms"] / 1000, task, "node_done")

    def _node_reports(self, task: LTask):
        """The node submits its score (or reports an error, or never answers)."""
        outcome = task.forced
        if outcome is None and not self.faults_apply(task.creator):
            outcome = "success"
        if outcome is None:
            if self.config.roll("stuck_rate", "lithium_stuck"):
                outcome = "stuck"
            elif self.config.roll("error_report_rate", "lithium_error_reported"):
                outcome = "error"
            elif self.config.roll("wrong_result_rate", "lithium_wrong_result"):
                outcome = "wrong"
            else:
                outcome = "success"
        if outcome == "stuck":
            return  # the execution deadline ends it
        task.score_ready_time = time.time()
        if outcome == "error":
            task.task_error = 1  # TaskErrorParametersValidationFailed
            self._set_status(task, ERROR_REPORTED)
            return
        files, score = self._compute(task, wrong=outcome == "wrong")
        task.files, task.score = files, "0x" + score.hex()
        self._set_status(task, SCORE_READY)

    @staticmethod
    def _compute(task: LTask, wrong: bool) -> tuple[list[bytes], bytes]:
        # honest nodes given the same arguments agree (deterministic seeds)
        seed = int.from_bytes(keccak(task.task_args.encode() + (task.selected_node.encode() if wrong else b""))[:6], "big")
        files, score = results.task_results(seed, task.task_type, task.task_args)
        if task.task_type == TASK_LLM:
            score = hashlib.sha256(files[0]).digest()
        return files, score

    def _after_validated(self, task: LTask):
        if task.forced == "no_upload" or self.config.roll("upload_stuck_rate", "lithium_upload_stuck"):
            return  # the result-upload deadline ends it
        self._timer(self.config["results_upload_delay_ms"] / 1000, task, "upload")

    def _results_uploaded(self, task: LTask):
        """SetTaskStatusEndSuccess: single task pays its node; a group splits
        the fee of every valid member by QoS (the refunded ones included)."""
        group = self.groups.get(task.task_id, [task])
        if len(group) > 1:
            valid = [t for t in group if t.status in (GROUP_VALIDATED, END_GROUP_REFUND)]
            total = sum(t.qos_score or 0 for t in valid) or 1
            remainder = 0
            for i, t in enumerate(valid):
                payment, rem = divmod(t.task_fee * (t.qos_score or 0), total)
                remainder += rem
                if i == len(valid) - 1:
                    payment += remainder
                self._pay(t, t.selected_node, payment)
            status = END_GROUP_SUCCESS
        else:
            self._pay(task, task.selected_node, task.task_fee)
            status = END_SUCCESS
        task.result_uploaded_time = time.time()
        self._set_status(task, status)
        self._finish_node(task)

    def _finish_node(self, task: LTask):
        node = self._node(task.selected_node) if task.selected_node else None
        if node is not None and node.current == task.commitment:
            node.current = None
            self._trim_nodes()
            self._dispatch_needed = True

    def _end_aborted(self, task: LTask):
        """SetTaskStatusEndAborted: refund, except a creator-validation timeout,
        which pays the node the whole fee."""
        if task.status == END_ABORTED:
            return
        if task.abort_reason == ABORT_CREATOR_VALIDATION_TIMEOUT:
            self._pay(task, task.selected_node, task.task_fee)
        else:
            self._refund(task)
        self._set_status(task, END_ABORTED)
        self._finish_node(task)

    # ------------------------------------------------------------ pricing

    @staticmethod
    def _estimate(task_type: int, args: dict, vram_demand: int) -> tuple[float, int]:
        """(estimated node seconds, VRAM weight numerator): a documented stand-in
        for the calibrated records of task_execution_parameters.md."""
        if task_type == TASK_LLM:
            gen = args.get("generation_config") if isinstance(args.get("generation_config"), dict) else {}
            tokens = gen.get("max_new_tokens") if isinstance(gen.get("max_new_tokens"), int) else 256
            seconds = 2 + 0.02 * tokens + 0.0001 * len(json.dumps(args.get("messages", "")))
        else:
            cfg = args.get("task_config") if isinstance(args.get("task_config"), dict) else {}
            def num(key, default):
                value = cfg.get(key, default)
                return value if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default
            pixels = num("image_width", 512) * num("image_height", 512) / (1024 * 1024)
            seconds = 2 + 0.1 * num("steps", 25) * num("num_images", 1) * max(pixels, 0.25)
        return max(seconds, 0.1), max(vram_demand, BASE_VRAM)

    # ------------------------------------------------------------ signatures

    @staticmethod
    def _signer(value: dict, timestamp: int, signature: str) -> str | None:
        """validate.ValidateSignature: the recovered address, or None. The relay
        is built with Go 1.24 (go.mod toolchain go1.24.3), so \\b and \\f are
        signed in their short forms only."""
        signers = recover_signers([gojson.remarshal(value, go122=True).encode()], timestamp, signature)
        return signers[0] if signers else None

    def _sampling_seed(self, creator: str) -> str:
        """crypto/rand 32 bytes; with `vrf_select_share` the devnet (which knows
        its test accounts' keys) picks seeds whose VRF output selects that share
        of a creator's tasks and leaves the others unselected."""
        share = self.config["vrf_select_share"]
        key = self.creator_keys.get(creator)
        if share <= 0 or key is None:
            return "0x" + secrets.token_hex(32)
        want = self.config.roll("vrf_select_share", "lithium_selected_seed")
        for _ in range(20000):
            seed = secrets.token_bytes(32)
            if vrf.selects(self._beta(key, seed)) == want:
                return "0x" + seed.hex()
        return "0x" + secrets.token_hex(32)

    @staticmethod
    def _beta(key: bytes, alpha: bytes) -> bytes:
        # the search only: libsecp256k1 via coincurve is fast, and the
        # verifying path (vrf.verify) stays pure Python
        point = PublicKey.from_secret(key).format(compressed=False)[1:]
        h = vrf._hash_to_curve(vrf.parse_public_key(point), alpha)
        gamma = PublicKey(vrf.encode_point(h)).multiply(key).format(compressed=True)
        return vrf.gamma_to_beta(gamma)

    # ------------------------------------------------------------ JSON views

    @staticmethod
    def task_json(t: LTask) -> str:
        q = gojson.quote
        parts = [
            f'"sequence":{t.id}', f'"task_args":{q(t.task_args)}', f'"task_id_commitment":{q(t.commitment)}',
            f'"creator":{q(t.creator)}', f'"sampling_seed":{q(t.sampling_seed)}', f'"nonce":{q(t.nonce)}',
            f'"status":{t.status}', f'"task_type":{t.task_type}', f'"task_version":{q(t.task_version)}',
            f'"timeout":{t.timeout}', f'"min_vram":{t.min_vram}', f'"required_gpu":{q(t.required_gpu)}',
            f'"required_gpu_vram":{t.required_gpu_vram}', f'"task_fee":"{t.task_fee}"', f'"task_size":{t.task_size}',
            '"model_ids":' + ("[" + ",".join(q(m) for m in t.model_ids) + "]"),
            f'"abort_reason":{t.abort_reason}', f'"task_error":{t.task_error}', f'"score":{q(t.score)}',
            f'"qos_score":{t.qos_score or 0}', f'"selected_node":{q(t.selected_node)}',
        ]
        for name, value in (("create_time", t.create_time), ("start_time", t.start_time),
                            ("score_ready_time", t.score_ready_time), ("validated_time", t.validated_time),
                            ("result_uploaded_time", t.result_uploaded_time)):
            if value is not None:
                parts.append(f'"{name}":{q(_go_time(value))}')
        return "{" + ",".join(parts) + "}"

    @staticmethod
    def _ok(data: str | None = None) -> tuple[int, bytes]:
        if data is None:
            return 200, b'{"message":"success"}'
        return 200, ('{"message":"success","data":' + data + "}").encode()

    # ------------------------------------------------------------ handlers

    def create_task(self, commitment: str, form: dict, authenticated=None):
        """POST /v1/inference_tasks/{task_id_commitment} (create_task.go)."""
        def one(name):
            return form[name][0] if name in form else None

        task_type = _parse_uint(one("task_type"), "task_type", 8) if one("task_type") is not None else 0
        pointers = {}
        for name in ("min_vram", "required_gpu_vram", "task_size"):
            pointers[name] = _parse_uint(one(name), name) if one(name) is not None else None
        required_gpu = one("required_gpu")
        timeout = _parse_uint(one("timeout"), "timeout") if one("timeout") is not None else 0
        fee_text = one("task_fee")
        task_fee = None
        if fee_text is not None:
            trimmed = fee_text.strip('"')
            if not re.fullmatch(r"[+-]?[0-9]+", trimmed):
                raise BindError("task_fee", f"not a valid big integer: {trimmed}")
            task_fee = int(trimmed)
        timestamp = _parse_int(one("timestamp"), "timestamp") if one("timestamp") is not None else 0
        signature = one("signature") or ""
        task_args, nonce, version = one("task_args") or "", one("nonce") or "", one("task_version") or ""
        model_ids = form.get("task_model_ids")  # nil slice when absent
        _required([("task_id_commitment", bool(commitment)), ("task_args", bool(task_args)), ("nonce", bool(nonce)),
                   ("task_model_ids", model_ids is not None), ("task_version", bool(version)),
                   ("task_fee", task_fee is not None), ("timestamp", timestamp != 0), ("signature", bool(signature))])
        signed = {
            "task_id_commitment": commitment, "task_args": task_args, "task_type": task_type, "nonce": nonce,
            "task_model_ids": model_ids, "min_vram": pointers["min_vram"], "required_gpu": required_gpu,
            "required_gpu_vram": pointers["required_gpu_vram"], "task_version": version,
            "task_size": pointers["task_size"], "task_fee": str(task_fee),
        }
        if timeout:
            signed["timeout"] = timeout  # omitempty
        address = self._signer(signed, timestamp, signature)
        if address is None:
            raise BindError("signature", "Invalid signature")
        model_ids = [m.lower() for m in model_ids]  # NormalizeModelIDs
        if required_gpu is not None:
            required_gpu = " ".join(required_gpu.split())  # NormalizeGPUName
        if self.whitelist is not None and address not in self.whitelist:
            raise BindError("address", "Signer not allowed")
        if authenticated is not None:
            authenticated(address)  # relay_hold "create:before": may raise ClientGone
        try:
            args = json.loads(task_args, parse_constant=_reject_constant)
        except ValueError as exc:  # json.Unmarshal error: an exception response
            raise Exception500(f"invalid character in task_args: {exc}") from None
        validator = self.gpt_schema if task_type == TASK_LLM else self.sd_schema
        if task_type not in (TASK_SD, TASK_LLM):
            raise BindError("task_args", "jsonschema: fine-tune tasks are not simulated by the devnet")
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
        if error is not None:
            location = "/" + "/".join(str(p) for p in error.absolute_path)
            keyword = "/".join(str(p) for p in error.absolute_schema_path)
            raise BindError("task_args", f"jsonschema: '{location if location != '/' else ''}' does not validate with "
                                         f"{SCHEMA_URLS[task_type]}#/{keyword}: {error.message}")
        task_args = normalize_task_args(task_args, task_type)
        parts = version.split(".")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() and int(p) < 2**64 for p in parts):
            raise BindError("task_version", "Invalid task version")
        with self.lock:
            if commitment in self.tasks:
                raise BindError("task_id_commitment", "Task already uploaded")
        seed = self._sampling_seed(address)
        if None in (pointers["min_vram"], required_gpu, pointers["required_gpu_vram"], pointers["task_size"]):
            raise SignaturePanic("nil pointer dereference")  # *in.MinVram etc.: gin recovers with a bare 500
        vram_demand = pointers["required_gpu_vram"] if required_gpu else pointers["min_vram"]
        estimate, weight = self._estimate(task_type, args if isinstance(args, dict) else {}, vram_demand)
        with self.lock:
            if commitment in self.tasks:  # a concurrent create of the same commitment
                raise BindError("task_id_commitment", "Task already uploaded")
            task = LTask(
                id=next(self._ids), commitment=commitment, task_args=task_args, creator=address, sampling_seed=seed,
                nonce=nonce, task_type=task_type, task_version=version, min_vram=pointers["min_vram"],
                required_gpu=required_gpu, required_gpu_vram=pointers["required_gpu_vram"], task_fee=task_fee,
                task_size=pointers["task_size"], model_ids=[m for m in model_ids if m], create_time=time.time(),
                priority=int(task_fee * BASE_VRAM / (estimate * weight)), estimated_seconds=estimate,
            )
            try:
                self._charge(task)
            except InsufficientBalance:
                raise BindError("task_fee", "Insufficient relay account balance") from None
            self.tasks[commitment] = task
            bisect.insort(self._queue, (-task.priority, task.id, commitment))
            self.counts["created"] += 1
            self._deadline(task)
            self._dispatch_needed = True
            self.wake.notify_all()
            return self._ok(self.task_json(task))

    def _signed_query(self, query: dict) -> tuple[int, str]:
        raw = query.get("timestamp", [""])[0]
        timestamp = _parse_int(raw, "timestamp") if raw != "" else 0
        return timestamp, query.get("signature", [""])[0]

    def get_task(self, commitment: str, query: dict):
        """GET /v1/inference_tasks/{c} (get_task_by_id.go)."""
        timestamp, signature = self._signed_query(query)
        _required([("task_id_commitment", bool(commitment)), ("timestamp", timestamp != 0), ("signature", bool(signature))])
        address = self._signer({"task_id_commitment": commitment}, timestamp, signature)
        if address is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self.tasks.get(commitment)
            if task is None:
                raise BindError("task_id_commitment", "Task not found")
            if task.selected_node != address and task.creator != address:
                raise BindError("signature", "Signer not allowed")
            return self._ok(self.task_json(task))

    def selected_node(self, commitment: str, query: dict):
        """GET /v1/inference_tasks/{c}/selected_node (get_selected_node.go)."""
        timestamp, signature = self._signed_query(query)
        # Timestamp/Signature carry no json tag: the validator names the Go fields
        _required([("task_id_commitment", bool(commitment)), ("Timestamp", timestamp != 0), ("Signature", bool(signature))])
        address = self._signer({"task_id_commitment": commitment}, timestamp, signature)
        if address is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self.tasks.get(commitment)
            if task is None:
                raise BindError("task_id_commitment", "Task not found")
            if not task.selected_node:
                raise BindError("task_id_commitment", "Task not started")
            if task.selected_node != address and task.creator != address:
                raise BindError("signature", "Signer not allowed")
            node = self._node(task.selected_node)
            q = gojson.quote
            version = ".".join(map(str, NODE_VERSION))
            # GetSelectedNodeInfoResponse.Data has no json tag: the key is "Data"
            data = (f'{{"address":{q(node.address)},"status":{node.status},"gpu_name":{q(node.gpu_name)},'
                    f'"gpu_vram":{node.gpu_vram},"version":{q(version)},"network":{q(NODE_NETWORK)}}}')
            return 200, ('{"message":"success","Data":' + data + "}").encode()

    def get_result(self, commitment: str, index: str, query: dict):
        """GET /v1/inference_tasks/{c}/results/{index} (get_result.go)."""
        timestamp, signature = self._signed_query(query)
        _required([("index", bool(index)), ("task_id_commitment", bool(commitment)),
                   ("Timestamp", timestamp != 0), ("Signature", bool(signature))])
        address = self._signer({"index": index, "task_id_commitment": commitment}, timestamp, signature)
        if address is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self.tasks.get(commitment)
            if task is None:
                raise BindError("task_id_commitment", "Task not found")
            if task.creator != address:
                raise BindError("signature", "Signer not allowed")
            if task.status not in (END_SUCCESS, END_GROUP_SUCCESS):
                raise BindError("task_id", "Task results not uploaded")
            files = task.files
            ext = ".png" if task.task_type in (TASK_SD, TASK_SD_FT_LORA) else ".json"
        position = int(index) if re.fullmatch(r"0|[1-9][0-9]{0,5}", index) else -1
        if not 0 <= position < len(files):
            raise BindError("index", "File not found")
        headers = {"Content-Description": "File Transfer", "Content-Transfer-Encoding": "binary",
                   "Content-Disposition": f"attachment; filename={index}{ext}", "Accept-Ranges": "bytes"}
        return 200, files[position], "application/octet-stream", headers

    def abort_task(self, commitment: str, body: bytes):
        """POST /v1/inference_tasks/{c}/abort_reason (abort_task.go)."""
        v = _json_body(body, {"abort_reason": "uint8", "timestamp": "int64", "signature": "string"})
        _required([("task_id_commitment", bool(commitment)), ("abort_reason", v["abort_reason"] != 0),
                   ("timestamp", v["timestamp"] != 0), ("signature", bool(v["signature"]))])
        address = self._signer({"task_id_commitment": commitment, "abort_reason": v["abort_reason"]}, v["timestamp"], v["signature"])
        if address is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self.tasks.get(commitment)
            if task is None:
                raise BindError("task_id_commitment", "Task not found")
            if address != task.creator:
                raise BindError("signature", "Signer not allowed")
            if v["abort_reason"] != ABORT_CREATOR_CANCELLED:
                raise BindError("abort_reason", "Abort reason not allowed")
            if task.status != QUEUED:
                raise BindError("task_id_commitment", "Task can no longer be cancelled")
            task.abort_reason = ABORT_CREATOR_CANCELLED
            self._end_aborted(task)
            return self._ok()

    def validate(self, body: bytes):
        """POST /v1/inference_tasks/validate (validate_task.go, service/validate_task.go)."""
        v = _json_body(body, {"task_id_commitments": "strings", "task_id": "string", "vrf_proof": "string",
                              "public_key": "string", "timestamp": "int64", "signature": "string"})
        present = v["_present"]
        _required([("task_id_commitments", "task_id_commitments" in present), ("task_id", bool(v["task_id"])),
                   ("vrf_proof", bool(v["vrf_proof"])), ("public_key", bool(v["public_key"])),
                   ("timestamp", v["timestamp"] != 0), ("signature", bool(v["signature"]))])
        commitments = v["task_id_commitments"]
        if len(commitments) not in (1, 3):
            raise BindError("task_id_commitments", "TaskIDCommitments length incorrect")
        signed = {"task_id_commitments": commitments, "task_id": v["task_id"], "vrf_proof": v["vrf_proof"],
                  "public_key": v["public_key"]}
        address = self._signer(signed, v["timestamp"], v["signature"])
        if address is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            tasks = []
            for c in commitments:
                task = self.tasks.get(c)
                if task is None:
                    raise Exception500("record not found")
                if task.creator != address:
                    raise BindError("signature", "Signer not allowed")
                tasks.append(task)
            if len(tasks) == 1:
                self._validate_single(tasks[0], v["task_id"], v["vrf_proof"], v["public_key"])
            else:
                self._validate_group(tasks, v["task_id"], v["vrf_proof"], v["public_key"])
            return self._ok()

    @staticmethod
    def _check_task_id(task_id: str, task: LTask):
        try:
            raw = _hexutil_decode(task_id) + _hexutil_decode(task.nonce)
        except ValueError as exc:
            raise Exception500(str(exc)) from None
        if "0x" + keccak(raw).hex() != task.commitment:
            raise Exception500("task id incorrect")

    @staticmethod
    def _check_vrf(seed_hex: str, proof_hex: str, key_hex: str, creator: str, grouped: bool):
        # validateVRFProof
        try:
            seed = _hexutil_decode(seed_hex)
        except ValueError:
            raise Exception500("invalid sampling seed") from None
        try:
            key = _hexutil_decode(key_hex)
        except ValueError:
            raise Exception500("invalid public key") from None
        if len(key) != 64:
            raise Exception500("invalid public key")
        try:
            proof = _hexutil_decode(proof_hex)
        except ValueError:
            raise Exception500("invalid vrf proof") from None
        if len(proof) != 81:
            raise Exception500("invalid vrf proof")
        if vrf.parse_public_key(key) is None:
            raise Exception500("invalid public key: x coordinate and y coordinate are not on the secp256k1 curve")
        if to_checksum_address(keccak(key)[12:]) != creator:
            raise Exception500("not task creator")
        beta = vrf.verify(key, seed, proof)
        if beta is None:
            raise Exception500("invalid vrf proof")
        selected = vrf.selects(beta)
        if grouped and not selected:
            raise Exception500("task is not selected for validation")
        if not grouped and selected:
            raise Exception500("task is selected for validation")

    def _validate_single(self, task: LTask, task_id: str, proof: str, key: str):
        if task.status not in (SCORE_READY, ERROR_REPORTED):
            raise Exception500("illegal task state")
        self._check_task_id(task_id, task)
        task.task_id = task_id  # stored before the proof is checked, as the Go code does
        self.groups[task_id] = [task]
        self._check_vrf(task.sampling_seed, proof, key, task.creator, grouped=False)
        self.counts["validated"] += 1
        if task.status == SCORE_READY:
            task.validated_time = time.time()
            self._set_status(task, VALIDATED)
            self._after_validated(task)
        else:
            task.abort_reason = ABORT_ERROR_REPORTED
            task.validated_time = time.time()
            self._end_aborted(task)

    def _compare(self, a: LTask, b: LTask) -> bool:
        # compareTaskScore
        if a.task_type != b.task_type or a.status != b.status:
            return False
        if a.status != SCORE_READY:
            return True
        if a.task_type == TASK_LLM:
            return a.score == b.score
        return _hamming_ok(bytes.fromhex(a.score[2:]), bytes.fromhex(b.score[2:]), self.config["distance_threshold"])

    def _validate_group(self, tasks: list[LTask], task_id: str, proof: str, key: str):
        if any(t.status == END_ABORTED and t.abort_reason == ABORT_CREATOR_VALIDATION_TIMEOUT for t in tasks):
            raise Exception500("task group validation expired")
        for t in tasks:
            if t.status not in (SCORE_READY, ERROR_REPORTED, END_ABORTED):
                raise Exception500("illegal task state")
            self._check_task_id(task_id, t)
        for t in tasks:
            t.task_id = task_id
        tasks = sorted(tasks, key=lambda t: t.id)
        self.groups[task_id] = tasks
        for t in tasks:  # the first-created member's seed decides
            self._check_vrf(tasks[0].sampling_seed, proof, key, t.creator, grouped=True)
        self.counts["groups"] += 1
        by_time = sorted(tasks, key=lambda t: ((t.score_ready_time or 0) - (t.start_time or 0), t.id))
        order = 0
        for t in by_time:
            if t.status != END_ABORTED:
                t.qos_score, order = _qos_score(order), order + 1
            else:
                t.qos_score = 0
        finished = [t for t in by_time if t.status != END_ABORTED]
        nxt = {t.commitment: END_ABORTED for t in tasks}
        if len(finished) == 2:
            if self._compare(finished[0], finished[1]) and finished[0].status == SCORE_READY:
                nxt[finished[0].commitment], nxt[finished[1].commitment] = GROUP_VALIDATED, END_GROUP_REFUND
        elif len(finished) == 3:
            f0, f1, f2 = finished
            same1, same2, same3 = self._compare(f0, f1), self._compare(f0, f2), self._compare(f1, f2)
            if same1:
                if f0.status == SCORE_READY:
                    nxt[f0.commitment], nxt[f1.commitment] = GROUP_VALIDATED, END_GROUP_REFUND
                nxt[f2.commitment] = END_GROUP_REFUND if same2 else END_INVALIDATED
            elif same2:
                if f0.status == SCORE_READY:
                    nxt[f0.commitment], nxt[f2.commitment] = GROUP_VALIDATED, END_GROUP_REFUND
                nxt[f1.commitment] = END_INVALIDATED
            elif same3:
                if f1.status == SCORE_READY:
                    nxt[f1.commitment], nxt[f2.commitment] = GROUP_VALIDATED, END_GROUP_REFUND
                nxt[f0.commitment] = END_INVALIDATED
        now = time.time()
        for t in tasks:
            status = nxt[t.commitment]
            if status == END_INVALIDATED:
                # slashed: the fee is neither refunded nor paid (SlashNode)
                t.validated_time = now
                self._set_status(t, END_INVALIDATED)
                self._finish_node(t)
            elif status == GROUP_VALIDATED:
                t.validated_time = now
                self._set_status(t, GROUP_VALIDATED)
                self._after_validated(t)
            elif status == END_GROUP_REFUND:
                t.validated_time = now
                self._refund(t)
                self._set_status(t, END_GROUP_REFUND)
                self._finish_node(t)
            elif t.status != END_ABORTED:
                t.abort_reason = ABORT_GROUP_TIMEOUT if len(finished) < 2 else ABORT_INCORRECT_RESULT
                t.validated_time = now
                self._end_aborted(t)

    def balance(self, address: str, query: dict, headers):
        """GET /v2/relay_account/{address}/balance behind JWTOrSignatureAuthMiddleware."""
        unauthorized = (401, b'{"message":"Valid JWT or signature required"}')
        raw = query.get("timestamp", [""])[0]
        try:
            timestamp = _parse_int(raw, "timestamp")
        except BindError:
            return unauthorized
        signature = query.get("signature", [""])[0]
        # api/v2/validate: exactly 0x + 130 hex digits
        if len(signature) != 132 or not signature.startswith("0x"):
            return unauthorized
        try:
            signer = self._signer({"address": address}, timestamp, signature)
        except SignaturePanic:
            return unauthorized
        if signer is None:
            return unauthorized
        if signer != address:
            raise BindError("address", "Address mismatch")
        with self.lock:
            return self._ok(f'"{self.balances.get(address, 0)}"')

    # ------------------------------------------------------------ admin

    def admin_task(self, commitment: str) -> dict | None:
        with self.lock:
            t = self.tasks.get(commitment)
            if t is None:
                return None
            return {
                "commitment": t.commitment, "status": t.status, "abort_reason": t.abort_reason, "creator": t.creator,
                "task_fee": str(t.task_fee), "task_id": t.task_id, "selected_node": t.selected_node,
                "sampling_seed": t.sampling_seed, "score": t.score, "timeout": t.timeout, "priority": str(t.priority),
                "files": [{"index": i, "sha256": hashlib.sha256(f).hexdigest(), "size": len(f)} for i, f in enumerate(t.files)],
            }

    def force_outcome(self, commitment: str, outcome: str) -> bool:
        """The node's answer for one task: success, error, wrong, stuck, no_upload."""
        with self.lock:
            t = self.tasks.get(commitment)
            if t is None:
                return False
            t.forced = outcome
            return True

    def faults_apply(self, creator: str | None) -> bool:
        # No lock: the timer thread asks while holding it; the set is replaced, never changed.
        scope = self.fault_creators
        return scope is None or creator in scope

    def request_creator(self, route: str, commitment: str | None, body: bytes) -> str | None:
        """Whose request this was, for fault scoping: the creator of the task it names."""
        if route == "validate":
            try:
                commitments = json.loads(body).get("task_id_commitments") or []
                commitment = commitments[0] if commitments else None
            except (ValueError, AttributeError, TypeError):
                return None
        with self.lock:
            task = self.tasks.get(commitment) if isinstance(commitment, str) else None
            return task.creator if task else None

    def account(self, address: str) -> dict:
        with self.lock:
            return {"address": address, "balance": str(self.balances.get(address, 0)),
                    "events": [e for e in self.ledger if e["address"] == address]}

    def set_balance(self, address: str, balance: int) -> dict:
        with self.lock:
            self.balances[address] = balance
            self._dispatch_needed = True
        return self.account(address)

    def stats(self) -> dict:
        with self.lock:
            by_status: dict[int, int] = {}
            for t in self.tasks.values():
                by_status[t.status] = by_status.get(t.status, 0) + 1
            return {
                "requests": self.requests, "requests_by_kind": dict(self.requests_by_kind), "tasks": len(self.tasks), "held": self.held,
                "by_status": {str(k): v for k, v in sorted(by_status.items())}, **self.counts,
                "nodes": len(self.nodes), "busy_nodes": sum(1 for n in self.nodes if n.current),
            }


# ---------------------------------------------------------------- HTTP


_ROUTE_TASK = re.compile(r"/v1/inference_tasks/([^/]+)")
_ROUTE_SUB = re.compile(r"/v1/inference_tasks/([^/]+)/(selected_node|abort_reason)")
_ROUTE_RESULT = re.compile(r"/v1/inference_tasks/([^/]+)/results/([^/]+)")
_ROUTE_BALANCE = re.compile(r"/v2/relay_account/([^/]+)/balance")


class LithiumHandler(Handler):
    def _route(self, method: str):
        relay: LithiumRelay = self.server.app
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        body, truncated = self.read_body_prefix(MAX_BODY)
        route, action = None, None
        if method == "GET" and path == "/v1/now":
            route, action = "now", lambda: relay._ok(f'{{"now":{int(time.time())}}}')
        elif method == "POST" and path == "/v1/inference_tasks/validate":
            route, action = "validate", lambda: relay.validate(body)
        elif method == "GET" and (m := _ROUTE_RESULT.fullmatch(path)) and m.group(2) != "checkpoint":
            route, action = "result", lambda: relay.get_result(m.group(1), m.group(2), query)
        elif (m := _ROUTE_SUB.fullmatch(path)) and (method, m.group(2)) in (("GET", "selected_node"), ("POST", "abort_reason")):
            route = m.group(2)
            action = (lambda: relay.selected_node(m.group(1), query)) if route == "selected_node" else (lambda: relay.abort_task(m.group(1), body))
        elif (m := _ROUTE_TASK.fullmatch(path)) and method in ("GET", "POST"):
            if method == "GET":
                route, action = "task", lambda: relay.get_task(m.group(1), query)
            else:
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                for key, values in query.items():  # gin's c.Request.Form: body first, then the URL's
                    form.setdefault(key, []).extend(values)
                route, action = "create", lambda: relay.create_task(
                    m.group(1), form, authenticated=lambda address: self._hold("create:before", address))
        elif method == "GET" and (m := _ROUTE_BALANCE.fullmatch(path)):
            route, action = "balance", lambda: relay.balance(m.group(1), query, self.headers)
        if action is None:
            self.send(404, b"404 page not found", "text/plain")
            return
        with relay.lock:
            relay.requests += 1
        named = m.group(1) if route in ("create", "abort_reason") else None
        if route == "validate":
            try:
                self._hold("validate:before", relay.request_creator(route, None, body))
            except ClientGone:
                self.close_connection = True
                return
        if relay.config.roll("relay_http500_rate", "relay_http500"):
            self.send(500, b'{"message":"devnet: injected relay fault"}', "application/json; charset=utf-8")
            return
        try:
            result = action()
        except ClientGone:
            self.close_connection = True
            return
        except BindError as exc:
            result = (400, json.dumps({"message": "validation_error", "data": {"field_name": exc.field_name, "message": exc.message}},
                                      separators=(",", ":"), ensure_ascii=False).encode())
        except Exception500 as exc:
            result = (500, json.dumps({"message": str(exc)}, separators=(",", ":")).encode())
        except SignaturePanic:
            result = (500, b"")  # gin.Recovery after a Go panic
        except Exception as exc:
            log.exception("lithium handler failed")
            result = (500, json.dumps({"message": f"devnet relay error: {exc}"}).encode())
        status, payload, *rest = result
        key = f"{route} {status}"
        with relay.lock:
            relay.requests_by_kind[key] = relay.requests_by_kind.get(key, 0) + 1
        if route in ("create", "validate"):
            try:
                self._hold(f"{route}:after", relay.request_creator(route, named, body))
            except ClientGone:
                self.close_connection = True
                return
        if method == "POST" and relay.faults_apply(relay.request_creator(route, named, body)) \
                and relay.config.roll("relay_drop_answer_rate", "relay_drop_answer"):
            self.close_connection = True  # done, but the answer never reaches the client
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if relay.config.roll("relay_stall_rate", "relay_stall"):
            time.sleep(relay.config["relay_stall_ms"] / 1000)
        content_type = rest[0] if rest else ("application/json; charset=utf-8" if payload else None)
        headers = rest[1] if len(rest) > 1 else None
        if truncated:
            self.close_connection = True
            headers = dict(headers or {}, Connection="close")
        self.send(status, payload, content_type, headers)

    def _hold(self, point: str, creator: str | None) -> None:
        """relay_hold: waits while the knob names `point` for a scoped creator; raises
        ClientGone if the client hangs up meanwhile."""
        relay: LithiumRelay = self.server.app
        if relay.config["relay_hold"] != point or creator is None or not relay.faults_apply(creator):
            return
        with relay.lock:
            relay.held += 1
        try:
            while relay.config["relay_hold"] == point:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if not readable:
                    continue
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        raise ClientGone()
                except OSError:
                    raise ClientGone() from None
                time.sleep(0.05)  # bytes of a next request: not a hang-up
        finally:
            with relay.lock:
                relay.held -= 1

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    do_DELETE = do_PATCH = do_PUT
