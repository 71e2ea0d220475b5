"""Task life cycles: success with results, queue, abort, stuck + cancel, deletion."""

import hashlib
import json
import struct
import time
import zlib

import pytest
from eth_abi import decode

from client import GPT_ARGS, SD_ARGS, TOPIC, RPCFailure, selector

ZERO_ADDRESS = "0x" + "00" * 20


def sd_args(**extra) -> str:
    args = json.loads(json.dumps(SD_ARGS))
    args.update(extra)
    return json.dumps(args)


def check_png(data: bytes):
    """Structural PNG check, independent of the devnet's writer: chunk CRCs,
    IHDR, and that the zlib stream holds exactly height filtered rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[y * (1 + 3 * width)] <= 4 for y in range(height))


def wait_for(predicate, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not met")


def logs_of(client, name, task_id):
    return client.rpc("eth_getLogs", {"fromBlock": "0x0", "address": client.task,
                                      "topics": ["0x" + TOPIC[name].hex(), "0x" + task_id.to_bytes(32, "big").hex()]})


def test_sd_task_success_results_and_deletion(client, funded):
    acct = funded()
    args = sd_args(prompt="success path")
    _, task_id = client.create_task(acct, args)
    status, body = client.upload_when_synced(acct, task_id, args)
    assert status == 200 and body["message"] == "success"
    assert body["data"]["task_id"] == task_id and body["data"]["status"] == 1
    assert body["data"]["creator"] == acct.address and body["data"]["task_args"] == args
    success = client.wait_outcome(task_id)
    assert success["topics"][0] == "0x" + TOPIC["TaskSuccess"].hex()
    result_node = "0x" + success["topics"][2][-40:]
    (result,) = decode(["bytes"], bytes.fromhex(success["data"][2:]))
    assert len(result) == 16  # 8 bytes per image, 2 images
    wait_for(lambda: logs_of(client, "TaskResultUploaded", task_id))
    # deleted on chain, yet the outcome is still found by topic1 = task id
    assert client.get_task(task_id)["id"] == 0
    assert client.outcome_logs(task_id)[0]["transactionHash"] == success["transactionHash"]
    assert result_node != ZERO_ADDRESS
    status, files = client.admin("GET", f"/admin/results/{task_id}")
    assert status == 200 and len(files["files"]) == 2
    for f in files["files"]:
        status, headers, data = client.result(acct, task_id, f["index"])
        assert status == 200, data
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"] == f"attachment; filename={f['index']}.png"
        check_png(data)
        assert len(data) == f["size"] > 1000
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    assert files["files"][0]["sha256"] != files["files"][1]["sha256"]
    status, _, data = client.result(acct, task_id, 2)
    assert status == 400 and json.loads(data)["data"] == {"field_name": "image_num", "message": "File not found"}


def test_gpt_result_shape(client, funded):
    acct = funded()
    args = json.dumps(GPT_ARGS)
    _, task_id = client.create_task(acct, args, task_type=1, cap=1)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    wait_for(lambda: logs_of(client, "TaskResultUploaded", task_id))
    status, headers, data = client.result(acct, task_id, 0)
    assert status == 200 and headers["Content-Disposition"] == "attachment; filename=0.json"
    doc = json.loads(data)
    assert json.dumps(doc).encode() == data  # Python json.dump default separators
    assert list(doc) == ["model", "choices", "usage"] and doc["model"] == "gpt2"
    choice = doc["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert set(doc["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    (result,) = decode(["bytes"], bytes.fromhex(client.outcome_logs(task_id)[0]["data"][2:]))
    assert result == hashlib.sha256(data).digest()


def test_queue_when_no_free_node_then_start(client, funded):
    acct = funded()
    client.knobs(nodes=0)
    args = sd_args(prompt="queued")
    receipt, task_id = client.create_task(acct, args, fee=6 * 10**16)
    assert [lg["topics"][0] for lg in receipt["logs"]] == ["0x" + TOPIC["TaskPending"].hex()]
    assert client.get_task(task_id)["id"] == 0 and client.queued(task_id)
    # the relay knows it (TaskPending) and accepts the args while it is queued
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    client.admin("POST", "/admin/config/reset")  # nodes back (and free ones among them)
    started = wait_for(lambda: client.rpc("eth_getLogs", {"fromBlock": receipt["blockNumber"], "address": client.task,
                                                           "topics": ["0x" + TOPIC["TaskStarted"].hex()]}))
    mine = [lg for lg in started if int(lg["data"][2:66], 16) == task_id]
    assert len(mine) == 3
    assert not client.queued(task_id) and client.get_task(task_id)["id"] == task_id
    client.wait_outcome(task_id)  # and it runs to the end


def test_queued_cancel_refunds_and_cap0_panics(client, funded):
    acct, stranger = funded(), funded()
    client.knobs(nodes=0)
    _, task_id = client.create_task(acct, sd_args(prompt="cancel me"), fee=10**17)
    before = int(client.rpc("eth_getBalance", acct.address, "latest"), 16)
    # queued tasks: no caller check, full refund
    receipt = client.transact(stranger, client.task, selector("cancelTask(uint256)") + task_id.to_bytes(32, "big"))
    assert receipt["status"] == "0x1"
    (reason,) = decode(["string"], bytes.fromhex(receipt["logs"][0]["data"][2:]))
    assert reason == "Task Cancelled" and not client.queued(task_id)
    assert int(client.rpc("eth_getBalance", acct.address, "latest"), 16) == before + 10**17
    # cap 0 on the queue path: Solidity's division by zero
    data = client.create_task_data(0, b"\x01" * 32, 8, 0)
    with pytest.raises(RPCFailure) as e:
        client.rpc("eth_call", {"from": acct.address, "to": client.task, "data": "0x" + data.hex(), "value": "0x10"}, "latest")
    assert e.value.code == 3 and e.value.message == "execution reverted: division or modulo by zero"
    assert e.value.data == "0x4e487b71" + "00" * 31 + "12"


def test_full_queue_evicts_cheapest(client, funded):
    acct = funded()
    client.knobs(nodes=0, queue_size_limit=2)
    _, a = client.create_task(acct, sd_args(prompt="a"), fee=3 * 10**16, cap=1)
    _, b = client.create_task(acct, sd_args(prompt="b"), fee=1 * 10**16, cap=1)
    receipt, c = client.create_task(acct, sd_args(prompt="c"), fee=2 * 10**16, cap=1)
    aborted, pending = receipt["logs"]
    assert aborted["topics"] == ["0x" + TOPIC["TaskAborted"].hex(), "0x" + b.to_bytes(32, "big").hex()]
    assert decode(["string"], bytes.fromhex(aborted["data"][2:])) == ("Task fee is too low",)
    assert client.task_id_from(receipt) == c
    assert client.queued(a) and client.queued(c) and not client.queued(b)


def test_vram_limit_above_nodes_stays_queued(client, funded):
    acct = funded()
    _, task_id = client.create_task(acct, sd_args(prompt="big"), vram=40)
    assert client.queued(task_id)
    client.knobs(node_vram_gb=48)
    wait_for(lambda: client.get_task(task_id)["id"] == task_id)


def receipt_logs(client, log):
    return client.rpc("eth_getTransactionReceipt", log["transactionHash"])["logs"]


def node_fees(logs):
    """[(node, fee)] of the TaskNodeSuccess logs, in order."""
    out = []
    for lg in logs:
        if lg["topics"][0] == "0x" + TOPIC["TaskNodeSuccess"].hex():
            node, fee = decode(["address", "uint256"], bytes.fromhex(lg["data"][2:]))
            out.append((node.lower(), fee))
    return out


def balance(client, address):
    return int(client.rpc("eth_getBalance", address, "latest"), 16)


def test_error_reported_pays_the_nodes(client, funded):
    """Task.sol@4c2d581:505-508 + 559-572 + 619-635: the nodes that report the
    error are paid by their QoS task score (20/50, 18/50, then the rest); only
    slashed nodes' shares would go back to the creator, so nothing does."""
    acct = funded()
    fee = 10**17 + 7  # odd, so the rounding remainder shows
    args = sd_args(prompt="please devnet:abort")
    _, task_id = client.create_task(acct, args, fee=fee)
    before = balance(client, acct.address)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    outcome = client.wait_outcome(task_id)
    assert outcome["topics"][0] == "0x" + TOPIC["TaskAborted"].hex()
    assert decode(["string"], bytes.fromhex(outcome["data"][2:])) == ("Task error reported",)
    logs = receipt_logs(client, outcome)
    names = [lg["topics"][0] for lg in logs]
    assert names == ["0x" + TOPIC[n].hex() for n in ("TaskNodeSuccess", "TaskNodeSuccess", "TaskAborted")]
    (second, fee2), (first, fee1) = node_fees(logs)
    assert fee2 == fee * 18 // 50 and fee1 == fee * 20 // 50
    info = client.get_task(task_id)
    if info["id"]:  # until the third node has reported too
        assert info["aborted"] and info["isSuccess"] and info["balance"] == fee - fee1 - fee2
        assert info["commitments"][[n.lower() for n in info["selectedNodes"]].index(first)] == (1).to_bytes(32, "big")
    third = wait_for(lambda: logs_of_node_success(client, task_id, exclude={first, second}))
    assert third[1] == fee - fee1 - fee2  # 12/50 plus the rounding
    assert wait_for(lambda: client.get_task(task_id)["id"] == 0)
    assert balance(client, acct.address) == before  # no refund at all
    assert balance(client, first) >= fee1 and balance(client, second) >= fee2


