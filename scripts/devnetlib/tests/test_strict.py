"""Era-D strictness: block-context calls and idle blocks, the SD schema
version, the relay's body limit and blind tasks, GPU-grouped node selection,
and the Ethermint flavour of the JSON-RPC node."""

import json
import time

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak

from client import GPT_ARGS, SD_ARGS, SD_ARGS_V2, TOPIC, DevnetProcess, RPCFailure, selector
from test_tasks import wait_for


def err(field, message):
    return {"message": "validation_error", "data": {"field_name": field, "message": message}}


def cancel_data(task_id):
    return selector("cancelTask(uint256)") + task_id.to_bytes(32, "big")


def latest_block(client):
    return client.rpc("eth_getBlockByNumber", "latest", False)


# ---------------------------------------------------------------- a small devnet of its own

@pytest.fixture(scope="module")
def small():
    """4 nodes of 2 GPU models (2 + 2), no idle blocks, short deadlines, no
    watchdog: for what needs a quiet chain or few nodes."""
    net = DevnetProcess("--nodes", "4", "--node-gpu-kinds", "2", "--idle-block-ms", "0", "--task-timeout-s", "1",
                        "--watchdog-delay-ms", "-1", "--relay-sync-lag-ms", "100", "--sd-schema", "8fcf6e7")
    yield net
    net.stop()


def small_account(net, i):
    return Account.from_key(net.info["accounts"][i]["private_key"])


def test_calls_run_at_the_latest_block_time_until_a_block_comes(small):
    """geth: eth_call/eth_estimateGas use the requested block's header (time
    included), so a cancel after the deadline still reverts until a block with
    a later timestamp exists; an idle block (idle_block_ms) provides it."""
    client = small.client
    acct = small_account(small, 0)
    args = json.dumps(dict(SD_ARGS, prompt="devnet:stuck"))
    receipt, task_id = client.create_task(acct, args, fee=10**16)
    assert receipt["status"] == "0x1"
    timeout = client.get_task(task_id)["timeout"]
    head = int(client.rpc("eth_blockNumber"), 16)
    wait_for(lambda: time.time() > timeout + 1.2, timeout=5)
    assert int(client.rpc("eth_blockNumber"), 16) == head  # idle_block_ms 0: no block since
    call = {"from": acct.address, "to": client.task, "data": "0x" + cancel_data(task_id).hex()}
    for method in ("eth_estimateGas", "eth_call"):
        with pytest.raises(RPCFailure) as e:
            client.rpc(method, call, "latest")
        assert e.value.message == "execution reverted: Task has not exceeded the deadline yet"
    with pytest.raises(RPCFailure):
        client.rpc("eth_estimateGas", call)  # no tag: latest
    # an idle block moves time on chain; its timestamp is the wall clock
    client.knobs(idle_block_ms=200)
    block = wait_for(lambda: (b := latest_block(client)) and int(b["timestamp"], 16) > timeout and b)
    assert abs(int(block["timestamp"], 16) - time.time()) <= 2 and block["transactions"] == []
    assert int(client.rpc("eth_estimateGas", call), 16) > 21000
    client.knobs(idle_block_ms=0)
    receipt = client.transact(acct, client.task, cancel_data(task_id))
    assert receipt["status"] == "0x1"
    assert abs(int(client.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)["timestamp"], 16) - time.time()) <= 2


