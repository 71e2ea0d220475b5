"""Every fault / speed knob demonstrably takes effect (one test per knob;
nodes, queue_size_limit, node_vram_gb, task_timeout_s and watchdog_delay_ms
are exercised in test_tasks.py, relay_sync_lag_ms in test_relay.py)."""

import json
import os
import socket
import time

import pytest
from eth_abi import decode
from eth_utils import keccak

from client import SD_ARGS, TOPIC, RPCFailure


def fired(client, name):
    return client.stats()["faults_fired"].get(name, 0)


def run_task(client, acct, prompt):
    args = json.dumps(dict(SD_ARGS, prompt=prompt))
    _, task_id = client.create_task(acct, args)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    return task_id, time.time()


def test_rpc_error_rate(client):
    client.knobs(rpc_error_rate=1)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_blockNumber")
    assert e.value.code == -32603 and "injected" in e.value.message
    client.knobs(rpc_error_rate=0)
    assert fired(client, "rpc_error") >= 1


def test_rpc_http500_rate(client):
    client.knobs(rpc_http500_rate=1)
    status, _ = client.rpc_raw({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    assert status == 500
    client.knobs(rpc_http500_rate=0)
    assert fired(client, "rpc_http500") >= 1


def test_rpc_stall_rate_runs_the_request_then_stalls(client, funded):
    acct = funded()
    client.knobs(rpc_stall_rate=1, rpc_stall_ms=1500)
    raw = client.sign(acct, acct.address, value=1, gas=21000)
    with pytest.raises(socket.timeout):
        client.rpc_raw({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}, timeout=0.5)
    client.knobs(rpc_stall_rate=0)
    assert client.receipt("0x" + keccak(raw).hex())["status"] == "0x1"  # it was executed
    assert fired(client, "rpc_stall") >= 1


def test_relay_http500_rate(client):
    client.knobs(relay_http500_rate=1)
    status, _, body = client.relay_http.request("GET", "/v1/now")
    assert status == 500 and json.loads(body)["message"].startswith("devnet")
    client.knobs(relay_http500_rate=0)
    assert fired(client, "relay_http500") >= 1


def test_relay_stall_rate(client):
    client.knobs(relay_stall_rate=1, relay_stall_ms=1500)
    with pytest.raises(socket.timeout):
        client.relay_http.request("GET", "/v1/now", timeout=0.5)
    client.knobs(relay_stall_rate=0)
    assert fired(client, "relay_stall") >= 1


def test_tx_mine_delay(client, funded):
    acct = funded()
    client.knobs(tx_mine_delay_ms=1500)
    base = client.nonce(acct.address)
    tx_hash = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base))
    time.sleep(0.5)
    assert client.rpc("eth_getTransactionReceipt", tx_hash) is None
    assert client.nonce(acct.address) == base + 1  # pending nonce counts the pool
    assert client.rpc("eth_getTransactionByHash", tx_hash)["blockNumber"] is None
    assert client.receipt(tx_hash, timeout=5)["status"] == "0x1"
    assert fired(client, "tx_delayed") >= 1


def test_tx_drop_rate_and_rebroadcast(client, funded):
    acct = funded()
    client.knobs(tx_drop_rate=1)
    base = client.nonce(acct.address)
    raw = client.sign(acct, acct.address, value=1, gas=21000, nonce=base)
    tx_hash = client.send_raw(raw)
    time.sleep(0.3)
    assert client.rpc("eth_getTransactionByHash", tx_hash) is None
    assert client.rpc("eth_getTransactionReceipt", tx_hash) is None
    assert client.nonce(acct.address) == base
    client.knobs(tx_drop_rate=0)
    # a later nonce now waits behind the gap ...
    later = client.send_raw(client.sign(acct, acct.address, value=2, gas=21000, nonce=base + 1))
    time.sleep(0.3)
    assert client.rpc("eth_getTransactionReceipt", later) is None
    # ... until the same bytes are broadcast again (considered anew)
    assert client.send_raw(raw) == tx_hash
    assert client.receipt(tx_hash)["status"] == "0x1" and client.receipt(later)["status"] == "0x1"
    assert fired(client, "tx_dropped") >= 1


def test_abort_rate(client, funded):
    acct = funded()
    client.knobs(abort_rate=1)
    task_id, _ = run_task(client, acct, "abort rate")
    outcome = client.wait_outcome(task_id)
    assert outcome["topics"][0] == "0x" + TOPIC["TaskAborted"].hex()
    assert decode(["string"], bytes.fromhex(outcome["data"][2:]))[0] in ("Task error reported", "Task result illegal")