def logs_of_node_success(client, task_id, exclude):
    logs = client.rpc("eth_getLogs", {"fromBlock": "0x1", "address": client.task,
                                      "topics": ["0x" + TOPIC["TaskNodeSuccess"].hex(), "0x" + task_id.to_bytes(32, "big").hex()]})
    paid = [p for p in node_fees(logs) if p[0] not in exclude]
    return paid[0] if paid else None


def test_result_illegal_refunds_everything_and_deletes(client, funded):
    """Task.sol@4c2d581:531-534 + 577-596: three different results abort the
    task: fee back to the creator, TaskNodeCancelled x3, TaskAborted, deleted
    in the same transaction."""
    acct = funded()
    args = sd_args(prompt="please devnet:illegal")
    _, task_id = client.create_task(acct, args, fee=10**17)
    before = balance(client, acct.address)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    outcome = client.wait_outcome(task_id)
    assert decode(["string"], bytes.fromhex(outcome["data"][2:])) == ("Task result illegal",)
    names = [lg["topics"][0] for lg in receipt_logs(client, outcome)]
    assert names == ["0x" + TOPIC[n].hex() for n in ("TaskResultCommitmentsReady",) + ("TaskNodeCancelled",) * 3 + ("TaskAborted",)]
    assert client.get_task(task_id)["id"] == 0
    assert balance(client, acct.address) == before + 10**17


