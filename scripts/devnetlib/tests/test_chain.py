"""JSON-RPC chain behaviour, checked with eth-account / eth-abi as the client."""

import json
import os

import pytest
from eth_abi import decode
from eth_account import Account
from eth_utils import keccak

from client import SD_ARGS, TOPIC, RPCFailure, selector


def test_identity_and_chain_id(client):
    assert client.rpc("eth_chainId") == hex(10000)
    assert client.rpc("net_version") == "10000"
    assert "devnet" in client.rpc("web3_clientVersion")
    assert int(client.rpc("eth_blockNumber"), 16) > 0


def test_wrong_chain_id_and_unprotected_refused(client, funded):
    acct = funded()
    data = client.create_task_data(0, keccak(b"x"), 8, 1)
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, client.task, data, 1, chain_id=1))
    assert "invalid chain id for signer" in e.value.message
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, client.task, data, 1, legacy=True, chain_id=1))
    assert "invalid chain id for signer" in e.value.message
    # pre-EIP-155 legacy tx (v = 27/28)
    tx = {"nonce": 0, "gasPrice": 10**9, "gas": 100000, "to": client.task, "value": 0, "data": b""}
    raw = bytes(Account.sign_transaction(tx, acct.key).raw_transaction)
    with pytest.raises(RPCFailure) as e:
        client.send_raw(raw)
    assert e.value.message == "only replay-protected (EIP-155) transactions allowed over RPC"


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "type2"])
def test_create_task_logs(client, funded, legacy):
    acct = funded()
    args = json.dumps(SD_ARGS)
    receipt, task_id = client.create_task(acct, args, legacy=legacy)
    assert receipt["status"] == "0x1"
    assert receipt["type"] == ("0x0" if legacy else "0x2")
    topics = [lg["topics"][0] for lg in receipt["logs"]]
    assert topics == ["0x" + TOPIC["TaskPending"].hex()] + ["0x" + TOPIC["TaskStarted"].hex()] * 3
    pending = receipt["logs"][0]
    assert pending["topics"][1] == "0x" + "00" * 12 + acct.address[2:].lower()
    words = bytes.fromhex(pending["data"][2:])
    assert int.from_bytes(words[32:64], "big") == 0  # taskType
    assert words[64:96] == keccak(args.encode())
    assert [int(lg["logIndex"], 16) for lg in receipt["logs"]] == [0, 1, 2, 3]
    rounds = [int(lg["data"][-64:], 16) for lg in receipt["logs"][1:]]
    assert rounds == [0, 1, 2]
    info = client.get_task(task_id)
    assert info["id"] == task_id and info["creator"].lower() == acct.address.lower()
    assert len(info["selectedNodes"]) == 3 and len(set(info["selectedNodes"])) == 3
    assert info["taskHash"] == keccak(args.encode()) and info["vramLimit"] == 8
    block = client.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
    assert info["timeout"] == int(block["timestamp"], 16) + 900
    assert info["balance"] == info["totalBalance"] == 10**16
    assert not info["aborted"] and info["resultNode"] == "0x" + "00" * 20
    tx = client.rpc("eth_getTransactionByHash", receipt["transactionHash"])
    assert tx["from"] == acct.address.lower() and tx["blockNumber"] == receipt["blockNumber"]


def test_invalid_task_type_reverts_and_reason_replays(client, funded):
    acct = funded()
    data = client.create_task_data(7, keccak(b"x"), 8, 1)
    receipt = client.transact(acct, client.task, data, 10**15, gas=500_000)
    assert receipt["status"] == "0x0" and receipt["logs"] == []
    # replay like the bridge/SDK: eth_call of the same tx at the block before
    block = hex(int(receipt["blockNumber"], 16) - 1)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_call", {"from": acct.address, "to": client.task, "data": "0x" + data.hex(), "value": hex(10**15)}, block)
    assert e.value.code == 3
    assert e.value.message == "execution reverted: Invalid task type"
    raw = bytes.fromhex(e.value.data[2:])
    assert raw[:4] == bytes.fromhex("08c379a0") and decode(["string"], raw[4:]) == ("Invalid task type",)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_estimateGas", {"from": acct.address, "to": client.task, "data": "0x" + data.hex()})
    assert e.value.code == 3 and e.value.message.endswith("Invalid task type")