def test_stuck_rate(client, funded):
    acct = funded()
    client.knobs(stuck_rate=1)
    task_id, _ = run_task(client, acct, "stuck rate")
    time.sleep(1.0)  # 3x the suite's task duration
    assert client.outcome_logs(task_id) == []
    assert client.get_task(task_id)["id"] == task_id
    assert fired(client, "task_stuck") >= 1


def test_task_duration(client, funded):
    acct = funded()
    client.knobs(task_duration_ms=1500)
    task_id, uploaded = run_task(client, acct, "duration")
    client.wait_outcome(task_id)
    assert time.time() - uploaded >= 1.4


def test_results_upload_delay(client, funded):
    acct = funded()
    client.knobs(results_upload_delay_ms=1500)
    task_id, _ = run_task(client, acct, "upload delay")
    client.wait_outcome(task_id)
    success_at = time.time()
    status, _, data = client.result(acct, task_id, 0)
    assert status == 400 and json.loads(data)["data"]["message"] == "Task results not uploaded"
    while client.result(acct, task_id, 0)[0] != 200:
        assert time.time() - success_at < 5
        time.sleep(0.05)
    assert time.time() - success_at >= 1.2


@pytest.mark.skipif("block-time" in os.environ.get("DEVNET_TEST_FLAGS", ""), reason="the suite already runs with interval mining")
def test_block_time(client, funded):
    acct = funded()
    client.knobs(block_time_ms=700)
    base = client.nonce(acct.address)
    hashes = [client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base + i)) for i in range(3)]
    assert client.rpc("eth_getTransactionReceipt", hashes[0]) is None
    with pytest.raises(RPCFailure) as e:
        client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base))
    assert e.value.message == "already known"
    receipts = [client.receipt(h, timeout=5) for h in hashes]
    assert len({r["blockNumber"] for r in receipts}) == 1  # one block
    assert [int(r["transactionIndex"], 16) for r in receipts] == [0, 1, 2]
    status, body = client.admin("POST", "/admin/mine")
    assert status == 200 and body["block_number"] > int(receipts[0]["blockNumber"], 16)


def test_min_gas_price_floor_keeps_cheaper_transactions_waiting_and_replaceable(client, funded):
    """A price that rises after signing: the transaction waits in the pool (the
    pending nonce counts it) until a replacement pays the new price."""
    acct = funded()
    base = client.nonce(acct.address)
    cheap = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base, legacy=True, gas_price=2 * 10**9))
    client.receipt(cheap, timeout=5)
    client.knobs(min_gas_price_wei=5 * 10**9)
    assert int(client.rpc("eth_gasPrice"), 16) >= 5 * 10**9
    below = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base + 1, legacy=True, gas_price=2 * 10**9))
    client.admin("POST", "/admin/mine")
    assert client.rpc("eth_getTransactionReceipt", below) is None
    assert client.nonce(acct.address) == base + 2  # pending: counted
    assert int(client.rpc("eth_getTransactionCount", acct.address, "latest"), 16) == base + 1
    with pytest.raises(RPCFailure) as e:  # geth's bump rule still applies to the waiting one
        client.send_raw(client.sign(acct, acct.address, value=2, gas=21000, nonce=base + 1, legacy=True, gas_price=21 * 10**8))
    assert e.value.message == "replacement transaction underpriced"
    bumped = client.send_raw(client.sign(acct, acct.address, value=2, gas=21000, nonce=base + 1, legacy=True, gas_price=6 * 10**9))
    assert client.receipt(bumped, timeout=5)["status"] == "0x1"
    assert client.rpc("eth_getTransactionReceipt", below) is None


@pytest.mark.skipif("block-time" in os.environ.get("DEVNET_TEST_FLAGS", ""), reason="the suite already runs with interval mining")
def test_interval_mining_keeps_transactions_replaceable_until_the_block_is_sealed(client, funded):
    """geth: a transaction sent between blocks stays in the pool, and one paying
    10 % more at its nonce replaces it until the miner seals the block."""
    acct = funded()
    client.knobs(block_time_ms=60_000)
    base = client.nonce(acct.address)
    first = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=base, legacy=True, gas_price=2 * 10**9))
    fill = client.send_raw(client.sign(acct, acct.address, value=0, gas=21000, nonce=base, legacy=True, gas_price=25 * 10**8))
    status, _ = client.admin("POST", "/admin/mine")
    assert status == 200
    assert client.receipt(fill, timeout=5)["status"] == "0x1"
    assert client.rpc("eth_getTransactionReceipt", first) is None