def test_gpt_needs_three_free_nodes_of_one_gpu(small):
    """Node.sol@4c2d581:395-405 filterGPUID(vramLimit, 3): with 2 + 2 nodes of
    two models a GPT task queues while an SD task starts on mixed models."""
    client = small.client
    acct = small_account(small, 1)
    gpu = lambda node: decode(["uint256"], client.call(client.task, selector("devNodeGpu(address)") + encode(["address"], [node])))[0]
    receipt, gpt_id = client.create_task(acct, json.dumps(GPT_ARGS), task_type=1, cap=1)
    assert [lg["topics"][0] for lg in receipt["logs"]] == ["0x" + TOPIC["TaskPending"].hex()]
    assert client.queued(gpt_id)
    receipt, sd_id = client.create_task(acct, json.dumps(dict(SD_ARGS, prompt="mixed gpus")))
    nodes = client.get_task(sd_id)["selectedNodes"]
    assert len(nodes) == 3 and {gpu(n) for n in nodes} == {0, 1}
    # one model for all nodes: still 1 free node; cancelling the SD task frees
    # three of that model, and the freed node's callback starts the GPT task
    client.knobs(node_gpu_kinds=1)
    assert client.queued(gpt_id)
    wait_for(lambda: time.time() > client.get_task(sd_id)["timeout"] + 1.2, timeout=5)
    receipt = client.transact(acct, client.task, cancel_data(sd_id))
    started = [lg for lg in receipt["logs"] if lg["topics"][0] == "0x" + TOPIC["TaskStarted"].hex()]
    assert len(started) == 3 and int(started[0]["data"][2:66], 16) == gpt_id  # Task.nodeAvailableCallback
    assert not client.queued(gpt_id)
    assert {gpu(n) for n in client.get_task(gpt_id)["selectedNodes"]} == {0}


def test_sd_schema_flag_8fcf6e7(small):
    client = small.client
    acct = small_account(small, 2)
    assert client.admin("GET", "/admin/config")[1]["sd_schema"] == "8fcf6e7"
    for args in (SD_ARGS_V2, SD_ARGS):  # object or string base_model
        text = json.dumps(dict(args, prompt=f"schema {args['base_model']} devnet:stuck"))
        _, task_id = client.create_task(acct, text)
        status, body = client.upload_when_synced(acct, task_id, text)
        assert status == 200, body


def test_blind_task_never_seen_by_the_relay(small):
    """A task the relay skipped (crynux-relay@969e500 tasks/sync_block.go) stays
    'Task not found on the Blockchain'; other tasks are unaffected."""
    client = small.client
    acct = small_account(small, 3)
    total = decode(["uint256"], client.call(client.task, selector("totalTasks()")))[0]
    client.knobs(relay_blind_task_ids=[total + 1])
    args = json.dumps(dict(SD_ARGS, prompt="blind devnet:stuck"))
    receipt, task_id = client.create_task(acct, args)
    assert task_id == total + 1
    wait_for(lambda: client.stats()["relay"]["synced_block"] >= int(receipt["blockNumber"], 16))
    assert client.upload(acct, task_id, args) == (400, err("task_id", "Task not found on the Blockchain"))
    other = json.dumps(dict(SD_ARGS, prompt="seen devnet:stuck"))
    _, other_id = client.create_task(acct, other)
    assert client.upload_when_synced(acct, other_id, other)[0] == 200
    # un-blinding does not bring the skipped block back
    client.knobs(relay_blind_task_ids=[])
    assert client.upload(acct, task_id, args) == (400, err("task_id", "Task not found on the Blockchain"))
    client.knobs(relay_blind_rate=1)
    receipt, third = client.create_task(acct, json.dumps(dict(SD_ARGS, prompt="rate devnet:stuck")))
    wait_for(lambda: client.stats()["relay"]["synced_block"] >= int(receipt["blockNumber"], 16))
    assert client.upload(acct, third, json.dumps(dict(SD_ARGS, prompt="rate devnet:stuck")))[1]["data"]["message"] == "Task not found on the Blockchain"
    assert client.stats()["faults_fired"].get("relay_blind", 0) >= 1
    client.knobs(relay_blind_rate=0)


# ---------------------------------------------------------------- on the shared devnet