def test_cancel_reverts_with_real_strings(client, funded):
    acct, other = funded(), funded()
    _, task_id = client.create_task(acct, json.dumps(SD_ARGS))
    cancel = selector("cancelTask(uint256)") + task_id.to_bytes(32, "big")
    for sender, reason in ((other, "Unauthorized to cancel task"), (acct, "Task has not exceeded the deadline yet")):
        with pytest.raises(RPCFailure) as e:
            client.call(client.task, cancel, sender=sender.address)
        assert e.value.message == "execution reverted: " + reason
    with pytest.raises(RPCFailure) as e:
        client.call(client.task, selector("cancelTask(uint256)") + (10**9).to_bytes(32, "big"), sender=acct.address)
    assert e.value.message == "execution reverted: Task not exist"


def test_total_tasks_counts_globally(client, funded):
    acct = funded()
    before = decode(["uint256"], client.call(client.task, selector("totalTasks()")))[0]
    _, task_id = client.create_task(acct, json.dumps(SD_ARGS))
    after = decode(["uint256"], client.call(client.task, selector("totalTasks()")))[0]
    assert after == before + 1 == task_id


def test_geth_style_send_errors(client, funded):
    acct = funded(1)
    raw = client.sign(acct, acct.address, value=1, gas=21000, nonce=0)
    tx_hash = client.send_raw(raw)
    client.receipt(tx_hash)
    with pytest.raises(RPCFailure) as e:
        client.send_raw(raw)
    assert e.value.code == -32000 and e.value.message.startswith("nonce too low")
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, acct.address, value=1, gas=20000))
    assert e.value.message.startswith("intrinsic gas too low")
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, acct.address, value=2 * 10**18, gas=21000))
    assert e.value.message.startswith("insufficient funds for gas * price + value")
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, acct.address, gas=21000, gas_price=10**9, tip=2 * 10**9))
    assert e.value.message.startswith("max priority fee per gas higher than max fee per gas")
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_sendRawTransaction", "0x" + raw.hex()[:-2])
    assert e.value.code == -32000 and e.value.message.startswith("rlp")


def test_pending_pool_gap_and_replacement(client, funded):
    acct = funded()
    base = client.nonce(acct.address)
    # nonce gap: the future tx waits, pending nonce does not move past the gap
    later = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base + 1))
    assert client.nonce(acct.address) == base
    assert client.rpc("eth_getTransactionByHash", later)["blockNumber"] is None
    # same nonce, < 10% more: refused; +10%: replaces
    first = client.sign(acct, acct.address, value=1, gas=21000, nonce=base + 1, gas_price=2 * 10**9 + 1, tip=10**9 + 1)
    with pytest.raises(RPCFailure) as e:
        client.send_raw(first)
    assert e.value.message == "replacement transaction underpriced"
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base + 1))
    assert e.value.message == "already known"
    bumped = client.send_raw(client.sign(acct, acct.address, value=2, gas=21000, nonce=base + 1, gas_price=22 * 10**8, tip=11 * 10**8))
    assert client.rpc("eth_getTransactionByHash", later) is None
    # filling the gap mines both
    client.receipt(client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base)))
    assert client.receipt(bumped)["status"] == "0x1"
    assert client.nonce(acct.address) == base + 2


def test_strict_parameter_parsing(client):
    addr = "0x" + "11" * 20
    for bad in ("0x01", "12", "0x", "0xzz"):
        with pytest.raises(RPCFailure) as e:
            client.rpc("eth_getBalance", addr, bad)
        assert e.value.code == -32602
    for bad in ("0x" + "11" * 19, "11" * 20, "0x" + "1" * 39):
        with pytest.raises(RPCFailure) as e:
            client.rpc("eth_getBalance", bad, "latest")
        assert e.value.code == -32602
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_sendRawTransaction", "0x123")
    assert e.value.code == -32602
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_getBalance", addr)
    assert e.value.code == -32602 and "missing value" in e.value.message
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_nope")
    assert e.value.code == -32601


