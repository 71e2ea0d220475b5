"""Ethereum JSON-RPC over HTTP, with geth's error shapes and strict parsing.

Fault knobs (client traffic only; the devnet's own nodes/relay use the chain
in-process): rpc_http500_rate (HTTP 500 before anything runs), rpc_error_rate
(per call: -32603 instead of running it), rpc_stall_rate/rpc_stall_ms (the
request runs, then the answer is held back).
"""

from __future__ import annotations

import json
import logging
import time

from . import hexutil as hx
from .chain import DEFAULT_TIP, ExecutionError, TxRejected, error_string
from .hexutil import ParamError
from .httpbase import Handler

log = logging.getLogger("devnet.rpc")

CLIENT_VERSION = "crynux-devnet/v0.1/py-evm-0.12.1b1"
JSON_CONTENT_TYPES = ("application/json", "application/json-rpc", "application/jsonrequest")


class RPCError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _args(params, names: list[str], required: int):
    """geth's positional-argument rules: too many / missing required."""
    if len(params) > len(names):
        raise RPCError(-32602, f"too many arguments, want at most {len(names)}")
    if len(params) < required:
        raise RPCError(-32602, f"missing value for required argument {len(params)}")
    return list(params) + [None] * (len(names) - len(params))


def _invalid(index: int, exc: Exception) -> RPCError:
    return RPCError(-32602, f"invalid argument {index}: {exc}")


