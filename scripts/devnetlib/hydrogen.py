"""--profile hydrogen: the Hydrogen network (era B, crynux-contracts@bf05e39).

HydrogenDeployment: the CNX token (CrynuxToken.vy, OpenZeppelin 4.9 ERC20
behaviour) and the era-B Task contract (HydrogenTask.vy, Node.sol folded in),
the test accounts funded with CNX.

HydrogenNodes: simulated nodes that act like crynux-node's era-B task runner
(crynux-node@53f111e src/crynux_server/task/task_runner.py), each sending its
own transactions from its own key to the real node functions:

    args uploaded + TaskCreated synced --task_duration_ms-->
      success: the three nodes submitTaskResultCommitment (the third one:
        TaskResultCommitmentsReady), then discloseTaskResult; the second
        disclosure pays the second node taskFeePerNode and emits TaskSuccess
        (result node = first discloser), the third pays the third node;
        the relay syncs TaskSuccess --results_upload_delay_ms--> the result
        node uploads the files and calls reportResultsUploaded (paid; the
        task is deleted once no selected node has a task any more)
      "Task error reported": two nodes reportTaskError (both paid,
        TaskAborted); the relay syncs it --results_upload_delay_ms--> the
        third node reports too (paid, task deleted): nothing is refunded
      "Task result illegal": three different results committed and
        disclosed: the fee goes back to the creator, TaskAborted, deleted
      stuck: nothing; a selected node calls cancelTask watchdog_delay_ms
        after the deadline (the runner's timeout), which refunds the rest.
"""

from __future__ import annotations

import logging
import time

from eth_abi import encode as abi_encode
from eth_keys import keys
from eth_utils import keccak

from .contracts import Contract, Deployment
from .nodes import ABORT_REASONS, Nodes
from .results import task_results

log = logging.getLogger("devnet.hydrogen")

CHAIN_ID = 42  # the Hydrogen chain's id
# Block gas limit of the devnet's Hydrogen chain. The real one is not on record;
# the era-B configs send 42,949,670 (node) and 42,949,672 (bridge) gas per
# transaction, so it was at least that; 2**32-1 is a guess.
BLOCK_GAS_LIMIT = 2**32 - 1
# The real chain took gas price 1 (node config gas_price: 1): a 1-wei base fee
# that the EIP-1559 rounding never lowers and the huge gas target never raises.
GENESIS_BASE_FEE = 1
INITIAL_SUPPLY = 4_351_443_962 * 10**18  # CrynuxToken.sol constructor
ACCOUNT_CNX = 10_000 * 10**18
NODE_ETH = 100 * 10**18  # gas money per simulated node
NODE_TX_GAS = 3_000_000
BATCH = 64
ZERO32 = b"\x00" * 32


def gpu_id(kind: int, vram: int) -> bytes:
    """Node.sol's gpuID = keccak256(abi.encodePacked(gpuName, gpuVram))."""
    return keccak(f"devnet-gpu-{kind}".encode() + vram.to_bytes(32, "big"))


class HydrogenDeployment(Deployment):
    """CNX token + era-B Task, driven by the operator account (owner of both)."""

    def __init__(self, chain, compiled: dict):  # the era-D contracts are not deployed
        self.chain = chain
        token = compiled["CrynuxToken"]
        self.token = Contract(token["abi"], self._deploy(token["bytecode"], abi_encode(["uint256"], [INITIAL_SUPPLY])))
        task = compiled["HydrogenTask"]
        self.task = Contract(task["abi"], self._deploy(task["bytecode"], abi_encode(["address"], [self.token.address])))
        self.queue = None

    def transact_value(self, contract: Contract, fn: str, value: int, *args) -> dict:
        receipt = self._send_wait(contract.address, contract.calldata(fn, *args), value)
        if receipt["status"] != "0x1":
            log.warning("operator call %s reverted", fn)
        return receipt

    def fund_cnx(self, addresses: list[bytes], amount: int = ACCOUNT_CNX):
        for i in range(0, len(addresses), 128):
            self.transact(self.token, "devDistribute", addresses[i : i + 128], amount)

    def set_cnx_balance(self, address: bytes, amount: int) -> dict:
        return self.transact(self.token, "devSetBalance", address, amount)


