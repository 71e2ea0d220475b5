"""The devnet chain: py-evm (Prague) behind a small geth-like transaction pool.

eth-tester is used only for its genesis parameters; everything else talks to
py-evm directly, because eth-tester's own serialisers are not geth-faithful
(see devnet-notes.md).

Design points:
* One RLock guards py-evm and the pool (py-evm is not thread-safe). Work done
  under it is one transaction at a time (~15-20 ms), so readers wait little.
* Mined blocks are turned into JSON-ready records once, at mining time.
  Receipts, transactions, blocks and logs are then served from dicts/lists
  without taking the lock, so polling stays fast while the EVM is busy.
* Block timestamps follow the wall clock; unlike mainnet, a block may share
  its parent's timestamp. This keeps `block.timestamp` (and thus task
  deadlines) equal to real time even at 30 blocks/s.
* eth_call / eth_estimateGas run in the context of the requested block (its
  number and timestamp), like geth, not at the wall clock. With automine an
  empty block is mined after `idle_block_ms` without one, so that time moves
  on chain as on a real network.
* The pool holds transactions that cannot be mined yet: nonce gaps, the
  `tx_mine_delay_ms` fault, a fee cap below the base fee, a full block.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

import rlp
from eth._utils.address import generate_contract_address
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.exceptions import Revert, VMError
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_keys import keys
from eth_tester.backends.pyevm.main import get_default_genesis_params
from eth_utils import ValidationError, keccak

from . import hexutil as hx

log = logging.getLogger("devnet.chain")

GWEI = 10**9
BLOCK_GAS_LIMIT = 30_000_000
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_TX_SIZE = 128 * 1024
SUPPORTED_TX_TYPES = (0, 1, 2)
DEFAULT_TIP = GWEI
GENESIS_BASE_FEE = 7

# geth's decoding of Panic(uint256) codes (accounts/abi.panicReasons)
PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}


class TxRejected(Exception):
    """eth_sendRawTransaction refused the transaction (geth answers -32000)."""


class ExecutionError(Exception):
    """eth_call / eth_estimateGas failed. code 3 with data when it reverted with data."""

    def __init__(self, message: str, data: bytes | None = None, kind: str = "other"):
        super().__init__(message)
        self.message = message
        self.data = data
        self.code = 3 if data else -32000
        self.kind = kind  # "revert", "out_of_gas", "other"


def error_string(data: bytes) -> str | None:
    """The reason of an Error(string) revert, None for anything else."""
    if len(data) >= 4 and data[:4] == bytes.fromhex("08c379a0"):
        try:
            from eth_abi import decode

            return decode(["string"], data[4:])[0]
        except Exception:
            return None
    return None


def revert_message(data: bytes) -> str:
    """geth's message for a revert: decode Error(string) and Panic(uint256)."""
    if len(data) >= 4 and data[:4] == bytes.fromhex("08c379a0"):
        try:
            from eth_abi import decode

            (reason,) = decode(["string"], data[4:])
            return f"execution reverted: {reason}"
        except Exception:
            pass
    if len(data) == 36 and data[:4] == bytes.fromhex("4e487b71"):
        code = int.from_bytes(data[4:], "big")
        return "execution reverted: " + PANIC_REASONS.get(code, f"unknown panic code: {code:#x}")
    return "execution reverted"


# --------------------------------------------------------------------- py-evm


class DevnetVM(PragueVM):
    @classmethod
    def validate_header(cls, header, parent_header):
        # Allow a block to share its parent's timestamp (see module docstring);
        # every other header rule is left to py-evm.
        if parent_header is not None and header.timestamp == parent_header.timestamp:
            parent_header = parent_header.copy(timestamp=parent_header.timestamp - 1)
        super().validate_header(header, parent_header)


class DevnetMiningChain(MiningChain):
    vm_configuration = ((0, DevnetVM),)
    chain_id = 10000  # replaced per instance class in DevChain.__init__

    def create_header_from_parent(self, parent_header, **params):
        params.setdefault("gas_limit", parent_header.gas_limit)
        params.setdefault("timestamp", max(int(time.time()), parent_header.timestamp))
        return super().create_header_from_parent(parent_header, **params)


