"""The relay: a re-implementation of crynux-relay@969e500's client API (era D).

Faithful parts: routes, validation order, HTTP status codes (handlers answer
only 200/400/500; unknown routes get gin's plain 404), error bodies, messages,
the signature check (gosig.py), JSON-schema validation of task_args by task
type, keccak(task_args) vs the on-chain taskHash, and learning tasks from the
chain's logs with a lag (relay_sync_lag_ms), so "Task not found on the
Blockchain" happens right after a receipt.

Not exposed: the node-side result upload (POST .../results); the simulated
nodes hand their files to `Relay.store_results` in-process.

--profile hydrogen: crynux-relay@fa0afaa (the Hydrogen network's, era B):
the same handlers, texts and signing, except no `GET /v1/now` route (gin's
plain 404), `GET /v1/inference_tasks/{id}` without the "fewer than 3 selected
nodes" check, and tasks learnt from `TaskCreated` (x3, the row with its three
nodes); `TaskSuccess` / `TaskAborted` (task id in the data) set PendingResults
/ Aborted whatever the status was (tasks/sync_block.go at fa0afaa).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
from eth_utils import keccak, to_checksum_address

from . import gojson
from .gosig import SignaturePanic, recover_signers
from .httpbase import Handler

log = logging.getLogger("devnet.relay")

# relay task status (models/inference_task.go)
CREATED_ON_CHAIN, PARAMS_UPLOADED, ABORTED, PENDING_RESULTS, RESULTS_UPLOADED = range(5)
TASK_TYPE_SD, TASK_TYPE_LLM = 0, 1

SCHEMA_DIR = Path(__file__).parent / "schemas"
# tonic.DefaultBindingHookMaxBodyBytes(32 << 20) (crynux-relay@969e500 api/app.go:42):
# gin's JSON binding reads through http.MaxBytesReader
MAX_BODY = 32 << 20
BODY_TOO_LARGE = "http: request body too large"
# the relay reports schema errors against the URL it loaded the schema from
SCHEMA_URLS = {
    TASK_TYPE_SD: "https://raw.githubusercontent.com/crynux-ai/stable-diffusion-task/main/schema/stable-diffusion-inference-task.json",
    TASK_TYPE_LLM: "https://raw.githubusercontent.com/crynux-ai/gpt-task/main/schema/gpt-inference-task.json",
}


def _go_time(ts: float) -> str:
    # Go's time.Time JSON (RFC 3339 with trimmed nanoseconds)
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


@dataclass
class SelectedNode:
    id: int
    node_address: str
    created_at: float
    result: str = ""
    is_result_selected: bool = False


@dataclass
class RelayTask:
    id: int  # the relay's DB row id (gorm.Model.ID)
    task_id: int
    creator: str  # checksummed, like common.Address.Hex()
    task_hash: str
    data_hash: str
    task_type: int
    vram_limit: int
    created_at: float
    updated_at: float
    status: int = CREATED_ON_CHAIN
    task_args: str = ""
    selected_nodes: list = field(default_factory=list)


# ---------------------------------------------------------------- Go binding


class BindError(Exception):
    """tonic.BindError: 400 validation_error with (field, message)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name, self.message = field_name, message


class _Num(str):
    """A JSON number kept as its literal text (Go decodes by target type)."""


class _Obj(list):
    """A JSON object as its (key, value) pairs, in order."""


_GO_UINT = re.compile(r"0|[1-9][0-9]*")
_GO_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def _reject_constant(name: str):
    # Python's json accepts NaN/Infinity; Go's does not
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _json_kind(value) -> str:
    if isinstance(value, _Num):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Obj):
        return "object"
    if isinstance(value, list):
        return "array"
    return "object"