class TokenDeployment(HydrogenDeployment):
    """--profile lithium: the CNX token alone (Relay Account deposits); no task contract."""

    def __init__(self, chain, compiled: dict):
        self.chain = chain
        token = compiled["CrynuxToken"]
        self.token = Contract(token["abi"], self._deploy(token["bytecode"], abi_encode(["uint256"], [INITIAL_SUPPLY])))
        self.task = self.queue = None


class HydrogenNodes(Nodes):
    """Simulated era-B nodes: real node transactions from their own keys."""

    def __init__(self, deployment, relay, config):
        self.keys: dict[bytes, keys.PrivateKey] = {}
        super().__init__(deployment, relay, config)

    # ------------------------------------------------------------ registry

    @staticmethod
    def _key(index: int) -> keys.PrivateKey:
        return keys.PrivateKey(keccak(f"crynux-devnet node {index}".encode()))

    def _register(self, first: int, addresses: list[bytes], fund: bool = True):
        kinds, vram = self.config["node_gpu_kinds"], self.config["node_vram_gb"]
        for j, address in enumerate(addresses):
            key = self._key(first + j)
            assert key.public_key.to_canonical_address() == address
            self.keys[address] = key
        for i in range(0, len(addresses), BATCH):
            batch = addresses[i : i + BATCH]
            gpus = [gpu_id((first + i + j) % kinds, vram) for j in range(len(batch))]
            value = NODE_ETH * len(batch) if fund else 0
            self.deployment.transact_value(self.task, "devRegisterNodes", value, batch, gpus, vram)

    def _on_config(self, changed: dict):
        # runs in the admin request thread; the change is mined before it returns
        if "nodes" in changed:
            self.set_node_count(changed["nodes"])
        if "node_gpu_kinds" in changed or "node_vram_gb" in changed:
            with self._admin_lock:  # node i: GPU i % kinds, all with node_vram_gb
                self._register(0, list(self.registered), fund=False)
        if "task_timeout_s" in changed:
            self.deployment.transact(self.task, "updateTimeout", changed["task_timeout_s"])
        if "task_fee_per_node" in changed:
            self.deployment.transact(self.task, "updateTaskFeePerNode", changed["task_fee_per_node"])

    # ------------------------------------------------------------ chain access

    def _chain_task(self, task_id: int):
        info = self.deployment.call(self.task, "getTask", task_id)
        return {"id": info[0], "selectedNodes": [bytes.fromhex(a[2:]) for a in info[7]], "commitments": list(info[8]),
                "resultDisclosedRounds": list(info[11]), "resultNode": info[12], "aborted": info[13], "timeout": info[14]}

    def _send(self, node: bytes, fn: str, *args) -> bytes | None:
        key = self.keys.get(node)
        if key is None:
            log.warning("no key for node %s (%s)", node.hex(), fn)
            return None
        return self.deployment.chain.send_internal(self.task.address, self.task.calldata(fn, *args), gas=NODE_TX_GAS, key=key)

    def _check(self, hashes: list, what: str):
        """Log node transactions that reverted (they carry a fixed gas limit)."""
        for tx_hash in hashes:
            if tx_hash is None:
                continue
            receipt = self.deployment.chain.receipt(tx_hash)
            if receipt is None:
                self._at(1.0, self._check, [tx_hash], what)
            elif receipt["status"] != "0x1":
                log.warning("node transaction %s (%s) reverted", "0x" + tx_hash.hex(), what)

    @staticmethod
    def _nonce(task_id: int, round_: int) -> bytes:
        return keccak(b"crynux-devnet nonce" + task_id.to_bytes(32, "big") + round_.to_bytes(32, "big"))

    def _commit_and_disclose(self, task_id: int, nodes: list[bytes], order: list[int], results: list[bytes]) -> list:
        hashes = []
        for round_, result in zip(order, results):
            nonce = self._nonce(task_id, round_)
            hashes.append(self._send(nodes[round_], "submitTaskResultCommitment", task_id, round_, keccak(result + nonce), nonce))
        for round_, result in zip(order, results):
            hashes.append(self._send(nodes[round_], "discloseTaskResult", task_id, round_, result))
        return hashes

    # ------------------------------------------------------------ actions

    def _finish(self, task_id: int, task_type: int, args: str, reason: str | None):
        info = self._chain_task(task_id)
        if not info["id"] or info["aborted"] or int(info["resultNode"], 16) or any(c != ZERO32 for c in info["commitments"]):
            return  # cancelled (or acted on) meanwhile
        nodes = info["selectedNodes"]
        first = task_id % 3
        order = [first, (first + 1) % 3, (first + 2) % 3]
        if reason == ABORT_REASONS[0]:  # two nodes report an error; the third follows the TaskAborted
            hashes = [self._send(nodes[r], "reportTaskError", task_id, r) for r in order[:2]]
            self.counts["aborted"] += 1
            self._at(2.0, self._check, hashes, f"error report of task {task_id}")
            return
        if reason == ABORT_REASONS[1]:  # three results far apart (pHash distance >= 32 bits)
            results = [b"\x00" * 8, b"\xff" * 8, b"\x0f" * 8]
            hashes = self._commit_and_disclose(task_id, nodes, order, results)
            self.counts["aborted"] += 1
            self._at(2.0, self._check, hashes, f"illegal results of task {task_id}")
            return
        files, result = task_results(task_id, task_type, args)
        self.pending_files[task_id] = files
        hashes = self._commit_and_disclose(task_id, nodes, order, [result] * 3)
        self._at(2.0, self._check, hashes, f"results of task {task_id}")

    def _upload(self, task_id: int):
        """TaskSuccess synced: the result node uploads, then reportResultsUploaded."""
        files = self.pending_files.pop(task_id, None)
        if files is None:
            return
        info = self._chain_task(task_id)
        if not info["id"] or info["aborted"]:
            return
        result_node = bytes.fromhex(info["resultNode"][2:])
        if not self.relay.store_results(task_id, files):
            return
        self.counts["succeeded"] += 1
        round_ = info["selectedNodes"].index(result_node)
        tx_hash = self._send(result_node, "reportResultsUploaded", task_id, round_)
        self._at(2.0, self._check, [tx_hash], f"results uploaded of task {task_id}")

    def _cleanup_abort(self, task_id: int):
        """TaskAborted("Task error reported") synced: the third node reports its error too."""
        info = self._chain_task(task_id)
        if not info["id"] or not info["aborted"]:
            return
        for round_, node in enumerate(info["selectedNodes"]):
            if info["commitments"][round_] == ZERO32:
                tx_hash = self._send(node, "reportTaskError", task_id, round_)
                self._at(2.0, self._check, [tx_hash], f"third error report of task {task_id}")

    def _watchdog(self, task_id: int):
        info = self._chain_task(task_id)
        if not info["id"] or info["aborted"] or int(info["resultNode"], 16):
            return  # finished (or deleted)
        delay = self.config["watchdog_delay_ms"]
        if delay < 0:
            self._at(1.0, self._watchdog, task_id)
            return
        due = info["timeout"] + 1 + delay / 1000
        if time.time() < due:
            self._at(due - time.time(), self._watchdog, task_id)
            return
        self.counts["watchdog_cancelled"] += 1
        tx_hash = self._send(info["selectedNodes"][0], "cancelTask", task_id)
        self._at(2.0, self._check, [tx_hash], f"watchdog cancel of task {task_id}")