class RPC:
    def __init__(self, chain, config):
        self.chain = chain
        self.config = config
        self.calls = 0
        # For the benchmark's requests per job: HTTP requests (a batch is one) and calls by
        # kind ("eth_call 0x1d65e77e": method, and the selector when it calls a contract).
        self.http_requests = 0
        self.calls_by_kind: dict[str, int] = {}
        self.methods = {
            "web3_clientVersion": self.web3_clientVersion,
            "net_version": self.net_version,
            "net_listening": lambda p: True,
            "eth_chainId": self.eth_chainId,
            "eth_syncing": lambda p: False,
            "eth_accounts": lambda p: [],
            "eth_blockNumber": self.eth_blockNumber,
            "eth_getBalance": self.eth_getBalance,
            "eth_getTransactionCount": self.eth_getTransactionCount,
            "eth_getCode": self.eth_getCode,
            "eth_gasPrice": self.eth_gasPrice,
            "eth_maxPriorityFeePerGas": self.eth_maxPriorityFeePerGas,
            "eth_feeHistory": self.eth_feeHistory,
            "eth_estimateGas": self.eth_estimateGas,
            "eth_call": self.eth_call,
            "eth_sendRawTransaction": self.eth_sendRawTransaction,
            "eth_getTransactionReceipt": self.eth_getTransactionReceipt,
            "eth_getTransactionByHash": self.eth_getTransactionByHash,
            "eth_getBlockByNumber": self.eth_getBlockByNumber,
            "eth_getBlockByHash": self.eth_getBlockByHash,
            "eth_getLogs": self.eth_getLogs,
        }

    # ------------------------------------------------------------ envelope

    def handle(self, body: bytes) -> bytes | None:
        """Process one HTTP body; returns the response body (None: nothing to send)."""
        self.http_requests += 1
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._encode(self._error(None, -32700, "parse error"))
        if isinstance(request, list):
            if not request:
                return self._encode(self._error(None, -32600, "empty batch"))
            replies = [r for r in (self._one(m) for m in request) if r is not None]
            return self._encode(replies) if replies else b""
        reply = self._one(request)
        return self._encode(reply) if reply is not None else b""

    @staticmethod
    def _encode(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    @staticmethod
    def _error(id_, code, message, data=None) -> dict:
        err = {"code": code, "message": message}
        if data is not None:
            err["data"] = data
        return {"jsonrpc": "2.0", "id": id_, "error": err}

    def _one(self, msg) -> dict | None:
        if not isinstance(msg, dict):
            return self._error(None, -32600, "invalid request")
        notification = "id" not in msg
        id_ = msg.get("id")
        if isinstance(id_, (bool, dict, list)):
            return self._error(None, -32600, "invalid request")
        method = msg.get("method")
        if msg.get("jsonrpc") != "2.0" or not isinstance(method, str) or not method:
            return self._error(id_, -32600, "invalid request")
        self.calls += 1
        kind = method
        params = msg.get("params")
        if method in ("eth_call", "eth_estimateGas") and isinstance(params, list) and params and isinstance(params[0], dict):
            data = params[0].get("data") or params[0].get("input")
            if isinstance(data, str):
                kind += " " + data[:10]
        self.calls_by_kind[kind] = self.calls_by_kind.get(kind, 0) + 1
        if self.config.roll("rpc_error_rate", "rpc_error"):
            reply = self._error(id_, -32603, "devnet: injected JSON-RPC error")
            return None if notification else reply
        fn = self.methods.get(method)
        if fn is None:
            reply = self._error(id_, -32601, f"the method {method} does not exist/is not available")
            return None if notification else reply
        params = msg.get("params", [])
        if params is None:
            params = []
        try:
            if not isinstance(params, list):
                raise RPCError(-32602, "non-array args")
            result = fn(params)
            reply = {"jsonrpc": "2.0", "id": id_, "result": result}
        except RPCError as exc:
            reply = self._error(id_, exc.code, exc.message, exc.data)
        except ParamError as exc:
            reply = self._error(id_, -32602, f"invalid argument: {exc}")
        except Exception as exc:  # a devnet bug: say so instead of hanging the client
            log.exception("internal error in %s", method)
            reply = self._error(id_, -32603, f"devnet internal error: {type(exc).__name__}: {exc}")
        return None if notification else reply

    # ------------------------------------------------------------ arguments

    def _block_tag(self, value, index: int):
        """BlockNumberOrHash -> "latest" | "pending" | int."""
        try:
            if isinstance(value, dict):
                if "blockHash" in value:
                    h = hx.parse_hash(value["blockHash"])
                    number = self.chain.block_by_hash.get(h)
                    if number is None or number > self.chain.head:
                        raise RPCError(-32000, f"header for hash {hx.data(h)} not found")
                    return number
                value = value.get("blockNumber")
            if value in ("latest", "safe", "finalized"):
                return "latest"
            if value == "pending":
                return "pending"
            if value == "earliest":
                return 0
            number = hx.parse_uint64(value, "block number")
            if number > 2**63 - 1:
                raise ParamError("block number larger than int64")
            return number
        except ParamError as exc:
            raise _invalid(index, exc) from None

    def _resolve(self, tag) -> int:
        if tag in ("latest", "pending"):
            return self.chain.head
        return tag

    def _state_tag(self, value, index):
        tag = self._block_tag(value, index)
        if isinstance(tag, int) and tag > self.chain.head:
            raise RPCError(-32000, "header not found")
        return tag

    @staticmethod
    def _address(value, index):
        try:
            return hx.parse_address(value)
        except ParamError as exc:
            raise _invalid(index, exc) from None

    @staticmethod
    def _hash(value, index):
        try:
            return hx.parse_hash(value)
        except ParamError as exc:
            raise _invalid(index, exc) from None

    def _call_args(self, value, index) -> dict:
        if not isinstance(value, dict):
            raise _invalid(index, "json: cannot unmarshal into Go value of type ethapi.TransactionArgs")
        try:
            call = {}
            if value.get("from") is not None:
                call["from"] = hx.parse_address(value["from"], "from")
            if value.get("to") is not None:
                call["to"] = hx.parse_address(value["to"], "to")
            if value.get("gas") is not None:
                call["gas"] = hx.parse_uint64(value["gas"], "gas")
            for key in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "chainId"):
                if value.get(key) is not None:
                    call[key] = hx.parse_quantity(value[key], key)
            if value.get("nonce") is not None:
                hx.parse_uint64(value["nonce"], "nonce")
            data = hx.parse_data(value["data"], "data") if value.get("data") is not None else None
            inp = hx.parse_data(value["input"], "input") if value.get("input") is not None else None
        except ParamError as exc:
            raise _invalid(index, exc) from None
        if data is not None and inp is not None and data != inp:
            raise RPCError(-32602, 'both "data" and "input" are set and not equal. Please use "input" to pass transaction call data')
        call["data"] = inp if inp is not None else (data or b"")
        if "gasPrice" in call and ("maxFeePerGas" in call or "maxPriorityFeePerGas" in call):
            raise RPCError(-32000, "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
        if "chainId" in call and call["chainId"] != self.chain.chain_id:
            raise RPCError(-32000, f"chainId does not match node's (have={call['chainId']}, want={self.chain.chain_id})")
        return call

    # ------------------------------------------------------------ methods

    def web3_clientVersion(self, params):
        _args(params, [], 0)
        return CLIENT_VERSION

    def net_version(self, params):
        _args(params, [], 0)
        return str(self.chain.chain_id)

    def eth_chainId(self, params):
        _args(params, [], 0)
        return hx.quantity(self.chain.chain_id)

    def eth_blockNumber(self, params):
        _args(params, [], 0)
        return hx.quantity(self.chain.head)

    def eth_getBalance(self, params):
        addr, tag = _args(params, ["address", "block"], 2)
        return hx.quantity(self.chain.balance(self._address(addr, 0), self._state_tag(tag, 1)))

    def eth_getTransactionCount(self, params):
        addr, tag = _args(params, ["address", "block"], 2)
        return hx.quantity(self.chain.nonce(self._address(addr, 0), self._state_tag(tag, 1)))

    def eth_getCode(self, params):
        addr, tag = _args(params, ["address", "block"], 2)
        return hx.data(self.chain.code(self._address(addr, 0), self._state_tag(tag, 1)))

    def eth_gasPrice(self, params):
        _args(params, [], 0)
        return hx.quantity(max(self.chain.base_fee_next(), self.chain.config["min_gas_price_wei"]) + DEFAULT_TIP)

    def eth_maxPriorityFeePerGas(self, params):
        _args(params, [], 0)
        return hx.quantity(DEFAULT_TIP)

    def eth_feeHistory(self, params):
        count, newest, percentiles = _args(params, ["blockCount", "newestBlock", "rewardPercentiles"], 2)
        try:
            if isinstance(count, int) and not isinstance(count, bool):
                n = count  # geth's math.HexOrDecimal64 accepts both
            elif isinstance(count, str) and count.isdigit():
                n = int(count)
            else:
                n = hx.parse_uint64(count, "blockCount")
        except ParamError as exc:
            raise _invalid(0, exc) from None
        newest_n = self._resolve(self._block_tag(newest, 1))
        if percentiles is None:
            percentiles = []
        if not isinstance(percentiles, list) or any(isinstance(p, bool) or not isinstance(p, (int, float)) for p in percentiles):
            raise _invalid(2, "json: cannot unmarshal into Go value of type []float64")
        for i, p in enumerate(percentiles):
            if p < 0 or p > 100 or (i and p < percentiles[i - 1]):
                raise RPCError(-32000, f"invalid reward percentile: {p}")
        if n == 0:
            return {"oldestBlock": "0x0", "baseFeePerGas": None, "gasUsedRatio": None}
        if newest_n > self.chain.head:
            raise RPCError(-32000, f"request beyond head block: requested {newest_n}, head {self.chain.head}")
        return self.chain.fee_history(min(n, 1024), newest_n, percentiles)

    def _execute(self, fn, params, estimate: bool = False):
        call_value, tag = _args(params, ["args", "block"], 1)
        call = self._call_args(call_value, 0)
        tag = self._state_tag(tag, 1) if tag is not None else "latest"
        try:
            return fn(call, tag)
        except ExecutionError as exc:
            if self.config["rpc_flavor"] == "ethermint":
                raise self._ethermint_error(exc, estimate, call, self.chain.block_gas_limit) from None
            if exc.kind == "revert" and not exc.data:
                raise RPCError(-32000, exc.message) from None
            raise RPCError(exc.code, exc.message, hx.data(exc.data) if exc.data else None) from None

    @staticmethod
    def _ethermint_error(exc: ExecutionError, estimate: bool, call: dict, gas_cap: int) -> RPCError:
        """How an Ethermint node (ethermint@fd8c2d2) reports a failed call.

        eth_call: rpc/backend/call_tx.go:388-393 builds a RevertError in the RPC
        process: code 3, "execution reverted[: reason]" (reason only for
        Error(string): go-ethereum 1.10's abi.UnpackRevert), data = the revert
        bytes ("0x" when empty); other VM errors are a gRPC Internal status.
        eth_estimateGas: the keeper's error (x/evm/keeper/grpc_query.go:379-387)
        comes back through the gRPC query client, so it is a plain status text
        (gRPC code Unknown): code -32000, no data.
        """
        if exc.message == "header not found":
            return RPCError(-32000, exc.message)
        if exc.kind == "revert":
            reason = error_string(exc.data or b"")
            text = "execution reverted" + (f": {reason}" if reason is not None else "")
            if estimate:
                return RPCError(-32000, f"rpc error: code = Unknown desc = {text}")
            return RPCError(3, text, hx.data(exc.data or b""))
        if estimate:
            if exc.kind == "out_of_gas":
                return RPCError(-32000, f"rpc error: code = Unknown desc = gas required exceeds allowance ({call.get('gas') or gas_cap})")
            return RPCError(-32000, f"rpc error: code = Unknown desc = {exc.message}")
        return RPCError(-32000, f"rpc error: code = Internal desc = {exc.message}")

    @staticmethod
    def _no_overrides(params, most):
        if len(params) > most:
            raise RPCError(-32602, f"too many arguments, want at most {most}")
        if any(p is not None for p in params[2:]):
            raise RPCError(-32602, "devnet: state/block overrides are not supported")
        return params[:2]

    def eth_call(self, params):
        return hx.data(self._execute(self.chain.call, self._no_overrides(params, 4)))

    def eth_estimateGas(self, params):
        return hx.quantity(self._execute(self.chain.estimate_gas, self._no_overrides(params, 3), estimate=True))

    def eth_sendRawTransaction(self, params):
        (raw,) = _args(params, ["data"], 1)
        try:
            raw = hx.parse_data(raw)
        except ParamError as exc:
            raise _invalid(0, exc) from None
        try:
            return hx.data(self.chain.submit(raw))
        except TxRejected as exc:
            raise RPCError(-32000, str(exc)) from None

    def eth_getTransactionReceipt(self, params):
        (h,) = _args(params, ["hash"], 1)
        return self.chain.receipt(self._hash(h, 0))

    def eth_getTransactionByHash(self, params):
        (h,) = _args(params, ["hash"], 1)
        return self.chain.transaction(self._hash(h, 0))

    def eth_getBlockByNumber(self, params):
        tag, full = _args(params, ["number", "fullTx"], 2)
        if not isinstance(full, bool):
            raise _invalid(1, "json: cannot unmarshal into Go value of type bool")
        return self.chain.block(self._resolve(self._block_tag(tag, 0)), full)

    def eth_getBlockByHash(self, params):
        h, full = _args(params, ["hash", "fullTx"], 2)
        if not isinstance(full, bool):
            raise _invalid(1, "json: cannot unmarshal into Go value of type bool")
        number = self.chain.block_by_hash.get(self._hash(h, 0))
        return None if number is None else self.chain.block(number, full)

    def eth_getLogs(self, params):
        (crit,) = _args(params, ["filter"], 1)
        if not isinstance(crit, dict):
            raise _invalid(0, "json: cannot unmarshal into Go value of type filters.FilterCriteria")
        try:
            addresses = []
            raw_addr = crit.get("address")
            if isinstance(raw_addr, list):
                addresses = [hx.parse_address(a, "address") for a in raw_addr]
            elif raw_addr is not None:
                addresses = [hx.parse_address(raw_addr, "address")]
            topics = []
            raw_topics = crit.get("topics") or []
            if not isinstance(raw_topics, list):
                raise ParamError("topics: expected an array")
            if len(raw_topics) > 4:
                raise RPCError(-32602, "exceed max topics")
            for t in raw_topics:
                if t is None:
                    topics.append(None)
                elif isinstance(t, list):
                    opts = [hx.parse_hash(x, "topic") for x in t if x is not None]
                    # a null inside an OR-list makes the position a wildcard
                    topics.append(None if (not opts or any(x is None for x in t)) else set(opts))
                else:
                    topics.append({hx.parse_hash(t, "topic")})
        except ParamError as exc:
            raise _invalid(0, exc) from None
        head = self.chain.head
        if crit.get("blockHash") is not None:
            if crit.get("fromBlock") is not None or crit.get("toBlock") is not None:
                raise RPCError(-32602, "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other")
            number = self.chain.block_by_hash.get(self._hash(crit["blockHash"], 0))
            if number is None or number > head:
                raise RPCError(-32000, "unknown block")
            begin = end = number
        else:
            begin = self._resolve(self._block_tag(crit.get("fromBlock") or "latest", 0))
            end = self._resolve(self._block_tag(crit.get("toBlock") or "latest", 0))
            ethermint = self.config["rpc_flavor"] == "ethermint"
            if ethermint:
                # ethermint@fd8c2d2 rpc/namespaces/ethereum/eth/filters/filters.go:147-156: block 0 means 1
                begin, end = max(begin, 1), max(end, 1)
            elif begin > end:
                raise RPCError(-32602, "invalid block range params")
            limit = self.config["logs_max_block_range"]
            if limit and end - begin > limit:  # filters.go:158-160
                raise RPCError(-32000, f"maximum [from, to] blocks distance: {limit}")
            if begin > end:
                return []
        logs = self.chain.get_logs(begin, end, set(addresses), topics)
        cap = self.config["logs_max_results"]
        if cap and len(logs) > cap:  # filters.go:189-192
            raise RPCError(-32000, f"query returned more than {cap} results")
        return logs


class RPCHandler(Handler):
    """POST / with a JSON-RPC body (geth's HTTP rules: content type, 405 for other verbs)."""

    def do_GET(self):
        self.send(200, b"", "text/plain")  # health check, like geth on an empty GET

    def do_PUT(self):
        self.send(405, b"method not allowed\n", "text/plain")

    do_DELETE = do_PATCH = do_PUT

    def do_POST(self):
        rpc: RPC = self.server.app
        body = self.read_body()
        if body is None:
            self.close_connection = True  # the body was not read
            self.send(413, b"content length too large\n", "text/plain")
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in JSON_CONTENT_TYPES:
            self.send(415, b"invalid content type, only application/json is supported\n", "text/plain")
            return
        if rpc.config.roll("rpc_http500_rate", "rpc_http500"):
            self.send(500, b"devnet: injected HTTP 500\n", "text/plain")
            return
        reply = rpc.handle(body)
        if rpc.config.roll("rpc_stall_rate", "rpc_stall"):
            time.sleep(rpc.config["rpc_stall_ms"] / 1000)
        self.send(200, reply or b"")
