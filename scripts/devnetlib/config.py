"""Run-time knobs of the devnet (fault injection and simulation speed).

Each knob is a start-up flag (`--name-with-dashes`) and a key of the admin
API (`GET/POST /admin/config`). Rates are probabilities in [0, 1]; durations
carry their unit in the name.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type  # int or float
    default: float
    help: str
    minimum: float = 0
    maximum: float | None = None


KNOBS = [
    # chain
    Knob("block_time_ms", int, 0, "0 = mine every transaction at once (automine); N = mine a block every N ms"),
    Knob("tx_mine_delay_ms", int, 0, "client transactions wait this long in the pending pool before they can be mined"),
    Knob("tx_drop_rate", float, 0, "fraction of accepted client transactions silently forgotten (hash returned, never mined)", maximum=1),
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
    # simulated nodes
    Knob("nodes", int, 12, "registered simulated nodes (3 per running task)", maximum=1024),
    Knob("node_vram_gb", int, 24, "VRAM of every simulated node; tasks with a larger vramLimit stay queued"),
    Knob("task_duration_ms", int, 1000, "time from the task arguments being uploaded to the result on chain"),
    Knob("results_upload_delay_ms", int, 300, "time from TaskSuccess to the results being downloadable (TaskResultUploaded)"),
    Knob("abort_rate", float, 0, "fraction of tasks that end in TaskAborted instead of success", maximum=1),
    Knob("stuck_rate", float, 0, "fraction of tasks the nodes never finish", maximum=1),
    Knob("task_timeout_s", int, 900, "task deadline: timeout = block.timestamp + this (Task.updateTimeout)"),
    Knob("watchdog_delay_ms", int, 5000, "nodes cancel an unfinished task this long after its deadline; -1 = never", minimum=-1),
    Knob("queue_size_limit", int, 50, "TaskQueue size limit; a full queue evicts its cheapest task", maximum=1024),
]

KNOBS_BY_NAME = {k.name: k for k in KNOBS}


class Config:
    """Thread-safe knob values. Readers get a consistent snapshot dict."""

    def __init__(self, initial: dict | None = None, seed: int | None = None):
        self._lock = threading.Lock()
        self._values = {k.name: k.kind(k.default) for k in KNOBS}
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
            return dict(self._values)

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