def test_success_pays_by_task_score(client, funded):
    """Task.sol@4c2d581:505-515 + 384-397: second discloser 18/50 and third
    12/50 of the fee, the result node the rest (20/50) when it reports the upload."""
    acct = funded()
    fee = 10**17
    args = sd_args(prompt="pay me")
    _, task_id = client.create_task(acct, args, fee=fee)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    success = client.wait_outcome(task_id)
    result_node = "0x" + success["topics"][2][-40:]
    paid = node_fees(receipt_logs(client, success))
    assert [f for _, f in paid] == [fee * 18 // 50, fee * 12 // 50] and result_node not in [n for n, _ in paid]
    uploaded = wait_for(lambda: logs_of(client, "TaskResultUploaded", task_id))
    assert node_fees(receipt_logs(client, uploaded[0])) == [(result_node, fee - fee * 18 // 50 - fee * 12 // 50)]


def test_stuck_task_cancelled_by_creator_after_deadline(client, funded):
    acct = funded()
    client.knobs(task_timeout_s=2, watchdog_delay_ms=-1)
    args = sd_args(prompt="devnet:stuck")
    receipt, task_id = client.create_task(acct, args, fee=10**17)
    block = client.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
    assert client.get_task(task_id)["timeout"] == int(block["timestamp"], 16) + 2
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    cancel = selector("cancelTask(uint256)") + task_id.to_bytes(32, "big")
    with pytest.raises(RPCFailure) as e:
        client.call(client.task, cancel, sender=acct.address)
    assert e.value.message.endswith("Task has not exceeded the deadline yet")
    time.sleep(3.2)
    assert client.outcome_logs(task_id) == []  # the nodes never finished it
    receipt = client.transact(acct, client.task, cancel)
    names = {lg["topics"][0] for lg in receipt["logs"]}
    assert names == {"0x" + TOPIC["TaskAborted"].hex(), "0x" + TOPIC["TaskNodeCancelled"].hex()}
    assert decode(["string"], bytes.fromhex(receipt["logs"][0]["data"][2:])) == ("Task Cancelled",)
    assert client.get_task(task_id)["id"] == 0


def test_watchdog_cancels_after_deadline(client, funded):
    acct = funded()
    client.knobs(task_timeout_s=1, watchdog_delay_ms=0)
    args = sd_args(prompt="devnet:stuck again")
    _, task_id = client.create_task(acct, args)
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    outcome = client.wait_outcome(task_id, timeout=8)
    assert decode(["string"], bytes.fromhex(outcome["data"][2:])) == ("Task Cancelled",)


def test_slow_marker_takes_longer(client, funded):
    acct = funded()
    fast, slow = sd_args(prompt="fast one"), sd_args(prompt="devnet:slow one")
    _, fast_id = client.create_task(acct, fast)
    _, slow_id = client.create_task(acct, slow)
    client.upload_when_synced(acct, fast_id, fast)
    client.upload_when_synced(acct, slow_id, slow)
    client.wait_outcome(fast_id)
    assert client.outcome_logs(slow_id) == []
    client.wait_outcome(slow_id)