def _estimate_gas(state, tx) -> int:
    """Gas estimate within 1.5 % (or 1 000 gas), in few EVM runs.

    py-evm's default estimator starts a bisection from the block gas limit
    with a 21 000 tolerance. Like geth, run once with the full limit, then
    try the used gas (plus refund headroom) before bisecting, and stop once
    the interval is within 1.5 % (go-ethereum internal/ethapi/api.go
    estimateGasErrorRatio = 0.015, eth/gasestimator/gasestimator.go): a
    createTask reads every free node, and each run of it is costly here.
    """

    def run(gas):
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(SpoofTransaction(tx, gas=gas, gas_price=0))
            return computation
        finally:
            state.revert(snapshot)

    if not run(tx.intrinsic_gas).is_error:
        return tx.intrinsic_gas  # plain transfers: exactly 21000, like geth
    limit = state.gas_limit
    computation = run(limit)
    if computation.is_error:
        raise computation.error
    used = tx.intrinsic_gas + computation.get_gas_used()
    lo, hi = used - 1, limit
    optimistic = min(limit, (used + computation.get_gas_refund() + 2300) * 64 // 63)
    if not run(optimistic).is_error:
        hi = optimistic
    else:
        lo = optimistic
    while hi - lo > 1000 and (hi - lo) / hi >= 0.015:
        mid = (lo + hi) // 2
        if run(mid).is_error:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------- records


@dataclass
class BlockRecord:
    number: int
    hash: bytes
    header_json: dict
    tx_hashes: list
    txs: list  # tx JSON dicts (mined form)
    mined_at: float  # time.monotonic() when mined, for the relay's sync lag
    timestamp: int
    base_fee: int
    gas_used: int
    gas_limit: int
    tips: list  # (effective tip, gas used) per tx, for eth_feeHistory
    logs: list = field(default_factory=list)


@dataclass
class LogRecord:
    block: int
    address: bytes
    topics: tuple
    json: dict


@dataclass
class PoolEntry:
    tx: object
    raw: bytes
    hash: bytes
    sender: bytes
    nonce: int
    ready_at: float  # time.monotonic()
    internal: bool


def _fee_cap(tx) -> int:
    return tx.max_fee_per_gas if tx.type_id else tx.gas_price


def _tip_cap(tx) -> int:
    return tx.max_priority_fee_per_gas if tx.type_id else tx.gas_price


class DevChain:
    def __init__(self, chain_id: int, alloc: dict, config, operator_key: bytes,
                 block_gas_limit: int = BLOCK_GAS_LIMIT, genesis_base_fee: int = GENESIS_BASE_FEE):
        self.chain_id = chain_id
        self.block_gas_limit = block_gas_limit
        self.config = config
        self.lock = threading.RLock()
        self.new_block = threading.Condition()  # notified after each mined block
        self._pool_wakeup = threading.Condition(self.lock)
        self.operator = keys.PrivateKey(operator_key)
        self.operator_address = self.operator.public_key.to_canonical_address()

        chain_class = type("DevnetChain", (DevnetMiningChain,), {"chain_id": chain_id})
        params = get_default_genesis_params({"gas_limit": block_gas_limit, "timestamp": int(time.time())})
        # Start at the EIP-1559 floor (7 wei) rather than py-evm's 1 gwei: an
        # automined chain only makes blocks when txs arrive, so a client with a
        # tiny fixed gas price (the SDK's 10 wei) would otherwise wait forever.
        # (--profile hydrogen starts at 1 wei, where the EIP-1559 rounding keeps it
        # while blocks stay below half its huge gas limit: gas price 1 mines.)
        params["base_fee_per_gas"] = genesis_base_fee
        state = {addr: {"balance": bal, "nonce": 0, "code": b"", "storage": {}} for addr, bal in alloc.items()}
        self.evm = chain_class.from_genesis(AtomicDB(), params, state)

        # mined-chain indexes (append-only; published by self.head)
        self.blocks: list[BlockRecord] = []
        self.block_by_hash: dict[bytes, int] = {}
        self.tx_location: dict[bytes, tuple[int, int]] = {}
        self.receipts: dict[bytes, dict] = {}
        self.logs: list[LogRecord] = []
        self.block_log_start: list[int] = []
        self.log_index: dict[tuple, list[int]] = {}  # ("a", address) / (position, topic) -> log ids
        self.head = -1
        self.senders: dict[bytes, bytes] = {}

        # pending pool (under self.lock)
        self.pool_by_sender: dict[bytes, dict[int, PoolEntry]] = {}
        self.pool_by_hash: dict[bytes, PoolEntry] = {}
        self.unmined: dict[bytes, PoolEntry] = {}  # applied to the pending block, not mined yet
        self.stats = {"txs_mined": 0, "txs_reverted": 0, "txs_dropped_at_apply": 0}

        self._record_block(self.evm.get_canonical_block_by_number(0))
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pool_loop, name="pool", daemon=True),
            threading.Thread(target=self._miner_loop, name="miner", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self):
        self._stop.set()
        with self.lock:
            self._pool_wakeup.notify_all()

    # ------------------------------------------------------------ state reads

    def header_for(self, tag):
        """py-evm header for a parsed block tag ("latest", "pending", int)."""
        if tag == "pending":
            return self.evm.header
        if tag == "latest":
            return self.evm.get_canonical_block_header_by_number(self.head)
        if tag > self.head:
            return None
        return self.evm.get_canonical_block_header_by_number(tag)

    def _state(self, header):
        return self.evm.get_vm(header).state

    def balance(self, address: bytes, tag="latest") -> int | None:
        with self.lock:
            header = self.header_for(tag)
            return None if header is None else self._state(header).get_balance(address)

    def code(self, address: bytes, tag="latest") -> bytes | None:
        with self.lock:
            header = self.header_for(tag)
            return None if header is None else self._state(header).get_code(address)

    def nonce(self, address: bytes, tag="latest") -> int | None:
        with self.lock:
            if tag == "pending":
                return self._pending_nonce(address)
            header = self.header_for(tag)
            return None if header is None else self._state(header).get_nonce(address)

    def _pending_nonce(self, address: bytes) -> int:
        # geth: state nonce of the pending block plus the contiguous pool run
        nonce = self._state(self.evm.header).get_nonce(address)
        entries = self.pool_by_sender.get(address, {})
        while nonce in entries:
            nonce += 1
        return nonce

    def base_fee_next(self) -> int:
        with self.lock:
            return self.evm.header.base_fee_per_gas

    # ------------------------------------------------------------ call / estimate

    def _spoof(self, header, call: dict):
        vm = self.evm.get_vm(header)
        sender = call.get("from") or b"\x00" * 20
        unsigned = vm.create_unsigned_transaction(
            nonce=vm.state.get_nonce(sender),
            gas_price=0,
            gas=call.get("gas") or header.gas_limit,
            to=call.get("to") or b"",
            value=call.get("value") or 0,
            data=call.get("data") or b"",
        )
        return SpoofTransaction(unsigned, from_=sender)

    def _context_state(self, tag):
        """(state, spoofed tx builder input) for a call in the context of the
        block at `tag`, like geth: the state after that block, and that block's
        number and timestamp (not the wall clock). "pending" is the block being
        built, whose timestamp was fixed when it was opened. The base fee is 0
        so that gas price 0 passes (geth's NoBaseFee for calls)."""
        header = self.header_for(tag)
        if header is None:
            raise ExecutionError("header not found")
        vm = self.evm.get_vm(header)
        context = header.copy(base_fee_per_gas=0) if getattr(header, "base_fee_per_gas", None) else header
        state = vm.build_state(self.evm.chaindb.db, context, vm.chain_context, vm.previous_hashes)
        return header, state

    def call(self, call: dict, tag="latest") -> bytes:
        with self.lock:
            header, state = self._context_state(tag)
            tx = self._spoof(header, call)
            self._check_value_covered(state, call)
            snapshot = state.snapshot()
            try:
                computation = state.costless_execute_transaction(tx)
            finally:
                state.revert(snapshot)
        if computation.is_error:
            raise self._execution_error(computation.error)
        return computation.output

    def estimate_gas(self, call: dict, tag="latest") -> int:
        with self.lock:
            header, state = self._context_state(tag)
            tx = self._spoof(header, call)
            self._check_value_covered(state, call)
            try:
                return _estimate_gas(state, tx)
            except VMError as exc:
                raise self._execution_error(exc) from None

    @staticmethod
    def _check_value_covered(state, call: dict):
        """geth's state transition refuses a message whose value (plus gas × price, 0 here)
        exceeds the sender's balance before any EVM runs (core/state_transition.go buyGas:
        ErrInsufficientFunds, "%w: address %v have %v want %v"); eth_estimateGas and eth_call
        return that as a plain error (-32000), not a revert."""
        sender = call.get("from") or b"\x00" * 20
        value = call.get("value") or 0
        balance = state.get_balance(sender)
        if balance < value:
            raise ExecutionError(
                f"insufficient funds for gas * price + value: address {hx.address(sender)} have {balance} want {value}"
            )

    @staticmethod
    def _execution_error(error) -> ExecutionError:
        if isinstance(error, Revert):
            data = error.args[0] if error.args and isinstance(error.args[0], bytes) else b""
            if data:
                return ExecutionError(revert_message(data), data, "revert")
            return ExecutionError("execution reverted", b"", "revert")
        name = type(error).__name__
        text = {"OutOfGas": "out of gas", "InsufficientFunds": "insufficient funds for transfer"}.get(name)
        return ExecutionError(text or f"{name}: {error}", None, "out_of_gas" if name == "OutOfGas" else "other")

    # ------------------------------------------------------------ submission

    def decode(self, raw: bytes, check_gas: bool = True):
        """Decode and statelessly validate a raw transaction like geth's txpool.
        check_gas False: the intrinsic-gas checks are left to the caller
        (Ethermint runs them after the balance check)."""
        if len(raw) == 0:
            raise TxRejected("typed transaction too short")
        if raw[0] <= 0x7F and raw[0] not in SUPPORTED_TX_TYPES:
            raise TxRejected("transaction type not supported")
        if len(raw) > MAX_TX_SIZE:
            raise TxRejected("oversized data")
        try:
            tx = self.evm.get_vm().get_transaction_builder().decode(raw)
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError, ValidationError, ValueError) as exc:
            raise TxRejected(f"rlp: {exc}") from None
        if not tx.type_id:
            if tx.v in (27, 28):
                raise TxRejected("only replay-protected (EIP-155) transactions allowed over RPC")
            if tx.v < 35:
                raise TxRejected("invalid transaction v, r, s values")
            tx_chain = (tx.v - 35) // 2
        else:
            if tx.y_parity not in (0, 1):
                raise TxRejected("invalid transaction v, r, s values")
            tx_chain = tx.chain_id
        if not (0 < tx.r < SECP256K1_N and 0 < tx.s <= SECP256K1_N // 2):
            raise TxRejected("invalid transaction v, r, s values")
        try:
            tx.validate()
        except ValidationError as exc:
            raise TxRejected(f"invalid transaction: {exc}") from None
        if tx.gas > self.block_gas_limit:
            raise TxRejected("exceeds block gas limit")
        if _tip_cap(tx) > _fee_cap(tx):
            raise TxRejected(
                f"max priority fee per gas higher than max fee per gas: maxPriorityFeePerGas: {_tip_cap(tx)}, maxFeePerGas: {_fee_cap(tx)}"
            )
        if tx_chain != self.chain_id:
            raise TxRejected(f"invalid sender: invalid chain id for signer: have {tx_chain} want {self.chain_id}")
        try:
            sender = tx.sender
        except Exception:
            raise TxRejected("invalid sender: invalid transaction v, r, s values") from None
        if check_gas:
            self._check_gas(tx)
        return tx, sender

    @staticmethod
    def _check_gas(tx, ethermint: bool = False):
        intrinsic = tx.intrinsic_gas
        if tx.gas < intrinsic:
            if ethermint:
                # ethermint@fd8c2d2 x/evm/keeper/utils.go:107-111 (ErrOutOfGas), wrapped by
                # app/ante/eth.go:191 and suffixed again by ABCIError on the RPC side
                raise TxRejected(
                    f"failed to verify the fees: gas limit too low: {tx.gas} (gas limit) < {intrinsic} (intrinsic gas): out of gas: out of gas"
                )
            raise TxRejected(f"intrinsic gas too low: gas {tx.gas}, minimum needed {intrinsic}")
        # EIP-7623 (Prague) calldata floor (the devnet's EVM is Prague in both flavours)
        tokens = sum(4 if b else 1 for b in tx.data)
        floor = 21000 + 10 * tokens
        if tx.gas < floor:
            raise TxRejected(f"insufficient gas for floor data gas cost: gas {tx.gas}, minimum needed {floor}")

    def submit(self, raw: bytes, internal: bool = False) -> bytes:
        """eth_sendRawTransaction. Returns the hash; raises TxRejected."""
        if not internal and self.config["rpc_flavor"] == "ethermint":
            return self._submit_ethermint(raw)
        tx, sender = self.decode(raw)
        tx_hash = tx.hash
        with self.lock:
            if tx_hash in self.pool_by_hash or tx_hash in self.unmined:
                raise TxRejected("already known")
            state = self._state(self.evm.header)
            state_nonce = state.get_nonce(sender)
            if tx.nonce < state_nonce:
                raise TxRejected(f"nonce too low: address {hx.data(sender)}, tx: {tx.nonce} state: {state_nonce}")
            cost = tx.gas * _fee_cap(tx) + tx.value
            balance = state.get_balance(sender)
            if balance < cost:
                raise TxRejected(
                    f"insufficient funds for gas * price + value: balance {balance}, tx cost {cost}, overshot {cost - balance}"
                )
            entries = self.pool_by_sender.setdefault(sender, {})
            old = entries.get(tx.nonce)
            if old is not None:
                # geth's price bump rule: both caps at least +10%
                if _fee_cap(tx) * 100 < _fee_cap(old.tx) * 110 or _tip_cap(tx) * 100 < _tip_cap(old.tx) * 110:
                    raise TxRejected("replacement transaction underpriced")
            if not internal and self.config.roll("tx_drop_rate", "tx_dropped"):
                # accepted, then lost: the caller gets a hash that never mines
                log.info("fault: dropping tx %s", hx.data(tx_hash))
                if not entries:
                    del self.pool_by_sender[sender]
                return tx_hash
            if old is not None:
                del self.pool_by_hash[old.hash]
            self._enter_pool(tx, raw, tx_hash, sender, internal)
        return tx_hash

    def _enter_pool(self, tx, raw: bytes, tx_hash: bytes, sender: bytes, internal: bool):
        """Puts an accepted transaction in the pool, mined at once unless client
        transactions are delayed (lock held)."""
        delay = 0 if internal else self.config["tx_mine_delay_ms"] / 1000
        if delay > 0:
            self.config.count("tx_delayed")
        entry = PoolEntry(tx, raw, tx_hash, sender, tx.nonce, time.monotonic() + delay, internal)
        self.pool_by_sender.setdefault(sender, {})[tx.nonce] = entry
        self.pool_by_hash[tx_hash] = entry
        self.senders[tx_hash] = sender
        if delay <= 0:
            self._promote(sender)
        self._pool_wakeup.notify_all()

    def _submit_ethermint(self, raw: bytes) -> bytes:
        """An Ethermint node's CheckTx (ethermint@fd8c2d2 app/ante/handler_options.go:69-83):
        Tendermint's cache first, then balance, base fee, intrinsic gas and the
        exact nonce. There is no queue for future nonces and no replacement: a
        nonce must equal the pending nonce. RPC texts are the ante error plus
        the registered error's text again (cosmos-sdk errors.ABCIError, called
        from rpc/backend/call_tx.go:168-170)."""
        tx, sender = self.decode(raw, check_gas=False)
        tx_hash = tx.hash
        with self.lock:
            # Tendermint's mempool cache also holds committed transactions
            # (cosmos-sdk client/broadcast.go CheckTendermintError -> ErrTxInMempoolCache, empty log)
            if tx_hash in self.pool_by_hash or tx_hash in self.unmined or tx_hash in self.tx_location:
                raise TxRejected(": tx already in mempool")
            state = self._state(self.evm.header)
            cost = tx.gas * _fee_cap(tx) + tx.value
            balance = state.get_balance(sender)
            if balance < cost:  # app/ante/eth.go:97-98 + x/evm/keeper/utils.go:145-149
                raise TxRejected(
                    f"failed to check sender balance: sender balance < tx cost ({balance} < {cost}): insufficient funds: insufficient funds"
                )
            base_fee = self.evm.header.base_fee_per_gas
            if _fee_cap(tx) < base_fee:  # app/ante/eth.go:288-293
                raise TxRejected(
                    f"max fee per gas less than block base fee ({_fee_cap(tx)} < {base_fee}): insufficient fee: insufficient fee"
                )
            self._check_gas(tx, ethermint=True)
            expected = self._pending_nonce(sender)
            if tx.nonce != expected:  # app/ante/eth.go:362-366
                raise TxRejected(f"invalid nonce; got {tx.nonce}, expected {expected}: invalid sequence: invalid sequence")
            if self.config.roll("tx_drop_rate", "tx_dropped"):
                log.info("fault: dropping tx %s", hx.data(tx_hash))
                return tx_hash
            self._enter_pool(tx, raw, tx_hash, sender, False)
        return tx_hash

    def _promote(self, only_sender: bytes | None = None, sealing: bool = False):
        """Move executable pool transactions into the chain (lock held). With
        interval mining they move only when the block is sealed, as geth's
        miner takes them from the pool: until then a transaction can still be
        replaced by one paying 10 % more (a fill beats a createTask it follows)."""
        if self.config["block_time_ms"] > 0 and not sealing:
            return
        floor = self.config["min_gas_price_wei"]
        now = time.monotonic()
        senders = [only_sender] if only_sender is not None else list(self.pool_by_sender)
        for sender in senders:
            entries = self.pool_by_sender.get(sender)
            while entries:
                header = self.evm.header
                state_nonce = self._state(header).get_nonce(sender)
                for stale in [n for n in entries if n < state_nonce]:
                    self.pool_by_hash.pop(entries.pop(stale).hash, None)
                entry = entries.get(state_nonce)
                if entry is None or entry.ready_at > now:
                    break
                if _fee_cap(entry.tx) < header.base_fee_per_gas:
                    break  # waits for the base fee to drop (or a replacement)
                if not entry.internal and _fee_cap(entry.tx) < floor:
                    break  # below the risen price floor: waits, as below a risen base fee
                if entry.tx.gas > header.gas_limit - header.gas_used:
                    break  # next block
                del entries[state_nonce]
                del self.pool_by_hash[entry.hash]
                self._apply(entry)
            if entries is not None and not entries:
                self.pool_by_sender.pop(sender, None)

    def _apply(self, entry: PoolEntry):
        if not self.evm.header.gas_used:
            # first tx of a fresh pending block: stamp it with the current time
            self.evm.set_header_timestamp(max(int(time.time()), self._parent_timestamp()))
        try:
            self.evm.apply_transaction(entry.tx)
        except Exception as exc:
            # e.g. balance spent by an earlier tx (ValidationError): forgotten,
            # as geth would; anything else is a devnet bug, logged loudly
            self.stats["txs_dropped_at_apply"] += 1
            if isinstance(exc, ValidationError):
                log.warning("dropping tx %s at apply: %s", hx.data(entry.hash), exc)
            else:
                log.exception("dropping tx %s at apply", hx.data(entry.hash))
            return
        self.unmined[entry.hash] = entry
        if self.config["block_time_ms"] <= 0:
            self._mine()

    def _parent_timestamp(self) -> int:
        return self.blocks[self.head].timestamp

    def mine(self) -> int:
        """Mine the pending block now (admin /mine, interval miner)."""
        with self.lock:
            self._promote(sealing=True)
            number = self._mine()
            self._promote()
            return number

    def _mine(self) -> int:
        if not self.evm.header.gas_used:
            self.evm.set_header_timestamp(max(int(time.time()), self._parent_timestamp()))
        parent = self.blocks[self.head].hash
        block = self.evm.mine_block(mix_hash=keccak(parent))
        self._record_block(block)
        self.unmined.clear()
        with self.new_block:
            self.new_block.notify_all()
        return block.number

    # ------------------------------------------------------------ background

    def _pool_loop(self):
        # Promotes delayed / blocked pool entries when they become ready.
        with self.lock:
            while not self._stop.is_set():
                try:
                    self._promote()
                except Exception:
                    log.exception("pool promotion failed")
                wait = 0.5
                if self.pool_by_hash:
                    nearest = min(e.ready_at for e in self.pool_by_hash.values())
                    wait = min(wait, max(0.02, nearest - time.monotonic()))
                self._pool_wakeup.wait(wait)

    def _miner_loop(self):
        # Interval mining (block_time_ms > 0). Reads the knob every round so
        # it can be switched at run time.
        next_at = time.monotonic()
        while not self._stop.is_set():
            period = self.config["block_time_ms"] / 1000
            if period <= 0:
                idle = self.config["idle_block_ms"] / 1000
                if self.unmined:
                    self.mine()  # switched to automine with a half-built block
                elif idle > 0 and time.monotonic() - self.blocks[self.head].mined_at >= idle:
                    try:
                        self.mine()  # an empty block: real chains keep producing them
                    except Exception:
                        log.exception("idle block failed")
                time.sleep(0.05)
                next_at = time.monotonic()
                continue
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
            try:
                self.mine()
            except Exception:
                log.exception("interval mining failed")

    # ------------------------------------------------------------ indexing

    def _record_block(self, block):
        header = block.header
        receipts = block.get_receipts(self.evm.chaindb)
        base_fee = header.base_fee_per_gas
        number = block.number
        txs, tips, block_logs = [], [], []
        cumulative = 0
        log_id = len(self.logs)
        block_log_index = 0
        for i, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
            gas_used = receipt.gas_used - cumulative
            cumulative = receipt.gas_used
            sender = self.senders.get(tx.hash) or tx.sender
            effective = min(_fee_cap(tx), base_fee + _tip_cap(tx)) if tx.type_id else tx.gas_price
            tips.append((effective - base_fee, gas_used))
            tx_json = self.tx_json(tx, sender, header.hash, number, i, effective)
            txs.append(tx_json)
            logs_json = []
            for lg in receipt.logs:
                topics = tuple(t.to_bytes(32, "big") for t in lg.topics)
                lj = {
                    "address": hx.address(lg.address),
                    "topics": [hx.data(t) for t in topics],
                    "data": hx.data(lg.data),
                    "blockNumber": hx.quantity(number),
                    "transactionHash": hx.data(tx.hash),
                    "transactionIndex": hx.quantity(i),
                    "blockHash": hx.data(header.hash),
                    "logIndex": hx.quantity(block_log_index),
                    "removed": False,
                }
                block_log_index += 1
                logs_json.append(lj)
                rec = LogRecord(number, lg.address, topics, lj)
                block_logs.append(rec)
                self.log_index.setdefault(("a", lg.address), []).append(log_id)
                for pos, topic in enumerate(topics):
                    self.log_index.setdefault((pos, topic), []).append(log_id)
                log_id += 1
            status = 1 if receipt.state_root == b"\x01" else 0
            self.stats["txs_mined"] += 1
            self.stats["txs_reverted"] += 1 - status
            self.receipts[tx.hash] = {
                "blockHash": hx.data(header.hash),
                "blockNumber": hx.quantity(number),
                "contractAddress": hx.address(generate_contract_address(sender, tx.nonce)) if not tx.to else None,
                "cumulativeGasUsed": hx.quantity(receipt.gas_used),
                "effectiveGasPrice": hx.quantity(effective),
                "from": hx.address(sender),
                "gasUsed": hx.quantity(gas_used),
                "logs": logs_json,
                "logsBloom": hx.data(receipt.bloom.to_bytes(256, "big")),
                "status": hx.quantity(status),
                "to": hx.address(tx.to) if tx.to else None,
                "transactionHash": hx.data(tx.hash),
                "transactionIndex": hx.quantity(i),
                "type": hx.quantity(tx.type_id or 0),
            }
            self.tx_location[tx.hash] = (number, i)
        header_json = {
            "number": hx.quantity(number),
            "hash": hx.data(header.hash),
            "parentHash": hx.data(header.parent_hash),
            "nonce": hx.data(header.nonce),
            "mixHash": hx.data(header.mix_hash),
            "sha3Uncles": hx.data(header.uncles_hash),
            "logsBloom": hx.data(header.bloom.to_bytes(256, "big")),
            "transactionsRoot": hx.data(header.transaction_root),
            "stateRoot": hx.data(header.state_root),
            "receiptsRoot": hx.data(header.receipt_root),
            "miner": hx.address(header.coinbase),
            "difficulty": hx.quantity(header.difficulty),
            "totalDifficulty": "0x0",
            "extraData": hx.data(header.extra_data),
            "size": hx.quantity(len(rlp.encode(block))),
            "gasLimit": hx.quantity(header.gas_limit),
            "gasUsed": hx.quantity(header.gas_used),
            "timestamp": hx.quantity(header.timestamp),
            "baseFeePerGas": hx.quantity(base_fee),
            "withdrawals": [],
            "withdrawalsRoot": hx.data(header.withdrawals_root),
            "blobGasUsed": hx.quantity(header.blob_gas_used),
            "excessBlobGas": hx.quantity(header.excess_blob_gas),
            "parentBeaconBlockRoot": hx.data(header.parent_beacon_block_root),
            "uncles": [],
        }
        requests_hash = getattr(header, "requests_hash", None)
        if requests_hash is not None:
            header_json["requestsHash"] = hx.data(requests_hash)
        record = BlockRecord(
            number=number,
            hash=header.hash,
            header_json=header_json,
            tx_hashes=[tx.hash for tx in block.transactions],
            txs=txs,
            mined_at=time.monotonic(),
            timestamp=header.timestamp,
            base_fee=base_fee,
            gas_used=header.gas_used,
            gas_limit=header.gas_limit,
            tips=sorted(tips),
            logs=block_logs,
        )
        self.block_log_start.append(len(self.logs))
        self.logs.extend(block_logs)
        self.blocks.append(record)
        self.block_by_hash[header.hash] = number
        self.head = number  # publish last: readers bound their view by head

    # ------------------------------------------------------------ JSON views

    def tx_json(self, tx, sender, block_hash=None, number=None, index=None, effective=None) -> dict:
        out = {
            "blockHash": hx.data(block_hash) if block_hash else None,
            "blockNumber": hx.quantity(number) if number is not None else None,
            "from": hx.address(sender),
            "gas": hx.quantity(tx.gas),
            "gasPrice": hx.quantity(effective if effective is not None else _fee_cap(tx)),
            "hash": hx.data(tx.hash),
            "input": hx.data(tx.data),
            "nonce": hx.quantity(tx.nonce),
            "to": hx.address(tx.to) if tx.to else None,
            "transactionIndex": hx.quantity(index) if index is not None else None,
            "value": hx.quantity(tx.value),
            "type": hx.quantity(tx.type_id or 0),
        }
        if tx.type_id:
            out.update(
                {
                    "chainId": hx.quantity(tx.chain_id),
                    "accessList": [
                        {"address": hx.address(a), "storageKeys": [hx.data(k.to_bytes(32, "big")) for k in ks]}
                        for a, ks in tx.access_list
                    ],
                    "v": hx.quantity(tx.y_parity),
                    "yParity": hx.quantity(tx.y_parity),
                }
            )
            if tx.type_id == 2:
                out["maxFeePerGas"] = hx.quantity(tx.max_fee_per_gas)
                out["maxPriorityFeePerGas"] = hx.quantity(tx.max_priority_fee_per_gas)
        else:
            out["chainId"] = hx.quantity((tx.v - 35) // 2)
            out["v"] = hx.quantity(tx.v)
        out["r"] = hx.quantity(tx.r)
        out["s"] = hx.quantity(tx.s)
        return out

    def receipt(self, tx_hash: bytes) -> dict | None:
        loc = self.tx_location.get(tx_hash)
        if loc is None or loc[0] > self.head:
            return None
        return self.receipts.get(tx_hash)

    def transaction(self, tx_hash: bytes) -> dict | None:
        loc = self.tx_location.get(tx_hash)
        if loc is not None and loc[0] <= self.head:
            return self.blocks[loc[0]].txs[loc[1]]
        entry = self.pool_by_hash.get(tx_hash) or self.unmined.get(tx_hash)
        if entry is None:
            return None
        return self.tx_json(entry.tx, entry.sender)

    def block(self, number: int, full: bool) -> dict | None:
        if number > self.head:
            return None
        record = self.blocks[number]
        out = dict(record.header_json)
        out["transactions"] = list(record.txs) if full else [hx.data(h) for h in record.tx_hashes]
        return out

    def get_logs(self, from_block: int, to_block: int, addresses: list, topics: list) -> list[dict]:
        """addresses: [] = any; topics: per position None (any) or a list of 32-byte values."""
        head = self.head
        to_block = min(to_block, head)
        if from_block > to_block:
            return []
        start = self.block_log_start[from_block]
        end = self.block_log_start[to_block + 1] if to_block + 1 <= head else len(self.logs)
        if to_block == head:
            end = self.block_log_start[head] + len(self.blocks[head].logs)
        # Use the most selective index among the constraints, then check all.
        candidates = None
        constraints = []
        if addresses:
            constraints.append([("a", a) for a in addresses])
        for pos, options in enumerate(topics):
            if options:
                constraints.append([(pos, t) for t in options])
        for keys_ in constraints:
            ids = sorted(set(itertools.chain.from_iterable(self.log_index.get(k, ()) for k in keys_)))
            if candidates is None or len(ids) < len(candidates):
                candidates = ids
        if candidates is None:
            ids = range(start, end)
        else:
            ids = candidates[bisect.bisect_left(candidates, start) : bisect.bisect_left(candidates, end)]
        out = []
        for i in ids:
            rec = self.logs[i]
            if addresses and rec.address not in addresses:
                continue
            if any(opts and (pos >= len(rec.topics) or rec.topics[pos] not in opts) for pos, opts in enumerate(topics)):
                continue
            out.append(rec.json)
        return out

    def fee_history(self, count: int, newest: int, percentiles: list[float]) -> dict:
        newest = min(newest, self.head)
        oldest = max(0, newest - count + 1)
        records = self.blocks[oldest : newest + 1]
        out = {
            "oldestBlock": hx.quantity(oldest),
            "baseFeePerGas": [hx.quantity(r.base_fee) for r in records],
            "gasUsedRatio": [r.gas_used / r.gas_limit for r in records],
            "baseFeePerBlobGas": ["0x1"] * (len(records) + 1),
            "blobGasUsedRatio": [0.0] * len(records),
        }
        # the base fee of the block after `newest`
        if newest == self.head:
            out["baseFeePerGas"].append(hx.quantity(self.base_fee_next()))
        else:
            out["baseFeePerGas"].append(hx.quantity(self.blocks[newest + 1].base_fee))
        if percentiles:
            rewards = []
            for r in records:
                row = []
                if not r.tips:
                    row = [hx.quantity(0)] * len(percentiles)
                else:
                    total = sum(g for _, g in r.tips)
                    for p in percentiles:
                        threshold = total * p / 100
                        acc, chosen = 0, r.tips[-1][0]
                        for tip, g in r.tips:
                            acc += g
                            if acc >= threshold:
                                chosen = tip
                                break
                        row.append(hx.quantity(max(0, chosen)))
                rewards.append(row)
            out["reward"] = rewards
        return out

    # ------------------------------------------------------------ internal txs

    def send_internal(self, to: bytes | None, data: bytes = b"", value: int = 0, gas: int | None = None,
                      key: keys.PrivateKey | None = None) -> bytes:
        """A transaction from the operator account (or `key`, e.g. a simulated
        era-B node), never subject to faults.
        gas None: estimated (+25%), so a reverting call fails loudly here."""
        signer = key or self.operator
        sender = signer.public_key.to_canonical_address()
        with self.lock:
            if gas is None:
                call = {"from": sender, "to": to, "data": data, "value": value}
                gas = min(self.block_gas_limit, self.estimate_gas(call, "pending") * 5 // 4 + 20_000)
            nonce = self._pending_nonce(sender)
            price = 2 * self.evm.header.base_fee_per_gas + GWEI
            unsigned = self.evm.get_vm().create_unsigned_transaction(
                nonce=nonce, gas_price=price, gas=gas, to=to or b"", value=value, data=data
            )
            signed = unsigned.as_signed_transaction(signer, chain_id=self.chain_id)
            return self.submit(rlp.encode(signed), internal=True)

    def wait_receipt(self, tx_hash: bytes, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        with self.new_block:
            while True:
                receipt = self.receipt(tx_hash)
                if receipt is not None:
                    return receipt
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"tx {hx.data(tx_hash)} not mined")
                self.new_block.wait(min(left, 0.2))