def test_sd_schema_default_is_68b52d2(client, funded):
    """crynux-relay@969e500 loads the schema from stable-diffusion-task's main
    branch (config/config.example.yml:29); main was @68b52d2 from 2024-06-06 to
    2024-08-13: base_model must be a string, cfg > 0."""
    acct = funded()
    assert client.admin("GET", "/admin/config")[1]["sd_schema"] == "68b52d2"
    v2 = json.dumps(SD_ARGS_V2)
    _, task_id = client.create_task(acct, v2)
    status, body = client.upload_when_synced(acct, task_id, v2)
    assert status == 400 and body["data"]["field_name"] == "task_args" and "/base_model" in body["data"]["message"]
    cfg0 = json.dumps(dict(SD_ARGS, task_config=dict(SD_ARGS["task_config"], cfg=0)))
    status, body = client.upload(acct, task_id, cfg0)
    assert status == 400 and "/task_config/cfg" in body["data"]["message"]
    client.knobs(sd_schema="union")
    assert client.upload(acct, task_id, v2)[0] == 200
    assert client.knobs(sd_schema="8fcf6e7")["sd_schema"] == "8fcf6e7"
    status, body = client.admin("POST", "/admin/config", {"sd_schema": "v3"})
    assert status == 400


def test_body_over_32_mib_is_a_binding_error(client):
    """tonic DefaultBindingHookMaxBodyBytes(32 << 20) (crynux-relay@969e500
    api/app.go:42): gin's JSON decoder fails on http.MaxBytesReader, tonic
    wraps it as a BindError without field, the relay answers 400."""
    big = json.dumps({"task_args": "x" * (32 << 20), "task_id": 1, "timestamp": 1, "signature": "0x00"}).encode()
    status, headers, body = client.relay_http.request("POST", "/v1/inference_tasks", big, {"Content-Type": "application/json"}, timeout=30)
    assert status == 400 and json.loads(body) == err("", "http: request body too large")
    assert headers.get("Connection") == "close"
    # a value that ends within the first 32 MiB is decoded (Go reads no further)
    padded = b'{"task_args":"{}","task_id":1,"timestamp":1,"signature":"0x00"}' + b" " * (32 << 20)
    status, _, body = client.relay_http.request("POST", "/v1/inference_tasks", padded, {"Content-Type": "application/json"}, timeout=30)
    assert (status, json.loads(body)) == (400, err("signature", "Invalid signature"))


def test_selection_gas_grows_with_free_nodes(client, funded):
    """Node.sol@4c2d581:367-381 reads every free node of the chosen GPU model
    (and its score) per pick: createTask gas grows with the free nodes."""
    acct = funded()
    data = client.create_task_data(1, keccak(b"gas scaling"), 8, 1)  # GPT: one model for all 3 picks
    call = {"from": acct.address, "to": client.task, "data": "0x" + data.hex(), "value": "0x1"}
    free = lambda: client.stats()["tasks"]["free_nodes"]
    many, gas_many = free(), int(client.rpc("eth_estimateGas", call), 16)
    client.knobs(nodes=12)
    few, gas_few = free(), int(client.rpc("eth_estimateGas", call), 16)
    assert many - few >= 20
    # two cold reads (address, score) per free node of the model: >= 4000 gas each
    assert gas_many - gas_few >= 4000 * (many - few) // 2 // 2


