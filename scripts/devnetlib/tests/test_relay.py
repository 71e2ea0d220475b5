"""The relay: validation order, status codes, error bodies, signature rules."""

import json
import time
from urllib.parse import urlencode

import pytest

from client import SD_ARGS

pytestmark = pytest.mark.usefixtures("client")


def err(field, message):
    return {"message": "validation_error", "data": {"field_name": field, "message": message}}


@pytest.fixture
def task(client, funded):
    """A created task whose args the relay has synced (not uploaded yet)."""
    acct = funded()
    args = json.dumps(dict(SD_ARGS, prompt=f"relay test {time.time()}"))
    _, task_id = client.create_task(acct, args)
    deadline = time.time() + 5
    while client.upload(acct, task_id, "{}")[1]["data"]["message"] == "Task not found on the Blockchain":
        assert time.time() < deadline
        time.sleep(0.05)
    return acct, task_id, args


def test_now_and_unknown_routes(client):
    status, _, body = client.relay_http.request("GET", "/v1/now")
    now = json.loads(body)
    assert status == 200 and now["message"] == "success" and abs(now["data"]["now"] - time.time()) < 5
    for method, path in (("GET", "/v1/nope"), ("GET", "/v1/inference_tasks"), ("DELETE", "/v1/now"), ("POST", "/v1/inference_tasks/1/results")):
        status, headers, body = client.relay_http.request(method, path, b"" if method != "GET" else None)
        assert status == 404 and body == b"404 page not found"


def test_binding_errors(client):
    def post(obj):
        status, _, body = client.relay_http.request("POST", "/v1/inference_tasks", json.dumps(obj).encode(), {"Content-Type": "application/json"})
        return status, json.loads(body)

    assert post({}) == (400, err("task_args", "required"))
    assert post({"task_args": "{}"}) == (400, err("task_id", "required"))
    assert post({"task_args": "{}", "task_id": 1}) == (400, err("timestamp", "required"))
    assert post({"task_args": "{}", "task_id": 1, "timestamp": 1}) == (400, err("signature", "required"))
    status, body = post({"task_args": "{}", "task_id": "1", "timestamp": 1, "signature": "0x"})
    assert status == 400 and body["data"]["field_name"] == "" and "cannot unmarshal string" in body["data"]["message"]
    # Go matches JSON keys case-insensitively
    status, body = post({"TASK_ARGS": "{}", "Task_Id": 1, "timestamp": 1, "signature": "0x00"})
    assert (status, body) == (400, err("signature", "Invalid signature"))


def test_upload_refusals(client, funded, task):
    acct, task_id, args = task
    stranger = funded()
    # wrong signer is only reported after schema validation, like the Go relay
    assert client.upload(stranger, task_id, args) == (400, err("signature", "Signer not allowed"))
    assert client.upload(acct, task_id, args, timestamp=int(time.time()) - 120) == (400, err("signature", "Invalid signature"))
    assert client.upload(acct, task_id, args, timestamp=int(time.time()) + 120) == (400, err("signature", "Invalid signature"))
    assert client.upload(acct, task_id, args, v_offset=27) == (400, err("signature", "Invalid signature"))
    assert client.upload(acct, task_id, args, high_s=True) == (400, err("signature", "Invalid signature"))
    status, body = client.upload(acct, task_id, json.dumps({"prompt": "no base model"}))
    assert status == 400 and body["data"]["field_name"] == "task_args" and "base_model" in body["data"]["message"]
    status, body = client.upload(acct, task_id, json.dumps(dict(SD_ARGS, task_config={"num_images": 11})))
    assert status == 400 and body["data"]["field_name"] == "task_args"
    status, body = client.upload(acct, task_id, "{not json")
    assert status == 500
    assert client.upload(acct, task_id, json.dumps(dict(SD_ARGS, prompt="other"))) == (400, err("task_hash", "Task hash mismatch"))
    assert client.upload(acct, 10**12, args) == (400, err("task_id", "Task not found on the Blockchain"))
    status, body = client.upload(acct, task_id, args)
    assert status == 200
    assert client.upload(acct, task_id, args) == (400, err("task_id", "Task already uploaded"))


def test_signature_rules_edge_cases(client, task):
    acct, task_id, args = task
    ts = int(time.time())
    payload = ('{"task_args":' + client.go_quote(args) + ',"task_id":' + str(task_id) + "}").encode()
    good = client.relay_sign(acct, payload, ts)

    def post(sig):
        body = json.dumps({"task_args": args, "task_id": task_id, "timestamp": ts, "signature": sig}).encode()
        status, _, data = client.relay_http.request("POST", "/v1/inference_tasks", body, {"Content-Type": "application/json"})
        return status, (json.loads(data) if data else None)

    assert post("x") == (500, None)  # Go slices signature[2:] and panics
    assert post(good[2:]) == (400, err("signature", "Invalid signature"))  # no 0x: one byte short
    assert post(good[:-2]) == (400, err("signature", "Invalid signature"))  # 64 bytes
    assert post(good + "00") == (400, err("signature", "Invalid signature"))  # 66 bytes
    assert post("0X" + good[2:].upper())[0] == 200  # any 2-char prefix, hex in any case


def test_html_escaped_args_are_signed_as_go_marshals_them(client, funded):
    acct = funded()
    args = json.dumps(dict(SD_ARGS, prompt="a <b> & c / d é \u2028 end"), ensure_ascii=False)
    _, task_id = client.create_task(acct, args)
    status, body = client.upload_when_synced(acct, task_id, args)
    assert status == 200, body
    assert body["data"]["task_args"] == args


def test_not_found_on_blockchain_during_sync_lag(client, funded):
    acct = funded()
    client.knobs(relay_sync_lag_ms=1500)
    args = json.dumps(dict(SD_ARGS, prompt="lag"))
    receipt, task_id = client.create_task(acct, args)
    assert receipt["status"] == "0x1"
    assert client.upload(acct, task_id, args) == (400, err("task_id", "Task not found on the Blockchain"))
    started = time.time()
    assert client.upload_when_synced(acct, task_id, args)[0] == 200
    assert time.time() - started > 1.0


def test_task_query_and_results_before_upload(client, funded, task):
    acct, task_id, args = task
    stranger = funded()

    def get_task(account, ts=None):
        ts = ts or int(time.time())
        q = urlencode({"timestamp": ts, "signature": client.relay_sign(account, ('{"task_id":%d}' % task_id).encode(), ts)})
        status, _, data = client.relay_http.request("GET", f"/v1/inference_tasks/{task_id}?{q}")
        return status, json.loads(data)

    assert get_task(acct) == (400, err("task_id", "Task not ready"))
    status, _, data = client.result(acct, task_id, 0)
    assert (status, json.loads(data)) == (400, err("task_id", "Task results not uploaded"))
    status, _, data = client.result(stranger, task_id, 0)
    assert (status, json.loads(data)) == (400, err("signature", "Signer not allowed"))
    status, _, data = client.result(acct, 10**12, 0)
    assert (status, json.loads(data)) == (400, err("task_id", "Task not found"))
    status, _, data = client.relay_http.request("GET", f"/v1/inference_tasks/{task_id}/results/0")
    assert (status, json.loads(data)) == (400, err("Timestamp", "required"))
    assert client.upload(acct, task_id, args)[0] == 200
    status, body = get_task(acct)
    assert status == 200 and body["data"]["task_id"] == task_id and len(body["data"]["SelectedNodes"]) == 3
    assert body["data"]["status"] in (1, 3, 4)
    assert get_task(stranger) == (400, err("signature", "Signer not allowed"))