def test_batch_and_envelope(client):
    status, body = client.rpc_raw([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": "b", "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_nope", "params": []},
        {"jsonrpc": "2.0", "method": "eth_chainId", "params": []},  # notification: no reply
    ])
    replies = json.loads(body)
    assert status == 200 and [r["id"] for r in replies] == [1, "b", 3]
    assert replies[0]["result"] == "0x2710" and replies[2]["error"]["code"] == -32601
    assert json.loads(client.rpc_raw([])[1])["error"]["code"] == -32600
    status, _, body = client.rpc_http.request("POST", "/", b"{nope", {"Content-Type": "application/json"})
    assert json.loads(body)["error"]["code"] == -32700
    status, _, _ = client.rpc_http.request("POST", "/", b"{}", {"Content-Type": "text/plain"})
    assert status == 415


def test_fee_queries_and_estimate(client, funded):
    acct = funded()
    client.knobs(idle_block_ms=0)  # no block may come between the estimate and the send
    gas_price = int(client.rpc("eth_gasPrice"), 16)
    tip = int(client.rpc("eth_maxPriorityFeePerGas"), 16)
    assert tip == 10**9 and gas_price >= tip
    hist = client.rpc("eth_feeHistory", "0x4", "latest", [25, 75])
    assert len(hist["baseFeePerGas"]) == len(hist["gasUsedRatio"]) + 1 == 5
    assert len(hist["reward"]) == 4 and all(len(r) == 2 for r in hist["reward"])
    data = client.create_task_data(0, keccak(b"estimate"), 8, 1)
    # "pending": the context the tx will run in (block.number - 1 = head, so the
    # same node-selection seed; see test_strict.py for "latest")
    est = int(client.rpc("eth_estimateGas", {"from": acct.address, "to": client.task, "data": "0x" + data.hex(), "value": "0x1"}, "pending"), 16)
    receipt = client.transact(acct, client.task, data, 1, gas=est)
    # gasUsed is after storage refunds, so the needed gas (the estimate) is higher
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) <= est <= int(receipt["gasUsed"], 16) * 1.1


def test_a_value_beyond_the_balance_is_refused_before_the_evm_runs(client):
    # geth's buyGas: a plain -32000 error, not a revert, for the estimate and for a call
    poor = "0x" + os.urandom(20).hex()
    data = client.create_task_data(0, keccak(b"no funds"), 8, 1)
    for method, params in (("eth_estimateGas", ["pending"]), ("eth_call", ["latest"])):
        reply = json.loads(client.rpc_raw({"jsonrpc": "2.0", "id": 1, "method": method,
                                           "params": [{"from": poor, "to": client.task, "data": "0x" + data.hex(), "value": "0x3e8"}] + params})[1])
        assert reply["error"]["code"] == -32000, reply
        assert reply["error"]["message"].startswith("insufficient funds for gas * price + value: address ") and reply["error"]["message"].endswith(" have 0 want 1000"), reply


def test_get_logs_filters(client, funded):
    acct = funded()
    _, task_id = client.create_task(acct, json.dumps(SD_ARGS))
    creator_topic = "0x" + "00" * 12 + acct.address[2:].lower()
    logs = client.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "address": client.task,
                                      "topics": ["0x" + TOPIC["TaskPending"].hex(), creator_topic]})
    assert [int(lg["data"][2:66], 16) for lg in logs] == [task_id]
    started = client.rpc("eth_getLogs", {"fromBlock": "0x0", "address": [client.task],
                                         "topics": ["0x" + TOPIC["TaskStarted"].hex(), [creator_topic], None]})
    assert len(started) == 3
    with pytest.raises(RPCFailure):
        client.rpc("eth_getLogs", {"fromBlock": "0x5", "toBlock": "0x1"})
    with pytest.raises(RPCFailure):
        client.rpc("eth_getLogs", {"topics": ["0x1234"]})
