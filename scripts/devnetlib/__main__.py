"""`python -m devnetlib --state-dir DIR [options]`: the whole local network in one process.

Started in the background by `scripts/devnet up`. When everything listens and
the contracts are deployed it writes DIR/devnet.json (the file tests read)
and prints it; it removes it again on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from eth_keys import keys
from eth_utils import keccak, to_checksum_address

from .admin import Admin, AdminHandler
from .chain import DevChain
from .config import KNOBS, Config
from .contracts import HYDROGEN_NAMES, Deployment, compile_contracts
from .httpbase import Server
from .nodes import Nodes
from .relay import Relay, RelayHandler
from .rpc import RPC, RPCHandler

log = logging.getLogger("devnet")

ACCOUNT_BALANCE = 10**6 * 10**18  # 1,000,000 ETH each
OPERATOR_BALANCE = 10**9 * 10**18


def account_key(index: int) -> bytes:
    """Deterministic test keys: keccak256("crynux-devnet account <i>")."""
    return keccak(f"crynux-devnet account {index}".encode())


OPERATOR_KEY = keccak(b"crynux-devnet operator")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/devnet up", description="Local Crynux network (era D, or the Hydrogen era B with --profile hydrogen) for tests and the demo.")
    p.add_argument("--state-dir", required=True, help="where devnet.json, the pid, logs and caches go")
    p.add_argument("--profile", choices=("era-d", "hydrogen", "lithium"), default="era-d",
                   help="era-d: payable 5-argument createTask, TaskQueue (default); hydrogen: the Hydrogen network "
                        "(era B): CNX ERC20 token, 4-argument createTask, no queue, chain id 42, relay without /v1/now; "
                        "lithium: the live network: tasks by signed requests to the Relay, fees from Relay Accounts, "
                        "VRF validation, deposits by CNX transfers on chain id 10002")
    p.add_argument("--cache-dir", help="compiled-contract cache (default: the state dir)")
    p.add_argument("--chain-id", type=int, help="default 10000 (era-d) / 42 (hydrogen)")
    p.add_argument("--accounts", type=int, default=10, help="funded test accounts (1,000,000 ETH each)")
    p.add_argument("--rpc-port", type=int, default=0, help="0 = any free port")
    p.add_argument("--relay-port", type=int, default=0)
    p.add_argument("--admin-port", type=int, default=0)
    p.add_argument("--seed", type=int, help="seed of the fault-injection dice")
    p.add_argument("--verbose", action="store_true")
    knobs = p.add_argument_group("knobs (also settable at run time: POST /admin/config)")
    for k in KNOBS:
        default = ",".join(map(str, k.default)) if isinstance(k.default, tuple) else k.default
        knobs.add_argument("--" + k.name.replace("_", "-"), dest=k.name, type=k.kind, choices=k.choices or None,
                           help=f"{k.help} (default {default or 'none'})".replace("%", "%%"))
    args = p.parse_args(argv)
    if args.chain_id is None:
        args.chain_id = {"hydrogen": 42, "lithium": 10002}.get(args.profile, 10000)
    if not 1 <= args.accounts <= 1000:
        p.error("--accounts must be 1..1000")
    return args


class Devnet:
    def __init__(self, args):
        self.started = time.time()
        self.profile = args.profile
        initial = {k.name: getattr(args, k.name) for k in KNOBS if getattr(args, k.name) is not None}
        if self.profile == "hydrogen":
            initial.setdefault("sd_schema", "c0d652a")  # the Hydrogen relay's schema
        try:
            self.config = Config(initial, seed=args.seed)
        except ValueError as exc:
            raise SystemExit(f"devnet: {exc}")
        self.accounts = []
        alloc = {keys.PrivateKey(OPERATOR_KEY).public_key.to_canonical_address(): OPERATOR_BALANCE}
        for i in range(args.accounts):
            key = keys.PrivateKey(account_key(i))
            alloc[key.public_key.to_canonical_address()] = ACCOUNT_BALANCE
            self.accounts.append({"address": key.public_key.to_checksum_address(), "private_key": "0x" + key.to_bytes().hex()})

        cache = Path(args.cache_dir or args.state_dir)
        t0 = time.monotonic()
        if self.profile == "hydrogen":
            self._start_hydrogen(args, alloc, cache, t0)
        elif self.profile == "lithium":
            self._start_lithium(args, alloc, cache, t0)
        else:
            compiled = compile_contracts(cache)
            log.info("contracts ready in %.2fs", time.monotonic() - t0)
            self.chain = DevChain(args.chain_id, alloc, self.config, OPERATOR_KEY)
            self.deployment = Deployment(self.chain, compiled)
            d = self.deployment
            if self.config["task_timeout_s"] != 900:
                d.transact(d.task, "updateTimeout", self.config["task_timeout_s"])
            if self.config["queue_size_limit"] != 50:
                d.transact(d.queue, "updateSizeLimit", self.config["queue_size_limit"])
            if self.config["node_vram_gb"] != 24:
                d.transact(d.task, "devSetNodeVram", self.config["node_vram_gb"])
            self.relay = Relay(self.chain, d, self.config)
            self.nodes = Nodes(d, self.relay, self.config)
        self.rpc = RPC(self.chain, self.config)
        from .lithium import LithiumHandler
        self.servers = [
            Server(args.rpc_port, RPCHandler, self.rpc),
            Server(args.relay_port, LithiumHandler if self.profile == "lithium" else RelayHandler, self.relay),
            Server(args.admin_port, AdminHandler, Admin(self)),
        ]
        for server, name in zip(self.servers, ("rpc", "relay", "admin")):
            server.start(f"http-{name}")

    def _start_hydrogen(self, args, alloc, cache, t0):
        """--profile hydrogen: era-B chain (id 42, gas price 1), CNX token, era-B Task, nodes, relay."""
        from . import hydrogen

        compiled = compile_contracts(cache, HYDROGEN_NAMES)
        log.info("contracts ready in %.2fs", time.monotonic() - t0)
        self.chain = DevChain(args.chain_id, alloc, self.config, OPERATOR_KEY,
                              block_gas_limit=hydrogen.BLOCK_GAS_LIMIT, genesis_base_fee=hydrogen.GENESIS_BASE_FEE)
        self.deployment = d = hydrogen.HydrogenDeployment(self.chain, compiled)
        d.fund_cnx([bytes.fromhex(a["address"][2:]) for a in self.accounts])
        if self.config["task_timeout_s"] != 900:
            d.transact(d.task, "updateTimeout", self.config["task_timeout_s"])
        if self.config["task_fee_per_node"] != 10 * 10**18:
            d.transact(d.task, "updateTaskFeePerNode", self.config["task_fee_per_node"])
        self.relay = Relay(self.chain, d, self.config, profile="hydrogen")
        self.nodes = hydrogen.HydrogenNodes(d, self.relay, self.config)

    def _start_lithium(self, args, alloc, cache, t0):
        """--profile lithium: a chain with the CNX token only (deposits), and the Relay with its nodes inside."""
        from . import hydrogen
        from .lithium import LithiumRelay

        compiled = compile_contracts(cache, ("CrynuxToken",))
        log.info("contracts ready in %.2fs", time.monotonic() - t0)
        self.chain = DevChain(args.chain_id, alloc, self.config, OPERATOR_KEY,
                              block_gas_limit=hydrogen.BLOCK_GAS_LIMIT, genesis_base_fee=hydrogen.GENESIS_BASE_FEE)
        self.deployment = d = hydrogen.TokenDeployment(self.chain, compiled)
        d.fund_cnx([bytes.fromhex(a["address"][2:]) for a in self.accounts])
        self.relay = LithiumRelay(self.config, self.chain, d.token.address, self.accounts)
        self.nodes = None

    def description(self) -> dict:
        rpc, relay, admin = self.servers
        d = self.deployment
        if self.profile == "lithium":
            from .lithium import DEPOSIT_ADDRESS, RELAY_ACCOUNT_START
            return {
                "rpc_url": rpc.url, "relay_url": relay.url, "admin_url": admin.url, "chain_id": self.chain.chain_id,
                "task_contract": None, "task_queue_contract": None,
                "token_contract": to_checksum_address(d.token.address),
                "deposit_address": to_checksum_address(DEPOSIT_ADDRESS),
                "relay_account_balance_wei": str(RELAY_ACCOUNT_START),
                "accounts": self.accounts, "pid": os.getpid(),
                "operator_address": to_checksum_address(self.chain.operator_address), "profile": self.profile,
            }
        info = {
            "rpc_url": rpc.url,
            "relay_url": relay.url,
            "admin_url": admin.url,
            "chain_id": self.chain.chain_id,
            "task_contract": to_checksum_address(d.task.address),
            # the Hydrogen network has no TaskQueue: null there
            "task_queue_contract": to_checksum_address(d.queue.address) if d.queue is not None else None,
            "accounts": self.accounts,
            "pid": os.getpid(),
            "operator_address": to_checksum_address(self.chain.operator_address),
            "profile": self.profile,
        }
        if self.profile == "hydrogen":
            info["token_contract"] = to_checksum_address(d.token.address)
            # Node.sol's views (availableNodes, filterGPUVram, filterGPUID) are served by the Task
            # contract here; the real network had a Node contract of its own.
            info["node_contract"] = to_checksum_address(d.task.address)
        return info

    def _named_calls(self, counts: dict) -> dict:
        """ "eth_call 0x1d65e77e" → "eth_call getTask": the contracts' own function names."""
        contracts = [getattr(self.deployment, n, None) for n in ("task", "queue", "token")]
        names = {"0x" + c.selector(fn).hex(): fn for c in contracts if c is not None for fn in c.functions}
        named = {}
        for kind, n in counts.items():
            method, _, selector = kind.partition(" ")
            key = f"{method} {names.get(selector, selector)}" if selector else method
            named[key] = named.get(key, 0) + n
        return named

    def stats(self) -> dict:
        d, chain = self.deployment, self.chain
        if self.profile == "lithium":
            return {
                "uptime_s": round(time.time() - self.started, 1), "block_number": chain.head, "chain": dict(chain.stats),
                "rpc_calls": self.rpc.calls, "rpc_http_requests": self.rpc.http_requests,
                "relay": {**self.relay.stats(), "connections": self.servers[1].connections},
                "faults_fired": self.config.fired_snapshot(),
            }
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "block_number": chain.head,
            "chain": dict(chain.stats),
            "pool": {"queued": len(chain.pool_by_hash), "unmined": len(chain.unmined)},
            "rpc_calls": self.rpc.calls,
            "rpc_http_requests": self.rpc.http_requests,
            "rpc_calls_by_kind": self._named_calls(dict(self.rpc.calls_by_kind)),
            "relay": {"requests": self.relay.requests, "synced_block": self.relay.synced, "tasks": len(self.relay.tasks),
                      "requests_by_kind": dict(self.relay.requests_by_kind)},
            "tasks": {
                "total": d.call(d.task, "totalTasks"),
                "queued": d.call(d.queue, "size") if d.queue is not None else 0,
                "free_nodes": d.call(d.task, "devFreeNodes" if d.queue is not None else "devAvailableNodes"),
                "registered_nodes": len(self.nodes.registered),
                **self.nodes.counts,
            },
            "faults_fired": self.config.fired_snapshot(),
        }

def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    # One devnet per state dir: an exclusive lock held for the process lifetime.
    lock_file = open(state / "devnet.lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"devnet: another devnet is running in {state}", file=sys.stderr)
        return 2
    description_file = state / "devnet.json"
    description_file.unlink(missing_ok=True)

    t0 = time.monotonic()
    try:
        devnet = Devnet(args)
    except OSError as exc:
        print(f"devnet: cannot start: {exc}", file=sys.stderr)
        return 1
    info = devnet.description()
    tmp = state / "devnet.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(description_file)
    (state / "devnet.pid").write_text(f"{os.getpid()}\n")
    log.info("ready in %.2fs: rpc %s relay %s admin %s", time.monotonic() - t0, info["rpc_url"], info["relay_url"], info["admin_url"])

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    log.info("stopping")
    description_file.unlink(missing_ok=True)
    (state / "devnet.pid").unlink(missing_ok=True)
    # every worker thread is a daemon: leaving main ends them (state is in memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
