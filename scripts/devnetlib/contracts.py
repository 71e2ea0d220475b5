"""Compile (with a cache), deploy and call the Vyper contracts in-process."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

log = logging.getLogger("devnet.contracts")

SOURCE_DIR = Path(__file__).parent / "contracts"
NAMES = ("TaskQueue", "Task")
HYDROGEN_NAMES = ("CrynuxToken", "HydrogenTask")  # --profile hydrogen (era B)
VYPER_VERSION = "0.4.3"


def _type_string(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + t[len("tuple") :]
    return t


def compile_contracts(cache_dir: Path | None, names: tuple = NAMES) -> dict:
    """{name: {"abi": [...], "bytecode": "0x..."}}; cached by source hash.
    names: the era-D set by default; HYDROGEN_NAMES for --profile hydrogen."""
    sources = {n: (SOURCE_DIR / f"{n}.vy").read_text() for n in names}
    digest = hashlib.sha256((VYPER_VERSION + json.dumps(sources, sort_keys=True)).encode()).hexdigest()[:16]
    cache_file = cache_dir / f"contracts-{digest}.json" if cache_dir else None
    if cache_file and cache_file.exists():
        try:
            return json.loads(cache_file.read_text())
        except ValueError:
            pass
    import vyper  # slow import; only when the cache misses

    if vyper.__version__ != VYPER_VERSION:
        raise RuntimeError(f"vyper {VYPER_VERSION} required, found {vyper.__version__}")
    out = {}
    for name, src in sources.items():
        compiled = vyper.compile_code(src, output_formats=["abi", "bytecode"])
        out[name] = {"abi": compiled["abi"], "bytecode": compiled["bytecode"]}
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(cache_file)
    return out


class Contract:
    """Minimal ABI binding: calldata building and output decoding by function name."""

    def __init__(self, abi: list, address: bytes):
        self.abi = abi
        self.address = address
        self.functions = {e["name"]: e for e in abi if e["type"] == "function"}
        self.events = {e["name"]: e for e in abi if e["type"] == "event"}

    def selector(self, name: str) -> bytes:
        types = [_type_string(p) for p in self.functions[name]["inputs"]]
        return keccak(f"{name}({','.join(types)})".encode())[:4]

    def calldata(self, name: str, *args) -> bytes:
        types = [_type_string(p) for p in self.functions[name]["inputs"]]
        return self.selector(name) + abi_encode(types, list(args))

    def decode(self, name: str, data: bytes):
        types = [_type_string(p) for p in self.functions[name]["outputs"]]
        values = abi_decode(types, data)
        return values[0] if len(values) == 1 else values

    def topic(self, event: str) -> bytes:
        ev = self.events[event]
        return keccak(f"{event}({','.join(_type_string(p) for p in ev['inputs'])})".encode())


class Deployment:
    """The deployed Task and TaskQueue contracts, driven by the operator account."""

    def __init__(self, chain, compiled: dict):
        self.chain = chain
        queue_addr = self._deploy(compiled["TaskQueue"]["bytecode"], b"")
        self.queue = Contract(compiled["TaskQueue"]["abi"], queue_addr)
        task_addr = self._deploy(compiled["Task"]["bytecode"], abi_encode(["address"], [queue_addr]))
        self.task = Contract(compiled["Task"]["abi"], task_addr)
        self.transact(self.queue, "updateTaskContractAddress", task_addr)

    def _deploy(self, bytecode: str, args: bytes) -> bytes:
        receipt = self._send_wait(None, bytes.fromhex(bytecode[2:]) + args)
        if receipt["status"] != "0x1":
            raise RuntimeError("contract deployment failed")
        return bytes.fromhex(receipt["contractAddress"][2:])

    def _send_wait(self, to, data, value=0) -> dict:
        tx_hash = self.chain.send_internal(to, data, value, gas=None)
        if self.chain.config["block_time_ms"] > 0:
            self.chain.mine()  # don't make admin changes wait for the next block
        return self.chain.wait_receipt(tx_hash)

    def transact(self, contract: Contract, fn: str, *args, wait: bool = True, gas: int | None = None):
        """An operator transaction; returns the receipt (wait) or the tx hash.
        gas None = estimate it (admin changes; node actions pass a fixed limit)."""
        data = contract.calldata(fn, *args)
        if wait:
            receipt = self._send_wait(contract.address, data)
            if receipt["status"] != "0x1":
                log.warning("operator call %s reverted", fn)
            return receipt
        return self.chain.send_internal(contract.address, data, gas=gas)

    def call(self, contract: Contract, fn: str, *args):
        return contract.decode(fn, self.chain.call({"to": contract.address, "data": contract.calldata(fn, *args)}))