def test_ethermint_send_errors(client, funded):
    """ethermint@fd8c2d2 ante handler texts as the RPC returns them (the
    registered error's text appended once more by cosmos-sdk ABCIError)."""
    acct = funded(1)
    client.knobs(rpc_flavor="ethermint")
    raw = client.sign(acct, acct.address, value=1, gas=21000, nonce=0)
    client.receipt(client.send_raw(raw))

    def refused(raw_tx):
        with pytest.raises(RPCFailure) as e:
            client.send_raw(raw_tx)
        assert e.value.code == -32000 and e.value.data is None
        return e.value.message

    assert refused(raw) == ": tx already in mempool"  # Tendermint's cache keeps committed txs
    assert refused(client.sign(acct, acct.address, value=2, gas=21000, nonce=0)) == "invalid nonce; got 0, expected 1: invalid sequence: invalid sequence"
    assert refused(client.sign(acct, acct.address, value=2, gas=21000, nonce=3)) == "invalid nonce; got 3, expected 1: invalid sequence: invalid sequence"
    # no replacement: a pending tx's nonce is taken
    client.knobs(tx_mine_delay_ms=1500)
    pending = client.send_raw(client.sign(acct, acct.address, value=1, gas=21000, nonce=1))
    assert refused(client.sign(acct, acct.address, value=1, gas=21000, nonce=1, gas_price=4 * 10**9, tip=2 * 10**9)) == \
        "invalid nonce; got 1, expected 2: invalid sequence: invalid sequence"
    client.knobs(tx_mine_delay_ms=0)
    client.receipt(pending)
    bal = int(client.rpc("eth_getBalance", acct.address, "latest"), 16)
    cost = 21000 * 2 * 10**9 + 10**18
    assert refused(client.sign(acct, acct.address, value=10**18, gas=21000)) == \
        f"failed to check sender balance: sender balance < tx cost ({bal} < {cost}): insufficient funds: insufficient funds"
    assert refused(client.sign(acct, acct.address, value=1, gas=20000)) == \
        "failed to verify the fees: gas limit too low: 20000 (gas limit) < 21000 (intrinsic gas): out of gas: out of gas"
    base = int(client.rpc("eth_gasPrice"), 16) - 10**9  # the next block's base fee
    assert refused(client.sign(acct, acct.address, value=1, gas=21000, gas_price=1, tip=1)) == \
        f"max fee per gas less than block base fee (1 < {base}): insufficient fee: insufficient fee"


def test_ethermint_revert_shapes(client, funded):
    acct = funded()
    client.knobs(rpc_flavor="ethermint")
    call = {"from": acct.address, "to": client.task, "data": "0x" + cancel_data(10**9).hex()}
    reason = "0x08c379a0" + encode(["string"], ["Task not exist"]).hex()
    with pytest.raises(RPCFailure) as e:  # rpc/backend/call_tx.go:388-393
        client.rpc("eth_call", call, "latest")
    assert (e.value.code, e.value.message, e.value.data) == (3, "execution reverted: Task not exist", reason)
    with pytest.raises(RPCFailure) as e:  # x/evm/keeper/grpc_query.go:379-383 through the gRPC client
        client.rpc("eth_estimateGas", call)
    assert (e.value.code, e.value.message, e.value.data) == (-32000, "rpc error: code = Unknown desc = execution reverted: Task not exist", None)
    panic = {"from": acct.address, "to": client.task, "value": "0x10", "data": "0x" + client.create_task_data(0, b"\x01" * 32, 10**6, 0).hex()}
    with pytest.raises(RPCFailure) as e:  # go-ethereum 1.10 abi.UnpackRevert knows only Error(string)
        client.rpc("eth_call", panic, "latest")
    assert (e.value.code, e.value.message, e.value.data) == (3, "execution reverted", "0x4e487b71" + "00" * 31 + "12")
    client.knobs(rpc_flavor="geth")
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_estimateGas", call)
    assert (e.value.code, e.value.message, e.value.data) == (3, "execution reverted: Task not exist", reason)


def test_get_logs_limits(client, funded):
    """ethermint@fd8c2d2 rpc/namespaces/ethereum/eth/filters/filters.go:158-160, 189-192."""
    head = int(client.rpc("eth_blockNumber"), 16)
    assert head > 10
    client.knobs(logs_max_block_range=5)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_getLogs", {"fromBlock": hex(head - 6), "toBlock": "latest"})
    assert (e.value.code, e.value.message) == (-32000, "maximum [from, to] blocks distance: 5")
    assert isinstance(client.rpc("eth_getLogs", {"fromBlock": hex(head - 5), "toBlock": "latest"}), list)
    client.knobs(logs_max_block_range=0, logs_max_results=1)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_getLogs", {"fromBlock": "0x1", "address": client.task})
    assert e.value.message == "query returned more than 1 results"
