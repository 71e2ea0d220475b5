"""Run-time knobs of the devnet (fault injection and simulation speed).

Each knob is a start-up flag (`--name-with-dashes`) and a key of the admin
API (`GET/POST /admin/config`). Rates are probabilities in [0, 1]; durations
carry their unit in the name. Besides numbers there are choice knobs (a string
from a fixed set) and id-list knobs (a JSON array of task ids; on the command
line a comma-separated list).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


def id_list(text) -> tuple:
    """Command-line form of an id-list knob: "5,7,9" (empty = none)."""
    if isinstance(text, (list, tuple)):
        return tuple(text)
    return tuple(int(part) for part in str(text).split(",") if part.strip())


def wei(text) -> int:
    """A token amount in wei: an integer or its decimal string (the admin API
    answers with the string, which JSON number parsers cannot round)."""
    if isinstance(text, bool):
        raise ValueError("expected a wei amount")
    if isinstance(text, int):
        value = text
    elif isinstance(text, str) and text.isascii() and text.isdigit():
        value = int(text)
    else:
        raise ValueError("expected a wei amount (decimal string)")
    if not 0 <= value < 2**256:
        raise ValueError("wei amount out of range")
    return value


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type  # int, float, str (with choices), id_list or wei
    default: object
    help: str
    minimum: float = 0
    maximum: float | None = None
    choices: tuple = ()


KNOBS = [
    # chain
    Knob("block_time_ms", int, 0, "0 = mine every transaction at once (automine); N = mine a block every N ms"),
    Knob("idle_block_ms", int, 1000, "automine: mine an empty block when no block was mined for this long, so block.timestamp (seen by eth_call/eth_estimateGas) keeps moving; 0 = never"),
    Knob("min_gas_price_wei", int, 0, "a floor under the gas price, raised at run time as a busy chain raises its base fee: client transactions whose price (fee cap) is below it wait in the pool, replaceable, until it falls or they are replaced; eth_gasPrice suggests at least it plus the tip"),
    Knob("tx_mine_delay_ms", int, 0, "client transactions wait this long in the pending pool before they can be mined"),
    Knob("tx_drop_rate", float, 0, "fraction of accepted client transactions silently forgotten (hash returned, never mined)", maximum=1),
    # JSON-RPC node flavour and limits
    Knob("rpc_flavor", str, "geth", "geth = go-ethereum error wordings and txpool; ethermint = the era-D chain's Ethermint/Cosmos node (its error texts, no nonce gaps, no replacement, revert shapes)", choices=("geth", "ethermint")),
    Knob("logs_max_block_range", int, 10000, "eth_getLogs: largest toBlock - fromBlock (Ethermint json-rpc.block-range-cap); 0 = unlimited"),
    Knob("logs_max_results", int, 10000, "eth_getLogs: most logs one query may return (Ethermint json-rpc.logs-cap); 0 = unlimited"),
    # JSON-RPC faults (client traffic only)
    Knob("rpc_error_rate", float, 0, "fraction of JSON-RPC calls answered with error -32603 instead of being executed", maximum=1),
    Knob("rpc_http500_rate", float, 0, "fraction of JSON-RPC HTTP requests answered with HTTP 500 (nothing executed)", maximum=1),
    Knob("rpc_stall_rate", float, 0, "fraction of JSON-RPC HTTP requests that are executed, then answered only after rpc_stall_ms", maximum=1),
    Knob("rpc_stall_ms", int, 10000, "stall length for rpc_stall_rate"),
    # relay faults
    Knob("relay_http500_rate", float, 0, "fraction of relay /v1 requests answered with HTTP 500 (nothing executed)", maximum=1),
    Knob("relay_stall_rate", float, 0, "fraction of relay /v1 requests that are executed, then answered only after relay_stall_ms", maximum=1),
    Knob("relay_stall_ms", int, 10000, "stall length for relay_stall_rate"),
    Knob("relay_sync_lag_ms", int, 500, "the relay sees a block only this long after it was mined"),
    Knob("relay_blind_task_ids", id_list, (), "task ids the relay never sees (like the Go relay skipping a block after an RPC error): uploads answer 'Task not found on the Blockchain' forever"),
    Knob("relay_blind_rate", float, 0, "fraction of new tasks the relay never sees", maximum=1),
    Knob("sd_schema", str, "68b52d2", "SD task_args schema the relay enforces: 68b52d2 (era D, base_model a string), 8fcf6e7 (Aug 2024, adds version/scheduler, object base_model), union (either) or c0d652a (the Hydrogen relay's, the same rules as 68b52d2; --profile hydrogen's default)", choices=("68b52d2", "8fcf6e7", "union", "c0d652a")),
    # simulated nodes
    Knob("nodes", int, 12, "registered simulated nodes (3 per running task)", maximum=1024),
    Knob("node_vram_gb", int, 24, "VRAM of every simulated node; tasks with a larger vramLimit stay queued"),
    Knob("node_gpu_kinds", int, 2, "GPU models among the nodes (node i has model i % N); GPT tasks need 3 free nodes of one model", minimum=1, maximum=16),
    Knob("task_duration_ms", int, 1000, "time from the task arguments being uploaded to the result on chain"),
    Knob("results_upload_delay_ms", int, 300, "time from TaskSuccess to the results being downloadable (TaskResultUploaded)"),
    Knob("abort_rate", float, 0, "fraction of tasks that end in TaskAborted instead of success", maximum=1),
    Knob("stuck_rate", float, 0, "fraction of tasks the nodes never finish", maximum=1),
    Knob("task_timeout_s", int, 900, "task deadline: timeout = block.timestamp + this (Task.updateTimeout)"),
    Knob("watchdog_delay_ms", int, 5000, "nodes cancel an unfinished task this long after its deadline; -1 = never", minimum=-1),
    Knob("queue_size_limit", int, 50, "TaskQueue size limit; a full queue evicts its cheapest task", maximum=1024),
    # --profile hydrogen only
    Knob("task_fee_per_node", wei, 10 * 10**18, "hydrogen: Task.updateTaskFeePerNode (wei of CNX; createTask takes 3x); no effect in era D"),
    # --profile lithium only (the Relay's config.yml task_pricing and the simulated nodes)
    Knob("queue_timeout_s", float, 21600, "lithium: queue_timeout_seconds: a task still queued this long after create ends EndAborted/Timeout, refunded", minimum=0.1),
    Knob("app_validation_timeout_s", float, 600, "lithium: app_validation_timeout_seconds: ScoreReady/ErrorReported this long without the creator's validation ends EndAborted/CreatorValidationTimeout: the node is paid, nothing refunded", minimum=0.1),
    Knob("result_upload_timeout_s", float, 600, "lithium: result_upload_timeout_seconds: validated this long without the node's results ends EndAborted/ResultUploadTimeout, refunded", minimum=0.1),
    Knob("execution_timeout_s", int, 0, "lithium: the execution timeout the relay gives a started task; 0 = computed: ceil(2 x estimated seconds) clamped to [60, 7200]"),
    Knob("error_report_rate", float, 0, "lithium: fraction of started tasks whose node reports an error (ErrorReported)", maximum=1),
    Knob("wrong_result_rate", float, 0, "lithium: fraction of started tasks whose node computes a different result (a group invalidates it)", maximum=1),
    Knob("upload_stuck_rate", float, 0, "lithium: fraction of validated tasks whose node never uploads the results (ResultUploadTimeout)", maximum=1),
    Knob("vrf_select_share", float, 0, "lithium: 0 = sampling seeds at random (1 % of tasks selected by the VRF); p > 0 = for creators whose keys the devnet knows, seeds chosen so that a share p of their tasks is selected", maximum=1),
    Knob("distance_threshold", int, 5, "lithium: task.distance_threshold: SD group scores agree when every 8-byte block differs in fewer bits"),
    Knob("deposit_confirmations", int, 1, "lithium: a CNX transfer to the deposit address is credited once its block is this many blocks deep (1 = in its own block, as crynux-relay@24ffc26 scans to the latest block)", minimum=1),
    Knob("relay_hold", str, "", "lithium: holds the scoped creators' requests of one route at one point until the knob changes: "
         "'create:before' / 'validate:before' after the signature check, before anything is done (a client that hangs up meanwhile "
         "leaves nothing done, as a request a proxy still held); 'create:after' / 'validate:after' done, the answer held "
         "(a test kills the client at a precise point)", choices=("", "create:before", "create:after", "validate:before", "validate:after")),
    Knob("relay_drop_answer_rate", float, 0, "lithium: fraction of POST requests executed, then answered by closing the connection (the answer is lost)", maximum=1),
]

KNOBS_BY_NAME = {k.name: k for k in KNOBS}


class Config:
    """Thread-safe knob values. Readers get a consistent snapshot dict."""

    def __init__(self, initial: dict | None = None, seed: int | None = None):
        self._lock = threading.Lock()
        self._values = {k.name: k.default for k in KNOBS}
        if initial:
            self._values.update(self.validate(initial))
        self._startup = dict(self._values)
        self._listeners = []
        self._random = random.Random(seed)
        self.fired: dict[str, int] = {}

    @staticmethod
    def validate(update: dict) -> dict:
        clean = {}
        for name, value in update.items():
            knob = KNOBS_BY_NAME.get(name)
            if knob is None:
                raise ValueError(f"unknown knob {name!r}")
            if knob.kind is str:
                if value not in knob.choices:
                    raise ValueError(f"{name}: expected one of {', '.join(knob.choices)}")
                clean[name] = value
                continue
            if knob.kind is wei:
                try:
                    clean[name] = wei(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
                continue
            if knob.kind is id_list:
                if isinstance(value, str):
                    try:
                        value = id_list(value)
                    except ValueError:
                        raise ValueError(f"{name}: expected task ids") from None
                if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
                    raise ValueError(f"{name}: expected a list of non-negative integer task ids")
                clean[name] = tuple(dict.fromkeys(value))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name}: expected a number")
            if knob.kind is int:
                if float(value) != int(value):
                    raise ValueError(f"{name}: expected an integer")
                value = int(value)
            else:
                value = float(value)
            if value < knob.minimum or (knob.maximum is not None and value > knob.maximum):
                raise ValueError(f"{name}: out of range [{knob.minimum}, {knob.maximum if knob.maximum is not None else 'inf'}]")
            clean[name] = value
        return clean

    def __getitem__(self, name: str):
        return self._values[name]

    def snapshot(self) -> dict:
        with self._lock:
            return {k: list(v) if isinstance(v, tuple) else str(v) if KNOBS_BY_NAME[k].kind is wei else v
                    for k, v in self._values.items()}

    def on_change(self, callback):
        """callback(changed: dict) runs after every update that changes values."""
        self._listeners.append(callback)

    def update(self, update: dict) -> dict:
        clean = self.validate(update)
        with self._lock:
            changed = {k: v for k, v in clean.items() if self._values[k] != v}
            self._values.update(clean)
        if changed:
            for callback in self._listeners:
                callback(changed)
        return self.snapshot()

    def reset(self) -> dict:
        return self.update(self._startup)

    def roll(self, rate_knob: str, counter: str | None = None) -> bool:
        """True with the probability given by `rate_knob`; counts hits."""
        rate = self._values[rate_knob]
        if rate <= 0:
            return False
        with self._lock:
            hit = rate >= 1 or self._random.random() < rate
            if hit:
                key = counter or rate_knob
                self.fired[key] = self.fired.get(key, 0) + 1
        return hit

    def fired_snapshot(self) -> dict:
        with self._lock:
            return dict(self.fired)

    def count(self, counter: str, n: int = 1):
        with self._lock:
            self.fired[counter] = self.fired.get(counter, 0) + n