def bind_json(body: bytes, struct: str, fields: list[tuple[str, str]], truncated: bool = False) -> dict:
    """Decode like gin/encoding-json into a struct of string/uint64/int64 fields.

    Go matches keys case-insensitively (exact match preferred), ignores
    unknown keys and null, reports the first type error after decoding
    everything, and ignores data after the first JSON value.

    truncated: `body` is only the first MAX_BODY bytes of a longer body. Go's
    json.Decoder then succeeds only if the value ends within them; otherwise
    its read fails with the MaxBytesReader error.
    """
    values = {name: ("" if kind == "string" else 0) for name, kind in fields}
    if not body:
        return values  # tonic skips binding for an empty body
    text = body.decode("utf-8", errors="replace")

    decoder = json.JSONDecoder(object_pairs_hook=_Obj, parse_int=_Num, parse_float=_Num, parse_constant=_reject_constant)
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise BindError("", "EOF")
    try:
        doc, _ = decoder.raw_decode(stripped)
    except ValueError as exc:
        if truncated:
            raise BindError("", BODY_TOO_LARGE) from None
        raise BindError("", f"invalid character in JSON body: {exc}") from None
    if doc is None:
        return values
    if not isinstance(doc, _Obj):
        raise BindError("", f"json: cannot unmarshal {_json_kind(doc)} into Go value of type {struct}")
    first_error = None
    kinds = dict(fields)
    for key, value in doc:
        name = key if key in kinds else next((n for n in kinds if n.lower() == key.lower()), None)
        if name is None or value is None:
            continue
        kind = kinds[name]
        error = None
        if kind == "string":
            if isinstance(value, str) and not isinstance(value, _Num):
                values[name] = value
            else:
                error = f"json: cannot unmarshal {_json_kind(value)} into Go struct field {struct}.{name} of type string"
        else:
            pattern, limit = (_GO_UINT, 2**64) if kind == "uint64" else (_GO_INT, 2**63)
            if isinstance(value, _Num) and pattern.fullmatch(value) and -limit <= int(value) < limit:
                values[name] = int(value)
            else:
                shown = value if isinstance(value, _Num) else _json_kind(value)
                error = f"json: cannot unmarshal {'number ' + shown if isinstance(value, _Num) else shown} into Go struct field {struct}.{name} of type {kind}"
        if error and first_error is None:
            first_error = error
    if first_error:
        raise BindError("", first_error)
    # lone surrogates from \ud800-style escapes are invalid UTF-8 in Go
    for name, kind in fields:
        if kind == "string":
            values[name] = values[name].encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return values


def required(values: dict, order: list[tuple[str, str]]):
    """go-playground/validator `required` on the fields in struct order."""
    for key, shown in order:
        if not values[key]:
            raise BindError(shown, "required")


# ---------------------------------------------------------------- the relay


