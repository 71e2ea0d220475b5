"""Simulated Crynux nodes.

They learn about tasks through the relay (which follows the chain with its
sync lag) and act on chain through the operator account (owner-only `dev*`
functions of the Task contract):

    args uploaded + task started
      --task_duration_ms-->  devReportSuccess (TaskSuccess; 2 nodes paid 18/50, 12/50)
      relay syncs TaskSuccess --results_upload_delay_ms--> files on the relay
      (ResultsUploaded) + devReportResultsUploaded (result node paid the rest,
      TaskResultUploaded, delete)
    or "Task error reported"
      --task_duration_ms-->  devReportError (two nodes report the error and are
      paid 20/50 and 18/50; TaskAborted, aborted=true)
      relay syncs TaskAborted --results_upload_delay_ms--> devFinishAborted
      (the third node reports too and is paid the rest; task deleted)
    or "Task result illegal"
      --task_duration_ms-->  devReportIllegal (three different results: fee
      back to the creator, nodes freed, TaskAborted, task deleted)
    stuck: nothing; the watchdog cancels (devNodeCancel) watchdog_delay_ms
    after the deadline, like real nodes calling cancelTask.

Per-task markers in the uploaded task_args text (for parallel tests):
    devnet:abort    -> TaskAborted "Task error reported"
    devnet:illegal  -> TaskAborted "Task result illegal"
    devnet:stuck    -> never finished (only cancel after the deadline)
    devnet:slow     -> 5x task_duration_ms
The admin API can set a task's outcome too (POST /admin/tasks/{id}/outcome),
which wins over the markers.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

from eth_keys import keys
from eth_utils import keccak

from .results import task_results

log = logging.getLogger("devnet.nodes")

ABORT_REASONS = ("Task error reported", "Task result illegal")
FORCED_REASONS = {"success": None, "error": ABORT_REASONS[0], "illegal": ABORT_REASONS[1], "stuck": None}
# A node action frees up to 3 nodes and may start queued tasks; popTask scans the queue
# (up to 50 entries), which alone can pass 2M gas. Unused gas costs the operator nothing.
NODE_TX_GAS = 15_000_000
BATCH = 64  # node addresses per registration transaction


def node_address(index: int) -> bytes:
    key = keys.PrivateKey(keccak(f"crynux-devnet node {index}".encode()))
    return key.public_key.to_canonical_address()


class Nodes:
    def __init__(self, deployment, relay, config):
        self.deployment, self.relay, self.config = deployment, relay, config
        self.task = deployment.task
        self.registered: list[bytes] = []
        self.outcomes: dict[int, str] = {}  # task id -> success | abort:<reason> | stuck
        self.forced: dict[int, str] = {}  # admin: task id -> success | error | illegal | stuck
        self.pending_files: dict[int, list[bytes]] = {}
        self.counts = {"succeeded": 0, "aborted": 0, "stuck": 0, "watchdog_cancelled": 0}
        self._queue: list = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._admin_lock = threading.Lock()
        self._ready_lock = threading.Lock()  # task_ready comes from two threads
        relay.listener = self
        config.on_change(self._on_config)
        self.set_node_count(config["nodes"])
        self._thread = threading.Thread(target=self._run, name="nodes", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    # ------------------------------------------------------------ registry

    def _register(self, first: int, addresses: list[bytes]):
        kinds = self.config["node_gpu_kinds"]
        for i in range(0, len(addresses), BATCH):
            batch = addresses[i : i + BATCH]
            gpus = [(first + i + j) % kinds for j in range(len(batch))]
            self.deployment.transact(self.task, "devRegisterNodes", batch, gpus)

    def set_node_count(self, n: int):
        with self._admin_lock:
            current = len(self.registered)
            if n > current:
                new = [node_address(i) for i in range(current, n)]
                self._register(current, new)
                self.registered.extend(new)
            elif n < current:
                gone = self.registered[n:]
                for i in range(0, len(gone), BATCH):
                    self.deployment.transact(self.task, "devUnregisterNodes", gone[i : i + BATCH])
                del self.registered[n:]

    def _on_config(self, changed: dict):
        # runs in the admin request thread; the change is mined before it returns
        if "nodes" in changed:
            self.set_node_count(changed["nodes"])
        if "node_gpu_kinds" in changed:
            with self._admin_lock:  # node i moves to model i % kinds
                self._register(0, list(self.registered))
        if "node_vram_gb" in changed:
            self.deployment.transact(self.task, "devSetNodeVram", changed["node_vram_gb"])
        if "task_timeout_s" in changed:
            self.deployment.transact(self.task, "updateTimeout", changed["task_timeout_s"])
        if "queue_size_limit" in changed:
            self.deployment.transact(self.deployment.queue, "updateSizeLimit", changed["queue_size_limit"])

    # ------------------------------------------------------------ scheduling

    def _at(self, delay_s: float, fn, *args):
        with self._cv:
            heapq.heappush(self._queue, (time.monotonic() + max(0.0, delay_s), next(self._seq), fn, args))
            self._cv.notify()

    def _run(self):
        while not self._stop.is_set():
            with self._cv:
                while not self._stop.is_set():
                    now = time.monotonic()
                    if self._queue and self._queue[0][0] <= now:
                        _, _, fn, args = heapq.heappop(self._queue)
                        break
                    self._cv.wait(min(0.5, self._queue[0][0] - now) if self._queue else 0.5)
                else:
                    return
            try:
                fn(*args)
            except Exception:
                log.exception("node action %s%r failed", getattr(fn, "__name__", fn), args)

    def _chain_task(self, task_id: int):
        info = self.deployment.call(self.task, "getTask", task_id)
        return {"id": info[0], "resultNode": info[13], "aborted": info[14], "timeout": info[15]}

    # ------------------------------------------------------------ relay events

    def task_started(self, task_id: int, block_timestamp: int):
        """TaskStarted synced: arm the watchdog near the task's deadline (the
        watchdog reads the exact deadline from getTask when it fires)."""
        self._at(block_timestamp + self.config["task_timeout_s"] + 1 - time.time(), self._watchdog, task_id)

    def task_ready(self, task_id: int):
        """Arguments uploaded and three nodes selected: start computing."""
        task = self.relay.task_snapshot(task_id)
        if task is None:
            return
        with self._ready_lock:
            if task_id in self.outcomes:
                return
            self.outcomes[task_id] = "starting"
        args = task.task_args
        duration = self.config["task_duration_ms"] / 1000
        if "devnet:slow" in args:
            duration *= 5
        forced = self.forced.get(task_id)
        if forced == "stuck" or (forced is None and ("devnet:stuck" in args or self.config.roll("stuck_rate", "task_stuck"))):
            self.outcomes[task_id] = "stuck"
            self.counts["stuck"] += 1
            return
        if forced is not None:
            reason = FORCED_REASONS[forced]
        elif "devnet:abort" in args:
            reason = ABORT_REASONS[0]
        elif "devnet:illegal" in args:
            reason = ABORT_REASONS[1]
        elif self.config.roll("abort_rate", "task_aborted"):
            reason = ABORT_REASONS[task_id % 2]
        else:
            reason = None
        self.outcomes[task_id] = f"abort:{reason}" if reason else "success"
        self._at(duration, self._finish, task_id, task.task_type, args, reason)

    def force_outcome(self, task_id: int, outcome: str) -> str:
        """Admin: the task's outcome. Before its arguments reach the nodes it is
        kept for then; a task the nodes left stuck gets it at once. Returns
        "pending", "now" or "too late"."""
        if outcome not in FORCED_REASONS:
            raise ValueError(f"outcome must be one of {', '.join(FORCED_REASONS)}")
        with self._ready_lock:
            state = self.outcomes.get(task_id)
            self.forced[task_id] = outcome
            if state is None:
                return "pending"
            if state != "stuck" or outcome == "stuck":
                return "too late" if state != "stuck" else "now"
            reason = FORCED_REASONS[outcome]
            self.outcomes[task_id] = f"abort:{reason}" if reason else "success"
            self.counts["stuck"] -= 1
        task = self.relay.task_snapshot(task_id)
        args = task.task_args if task else ""
        task_type = task.task_type if task else 0
        self._at(0, self._finish, task_id, task_type, args, reason)
        return "now"

    def task_aborted_synced(self, task_id: int):
        """The relay saw TaskAborted("Task error reported"): the third node
        reports its error later."""
        if self.outcomes.get(task_id, "") == "abort:" + ABORT_REASONS[0]:
            self._at(self.config["results_upload_delay_ms"] / 1000, self._cleanup_abort, task_id)

    def task_success_synced(self, task_id: int):
        """The relay accepted TaskSuccess: upload the files after the delay."""
        self._at(self.config["results_upload_delay_ms"] / 1000, self._upload, task_id)

    # ------------------------------------------------------------ actions

    def _finish(self, task_id: int, task_type: int, args: str, reason: str | None):
        info = self._chain_task(task_id)
        if not info["id"] or info["aborted"] or int(info["resultNode"], 16):
            return  # cancelled meanwhile
        if reason:
            fn = "devReportError" if reason == ABORT_REASONS[0] else "devReportIllegal"
            self.deployment.transact(self.task, fn, task_id, task_id % 3, wait=False, gas=NODE_TX_GAS)
            self.counts["aborted"] += 1
            return  # for an error report, devFinishAborted follows once the relay has seen TaskAborted
        files, result = task_results(task_id, task_type, args)
        self.pending_files[task_id] = files
        self.deployment.transact(self.task, "devReportSuccess", task_id, result, task_id % 3, wait=False, gas=NODE_TX_GAS)

    def _upload(self, task_id: int):
        files = self.pending_files.pop(task_id, None)
        if files is None or not self.relay.store_results(task_id, files):
            return
        self.counts["succeeded"] += 1
        self.deployment.transact(self.task, "devReportResultsUploaded", task_id, wait=False, gas=NODE_TX_GAS)

    def _cleanup_abort(self, task_id: int):
        info = self._chain_task(task_id)
        if info["id"] and info["aborted"]:
            self.deployment.transact(self.task, "devFinishAborted", task_id, wait=False, gas=NODE_TX_GAS)

    def _watchdog(self, task_id: int):
        info = self._chain_task(task_id)
        if not info["id"] or info["aborted"] or int(info["resultNode"], 16):
            return  # finished (or deleted)
        delay = self.config["watchdog_delay_ms"]
        if delay < 0:
            # disabled for now; look again later in case it is re-enabled
            self._at(1.0, self._watchdog, task_id)
            return
        due = info["timeout"] + 1 + delay / 1000
        if time.time() < due:
            self._at(due - time.time(), self._watchdog, task_id)
            return
        self.counts["watchdog_cancelled"] += 1
        self.deployment.transact(self.task, "devNodeCancel", task_id, wait=False, gas=NODE_TX_GAS)