class Relay:
    def __init__(self, chain, deployment, config, profile: str = "era-d"):
        self.era_b = profile == "hydrogen"
        self.chain = chain
        self.deployment = deployment
        self.config = config
        self.lock = threading.Lock()
        self.tasks: dict[int, RelayTask] = {}
        self.results: dict[int, list[bytes]] = {}
        self.listener = None  # the simulated nodes (set by the server)
        self.synced = 0  # last block processed
        self.requests = 0
        self.requests_by_kind: dict[str, int] = {}
        self._row_ids = 0
        self._node_row_ids = 0
        # SD: one validator per --sd-schema choice, picked per request
        self.sd_schemas = {
            name: jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"sd-{name}.json").read_text()))
            for name in ("68b52d2", "8fcf6e7", "union", "c0d652a")
        }
        self.gpt_schema = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "gpt-inference-task.json").read_text()))
        self.blinded: set[int] = set()  # tasks relay_blind_rate hid
        task = deployment.task
        self.task_address = task.address
        events = ("TaskCreated", "TaskSuccess", "TaskAborted") if self.era_b else ("TaskPending", "TaskStarted", "TaskSuccess", "TaskAborted")
        self.topics = {name: task.topic(name) for name in events}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sync_loop, name="relay-sync", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()

    # ------------------------------------------------------------ block sync

    def _sync_loop(self):
        # Process each mined block once it is relay_sync_lag_ms old.
        while not self._stop.is_set():
            lag = self.config["relay_sync_lag_ms"] / 1000
            head = self.chain.head
            wait = 0.5
            while self.synced < head:
                record = self.chain.blocks[self.synced + 1]
                due = record.mined_at + lag
                now = time.monotonic()
                if due > now:
                    wait = min(wait, due - now)
                    break
                try:
                    self._process_block(record)
                except Exception:  # never stop syncing over one bad block
                    log.exception("relay: processing block %d failed", record.number)
                self.synced = record.number
            with self.chain.new_block:
                if self.chain.head == head:
                    self.chain.new_block.wait(max(0.005, wait))

    def _process_block(self, record):
        if self.era_b:
            return self._process_block_era_b(record)
        # Per receipt, like tasks/sync_block.go: pending, started, success, aborted.
        by_tx: dict[bytes, list] = {}
        for rec in record.logs:
            if rec.address == self.task_address and rec.topics:
                by_tx.setdefault(rec.json["transactionHash"], []).append(rec)
        for logs in by_tx.values():
            started: dict[int, list[str]] = {}
            for rec in logs:
                if rec.topics[0] == self.topics["TaskStarted"]:
                    task_id = int.from_bytes(bytes.fromhex(rec.json["data"][2:66]), "big")
                    started.setdefault(task_id, []).append(to_checksum_address(rec.topics[2][12:]))
            for rec in logs:
                if rec.topics[0] == self.topics["TaskPending"]:
                    self._on_pending(rec, int(rec.json["data"][2:66], 16) in started)
            for task_id, nodes in started.items():
                self._on_started(task_id, nodes, record.timestamp)
            for rec in logs:
                if rec.topics[0] == self.topics["TaskSuccess"]:
                    data = bytes.fromhex(rec.json["data"][2:])
                    length = int.from_bytes(data[32:64], "big")
                    self._on_success(int.from_bytes(rec.topics[1], "big"), to_checksum_address(rec.topics[2][12:]), data[64 : 64 + length])
            for rec in logs:
                if rec.topics[0] == self.topics["TaskAborted"]:
                    self._on_aborted(int.from_bytes(rec.topics[1], "big"))

    def _process_block_era_b(self, record):
        # crynux-relay@fa0afaa tasks/sync_block.go: over the block range, every
        # TaskCreated (row + selected node), then every TaskSuccess, then every
        # TaskAborted; the task id is the first data word of all three.
        logs = [rec for rec in record.logs if rec.address == self.task_address and rec.topics]
        created: dict[int, dict] = {}
        for rec in logs:
            if rec.topics[0] == self.topics["TaskCreated"]:
                data = bytes.fromhex(rec.json["data"][2:])
                task_id = int.from_bytes(data[0:32], "big")
                entry = created.setdefault(task_id, {"rec": rec, "data": data, "nodes": []})
                entry["nodes"].append(to_checksum_address(rec.topics[2][12:]))
        for task_id, entry in created.items():
            self._on_created_era_b(task_id, entry["rec"], entry["data"], entry["nodes"], record.timestamp)
        for rec in logs:
            if rec.topics[0] == self.topics["TaskSuccess"]:
                data = bytes.fromhex(rec.json["data"][2:])
                length = int.from_bytes(data[64:96], "big")
                self._on_success(int.from_bytes(data[0:32], "big"), to_checksum_address(rec.topics[1][12:]), data[96 : 96 + length])
        for rec in logs:
            if rec.topics[0] == self.topics["TaskAborted"]:
                self._on_aborted(int(rec.json["data"][2:66], 16))

    def _on_created_era_b(self, task_id: int, rec, data: bytes, nodes: list[str], block_timestamp: int):
        if self.blind(task_id) or (task_id not in self.tasks and self.config.roll("relay_blind_rate", "relay_blind")):
            self.blinded.add(task_id)
            if self.listener:  # the nodes follow the chain themselves: their watchdog still runs
                self.listener.task_started(task_id, block_timestamp)
            return
        # The Go relay reads vramLimit with getTask; the same value from the createTask input.
        vram = 0
        tx = self.chain.transaction(bytes.fromhex(rec.json["transactionHash"][2:]))
        if tx and tx["input"][:10] == "0x6ab702ed":
            vram = int(tx["input"][10 + 3 * 64 : 10 + 4 * 64], 16)
        now = time.time()
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                self._row_ids += 1
                task = self.tasks[task_id] = RelayTask(
                    id=self._row_ids,
                    task_id=task_id,
                    creator=to_checksum_address(rec.topics[1][12:]),
                    task_hash="0x" + data[64:96].hex(),
                    data_hash="0x" + data[96:128].hex(),
                    task_type=int.from_bytes(data[32:64], "big"),
                    vram_limit=vram,
                    created_at=now,
                    updated_at=now,
                )
            for address in nodes:
                self._node_row_ids += 1
                task.selected_nodes.append(SelectedNode(self._node_row_ids, address, now))
            ready = task.status == PARAMS_UPLOADED and len(task.selected_nodes) >= 3
        if self.listener:
            self.listener.task_started(task_id, block_timestamp)
            if ready:
                self.listener.task_ready(task_id)

    def blind(self, task_id: int) -> bool:
        """The relay never sees this task (relay_blind_task_ids / relay_blind_rate)."""
        return task_id in self.blinded or task_id in self.config["relay_blind_task_ids"]

    def _on_pending(self, rec, started: bool):
        data = bytes.fromhex(rec.json["data"][2:])
        task_id = int.from_bytes(data[0:32], "big")
        if self.blind(task_id) or (task_id not in self.tasks and self.config.roll("relay_blind_rate", "relay_blind")):
            self.blinded.add(task_id)
            return
        # The Go relay reads vramLimit with getTask, which is 0 for a queued
        # task. Same values, without an EVM call: from the createTask input.
        vram = 0
        if started:
            tx = self.chain.transaction(bytes.fromhex(rec.json["transactionHash"][2:]))
            if tx and tx["input"][:10] == "0x043b438f":
                vram = int(tx["input"][10 + 3 * 64 : 10 + 4 * 64], 16)
        now = time.time()
        with self.lock:
            if task_id in self.tasks:
                return
            self._row_ids += 1
            self.tasks[task_id] = RelayTask(
                id=self._row_ids,
                task_id=task_id,
                creator=to_checksum_address(rec.topics[1][12:]),
                task_hash="0x" + data[64:96].hex(),
                data_hash="0x" + data[96:128].hex(),
                task_type=int.from_bytes(data[32:64], "big"),
                vram_limit=vram,
                created_at=now,
                updated_at=now,
            )

    def _on_started(self, task_id: int, nodes: list[str], block_timestamp: int):
        if self.blind(task_id):
            # the nodes follow the chain themselves: their deadline watchdog still runs
            if self.listener:
                self.listener.task_started(task_id, block_timestamp)
            return
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                return
            known = {n.node_address for n in task.selected_nodes}
            for address in nodes:
                if address not in known:
                    self._node_row_ids += 1
                    task.selected_nodes.append(SelectedNode(self._node_row_ids, address, time.time()))
            ready = task.status == PARAMS_UPLOADED and len(task.selected_nodes) >= 3
        if self.listener:
            self.listener.task_started(task_id, block_timestamp)
            if ready:
                self.listener.task_ready(task_id)

    def _on_success(self, task_id: int, result_node: str, result: bytes):
        with self.lock:
            task = self._task(task_id)
            # era D: only from ParamsUploaded; era B (fa0afaa): whatever the status
            if task is None or (task.status != PARAMS_UPLOADED and not self.era_b):
                return
            for node in task.selected_nodes:
                if node.node_address == result_node:
                    node.result = "0x" + result.hex()
                    node.is_result_selected = True
            task.status = PENDING_RESULTS
            task.updated_at = time.time()
        if self.listener:
            self.listener.task_success_synced(task_id)

    def _on_aborted(self, task_id: int):
        with self.lock:
            task = self._task(task_id)
            # era D: not after ResultsUploaded; era B (fa0afaa): whatever the status
            if task is None or (task.status == RESULTS_UPLOADED and not self.era_b):
                return
            task.status = ABORTED
            task.updated_at = time.time()
        if self.listener:
            self.listener.task_aborted_synced(task_id)

    # ------------------------------------------------------------ node side

    def _task(self, task_id: int) -> RelayTask | None:
        """The relay's row for a task (lock held); None for a blind task."""
        return None if self.blind(task_id) else self.tasks.get(task_id)

    def task_snapshot(self, task_id: int) -> RelayTask | None:
        with self.lock:
            return self._task(task_id)

    def store_results(self, task_id: int, files: list[bytes]) -> bool:
        """The result node's upload (upload_result.go): only in PendingResults."""
        with self.lock:
            task = self._task(task_id)
            if task is None or task.status != PENDING_RESULTS:
                return False
            self.results[task_id] = list(files)
            task.status = RESULTS_UPLOADED
            task.updated_at = time.time()
            return True

    # ------------------------------------------------------------ JSON views

    @staticmethod
    def task_json(task: RelayTask, with_nodes: bool) -> str:
        q = gojson.quote
        if with_nodes:
            nodes = "[" + ",".join(
                f'{{"ID":{n.id},"CreatedAt":{q(_go_time(n.created_at))},"UpdatedAt":{q(_go_time(n.created_at))},'
                f'"DeletedAt":null,"InferenceTaskID":{task.id},"NodeAddress":{q(n.node_address)},'
                f'"Result":{q(n.result)},"IsResultSelected":{"true" if n.is_result_selected else "false"}}}'
                for n in task.selected_nodes
            ) + "]"
        else:
            nodes = "null"  # not preloaded by the create handler
        return (
            f'{{"ID":{task.id},"CreatedAt":{q(_go_time(task.created_at))},"UpdatedAt":{q(_go_time(task.updated_at))},'
            f'"DeletedAt":null,"task_args":{q(task.task_args)},"task_id":{task.task_id},"creator":{q(task.creator)},'
            f'"task_hash":{q(task.task_hash)},"data_hash":{q(task.data_hash)},"status":{task.status},'
            f'"task_type":{task.task_type},"vram_limit":{task.vram_limit},"SelectedNodes":{nodes}}}'
        )

    # ------------------------------------------------------------ handlers

    @staticmethod
    def _signers(fields: list[tuple[str, object]], timestamp: int, signature: str) -> list[str] | None:
        payloads = [gojson.marshal_object(fields)]
        if any(isinstance(v, str) and gojson.needs_alternatives(v) for _, v in fields):
            payloads.append(gojson.marshal_object(fields, go122=True))
        return recover_signers(payloads, timestamp, signature)

    @staticmethod
    def _pick(signers: list[str], *allowed: str) -> str:
        for s in signers:
            if s in allowed:
                return s
        return signers[0]

    def create_task(self, body: bytes, truncated: bool = False):
        """POST /v1/inference_tasks (create_task.go)."""
        v = bind_json(
            body,
            "TaskInputWithSignature",
            [("task_args", "string"), ("task_id", "uint64"), ("timestamp", "int64"), ("signature", "string")],
            truncated,
        )
        required(v, [("task_args", "task_args"), ("task_id", "task_id"), ("timestamp", "timestamp"), ("signature", "signature")])
        signers = self._signers([("task_args", v["task_args"]), ("task_id", v["task_id"])], v["timestamp"], v["signature"])
        if signers is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self._task(v["task_id"])
            if task is None:
                raise BindError("task_id", "Task not found on the Blockchain")
            task_type, creator = task.task_type, task.creator
        try:
            doc = json.loads(v["task_args"], parse_constant=_reject_constant)
        except ValueError as exc:  # the Go relay answers a json.Unmarshal error with 500
            return 500, json.dumps({"message": f"invalid character in task_args: {exc}"}).encode()
        validator = self.sd_schemas[self.config["sd_schema"]] if task_type == TASK_TYPE_SD else self.gpt_schema
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
        if error is not None:
            location = "/" + "/".join(str(p) for p in error.absolute_path)
            keyword = "/".join(str(p) for p in error.absolute_schema_path)
            url = SCHEMA_URLS[TASK_TYPE_SD if task_type == TASK_TYPE_SD else TASK_TYPE_LLM]
            raise BindError("task_args", f"jsonschema: '{location if location != '/' else ''}' does not validate with {url}#/{keyword}: {error.message}")
        signer = self._pick(signers, creator)
        if signer != creator:
            raise BindError("signature", "Signer not allowed")
        with self.lock:
            if task.status != CREATED_ON_CHAIN:
                raise BindError("task_id", "Task already uploaded")
            if "0x" + keccak(v["task_args"].encode("utf-8")).hex() != task.task_hash:
                raise BindError("task_hash", "Task hash mismatch")
            task.task_args = v["task_args"]
            task.status = PARAMS_UPLOADED
            task.updated_at = time.time()
            ready = len(task.selected_nodes) >= 3
            payload = self.task_json(task, with_nodes=False)
        if ready and self.listener:
            self.listener.task_ready(task.task_id)
        return 200, ('{"message":"success","data":' + payload + "}").encode()

    @staticmethod
    def _path_task_id(raw: str) -> int:
        # strconv.ParseUint(s, 10, 64) via tonic's path binding
        if not (raw.isascii() and raw.isdigit()):
            raise BindError("task_id", f'strconv.ParseUint: parsing "{raw}": invalid syntax')
        if int(raw) >= 2**64:
            raise BindError("task_id", f'strconv.ParseUint: parsing "{raw}": value out of range')
        return int(raw)

    @staticmethod
    def _query_int(query: dict, name: str) -> int:
        raw = query.get(name, [""])[0]
        if raw == "":
            return 0
        if not re.fullmatch(r"[+-]?[0-9]+", raw) or not -(2**63) <= int(raw) < 2**63:
            raise BindError(name, f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        return int(raw)

    def get_task(self, task_id_raw: str, query: dict):
        """GET /v1/inference_tasks/{task_id} (get_task_by_id.go)."""
        timestamp = self._query_int(query, "timestamp")
        signature = query.get("signature", [""])[0]
        task_id = self._path_task_id(task_id_raw)
        required({"task_id": task_id, "timestamp": timestamp, "signature": signature},
                 [("task_id", "task_id"), ("timestamp", "timestamp"), ("signature", "signature")])
        signers = self._signers([("task_id", task_id)], timestamp, signature)
        if signers is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self._task(task_id)
            if task is None:
                raise BindError("task_id", "Task not found")
            # the "fewer than 3 selected nodes" check came after fa0afaa (era B)
            if task.status < PARAMS_UPLOADED or (len(task.selected_nodes) < 3 and not self.era_b):
                raise BindError("task_id", "Task not ready")
            allowed = [task.creator] + [n.node_address for n in task.selected_nodes]
            if self._pick(signers, *allowed) not in allowed:
                raise BindError("signature", "Signer not allowed")
            payload = self.task_json(task, with_nodes=True)
        return 200, ('{"message":"success","data":' + payload + "}").encode()

    def get_result(self, task_id_raw: str, image_num: str, query: dict):
        """GET /v1/inference_tasks/{task_id}/results/{image_num} (get_result.go)."""
        timestamp = self._query_int(query, "timestamp")
        signature = query.get("signature", [""])[0]
        task_id = self._path_task_id(task_id_raw)
        # GetResultInputWithSignature: Timestamp/Signature have no json tag,
        # so the validator reports them by their Go field names.
        required({"image_num": image_num, "task_id": task_id, "timestamp": timestamp, "signature": signature},
                 [("image_num", "image_num"), ("task_id", "task_id"), ("timestamp", "Timestamp"), ("signature", "Signature")])
        signers = self._signers([("image_num", image_num), ("task_id", task_id)], timestamp, signature)
        if signers is None:
            raise BindError("signature", "Invalid signature")
        with self.lock:
            task = self._task(task_id)
            if task is None:
                raise BindError("task_id", "Task not found")
            if self._pick(signers, task.creator) != task.creator:
                raise BindError("signature", "Signer not allowed")
            if task.status != RESULTS_UPLOADED:
                raise BindError("task_id", "Task results not uploaded")
            files = self.results.get(task_id, [])
            ext = ".png" if task.task_type == TASK_TYPE_SD else ".json"
        index = int(image_num) if re.fullmatch(r"0|[1-9][0-9]{0,3}", image_num) else -1
        if not 0 <= index < len(files):
            raise BindError("image_num", "File not found")
        headers = {
            "Content-Description": "File Transfer",
            "Content-Transfer-Encoding": "binary",
            "Content-Disposition": f"attachment; filename={image_num}{ext}",
            "Accept-Ranges": "bytes",
        }
        return 200, files[index], "application/octet-stream", headers


_ROUTE_TASK = re.compile(r"/v1/inference_tasks/([^/]+)")
_ROUTE_RESULT = re.compile(r"/v1/inference_tasks/([^/]+)/results/([^/]+)")


class RelayHandler(Handler):
    def _route(self, method: str):
        relay: Relay = self.server.app
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        # always drain it: keep-alive needs a clean stream
        body, truncated = self.read_body_prefix(MAX_BODY)
        if method == "GET" and path == "/v1/now" and not relay.era_b:  # no such route at fa0afaa
            action = lambda: (200, json.dumps({"message": "success", "data": {"now": int(time.time())}}, separators=(",", ":")).encode())
        elif method == "POST" and path == "/v1/inference_tasks":
            action = lambda: relay.create_task(body, truncated)
        elif method == "GET" and (m := _ROUTE_RESULT.fullmatch(path)):
            action = lambda: relay.get_result(m.group(1), m.group(2), query)
        elif method == "GET" and (m := _ROUTE_TASK.fullmatch(path)):
            action = lambda: relay.get_task(m.group(1), query)
        else:
            self.send(404, b"404 page not found", "text/plain")
            return
        relay.requests += 1
        route = "now" if path == "/v1/now" else "upload" if method == "POST" else "result" if _ROUTE_RESULT.fullmatch(path) else "task"
        if relay.config.roll("relay_http500_rate", "relay_http500"):
            self.send(500, b'{"message":"devnet: injected relay fault"}', "application/json; charset=utf-8")
            return
        try:
            result = action()
        except BindError as exc:
            result = (400, json.dumps(
                {"message": "validation_error", "data": {"field_name": exc.field_name, "message": exc.message}},
                separators=(",", ":"), ensure_ascii=False).encode())
        except SignaturePanic:
            result = (500, b"")  # gin.Recovery after a Go panic
        except Exception as exc:
            log.exception("relay handler failed")
            result = (500, json.dumps({"message": f"devnet relay error: {exc}"}).encode())
        if relay.config.roll("relay_stall_rate", "relay_stall"):
            time.sleep(relay.config["relay_stall_ms"] / 1000)
        status, payload, *rest = result
        key = f"{route} {status}"  # e.g. "result 400": results not uploaded yet
        relay.requests_by_kind[key] = relay.requests_by_kind.get(key, 0) + 1
        content_type = rest[0] if rest else ("application/json; charset=utf-8" if payload else None)
        headers = rest[1] if len(rest) > 1 else None
        if truncated:
            # net/http's MaxBytesReader marks the connection to close after the reply
            self.close_connection = True
            headers = dict(headers or {}, Connection="close")
        self.send(status, payload, content_type, headers)

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    do_DELETE = do_PATCH = do_PUT
