"""The Lithium Relay (--profile lithium) from the outside: every route an
application uses, each status and deadline with its ledger effect, VRF
validation single and in groups, Relay Accounts and deposits, fault knobs.

Requests are built here (eth-keys, http.client, a Go-JSON encoder of its own);
only the VRF prover comes from devnetlib (vrf.py, itself checked against
go-ecvrf's vectors in test_vrf.py)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from client import HTTP, DevnetProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from devnetlib import vrf  # noqa: E402  (the prover only)

CNX = 10**18
SD_ARGS = {"version": "2.0.0", "base_model": {"name": "crynux-ai/sdxl-turbo"}, "prompt": "a red fox in the snow",
           "negative_prompt": "", "task_config": {"num_images": 2, "seed": 42, "steps": 1, "cfg": 0}}
GPT_ARGS = {"model": "Qwen/Qwen2.5-7B", "messages": [{"role": "user", "content": "hello devnet"}],
            "generation_config": {"max_new_tokens": 30}}
(QUEUED, STARTED, _, ERROR_REPORTED, SCORE_READY, VALIDATED, GROUP_VALIDATED, END_INVALIDATED, END_SUCCESS,
 END_ABORTED, END_GROUP_REFUND, END_GROUP_SUCCESS) = range(12)


def go_json(value) -> bytes:
    """Go's json.Marshal of a decoded value: sorted keys, compact, <>& and U+2028/9 escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode()


def sign(key: bytes, value: dict, timestamp: int | None = None) -> tuple[int, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = keccak(go_json(value) + str(timestamp).encode())
    return timestamp, "0x" + keys.PrivateKey(key).sign_msg_hash(digest).to_bytes().hex()


class Lithium:
    def __init__(self, info: dict):
        self.info = info
        self.relay = HTTP(info["relay_url"])
        self.admin_http = HTTP(info["admin_url"])
        self.rpc_http = HTTP(info["rpc_url"])

    def admin(self, method, path, body=None):
        status, _, data = self.admin_http.request(method, path, json.dumps(body).encode() if body is not None else None,
                                                  {"Content-Type": "application/json"})
        return status, json.loads(data) if data else None

    def free_nodes(self, n: int):
        """n idle nodes besides the busy ones (tasks of earlier tests may still hold some)."""
        self.knobs(nodes=0)
        busy = self.admin("GET", "/admin/stats")[1]["relay"]["busy_nodes"]
        self.knobs(nodes=busy + n)

    def knobs(self, **values):
        status, body = self.admin("POST", "/admin/config", values)
        assert status == 200, body
        return body

    def get(self, path: str, **query):
        status, headers, data = self.relay.request("GET", path + ("?" + urlencode(query) if query else ""))
        return status, headers, data

    def json_get(self, path, **query):
        status, _, data = self.get(path, **query)
        return status, json.loads(data) if data else None

    def post_json(self, path, body: dict):
        status, _, data = self.relay.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        return status, json.loads(data) if data else None


@pytest.fixture(scope="module")
def net():
    # unvalidated tasks hold their node until the validation deadline: 5 s here. A tiny
    # vrf_select_share: the creators' seeds are chosen unselected, so a test that validates one
    # task alone does not fail when the VRF picks it (1 % of random seeds).
    flags = ("--profile", "lithium", "--task-duration-ms", "150", "--results-upload-delay-ms", "50", "--app-validation-timeout-s", "5",
             "--nodes", "20", "--seed", "11", "--vrf-select-share", "1e-9", *os.environ.get("DEVNET_TEST_FLAGS", "").split())
    proc = DevnetProcess(*flags)
    yield Lithium(proc.info)
    proc.stop()


@pytest.fixture
def li(net):
    yield net
    net.admin("POST", "/admin/config/reset")
    net.admin("POST", "/admin/lithium/whitelist", {"addresses": None})
    net.admin("POST", "/admin/lithium/fault_creators", {"addresses": None})


@pytest.fixture
def creator(li):
    """A fresh account with a funded Relay Account (100 CNX), its key known to the devnet."""
    def make(balance: int = 100 * CNX):
        account = Account.create()
        assert li.admin("POST", f"/admin/lithium/accounts/{account.address}", {"balance": str(balance)})[0] == 200
        assert li.admin("POST", "/admin/lithium/creator_keys", {"private_keys": [account.key.hex()]})[0] == 200
        return account
    return make


class Task:
    """One task as an application holds it: its secrets and the request it sent."""

    def __init__(self, account, args=None, task_type=0, fee=CNX, task_id: bytes | None = None, **fields):
        self.account = account
        self.key = bytes(account.key)
        self.task_id = task_id or secrets.token_bytes(32)
        self.nonce = secrets.token_bytes(32)
        self.commitment = "0x" + keccak(self.task_id + self.nonce).hex()
        args = SD_ARGS if args is None and task_type == 0 else GPT_ARGS if args is None else args
        self.form = {
            "task_args": args if isinstance(args, str) else json.dumps(args), "task_type": task_type,
            "nonce": "0x" + self.nonce.hex(), "task_model_ids": ["base:crynux-ai/sdxl-turbo"],
            "min_vram": 8, "required_gpu": "", "required_gpu_vram": 0, "task_version": "3.1.0",
            "task_size": 1, "task_fee": str(fee),
        }
        self.form.update(fields)

    def signed_form(self, timestamp=None, key=None, drop=()) -> dict:
        value = dict(self.form, task_id_commitment=self.commitment)
        for name in drop:
            value[name] = None
        value = {k: v for k, v in value.items() if not (k == "timeout" and not v)}
        return dict(zip(("timestamp", "signature"), sign(key or self.key, value, timestamp)))

    def create_body(self, timestamp=None, key=None, drop=(), form=None) -> bytes:
        form = dict(self.form if form is None else form, **self.signed_form(timestamp, key, drop))
        pairs = [(k, v) for k, v in form.items() if k not in drop and k != "task_model_ids"]
        pairs += [("task_model_ids", m) for m in form["task_model_ids"]] if "task_model_ids" not in drop else []
        return urlencode(pairs).encode()

    def create(self, li: Lithium, timestamp=None, key=None, drop=(), form=None):
        status, _, data = li.relay.request("POST", f"/v1/inference_tasks/{self.commitment}", self.create_body(timestamp, key, drop, form),
                                           {"Content-Type": "application/x-www-form-urlencoded"})
        return status, json.loads(data) if data else None

    def get(self, li: Lithium, key=None):
        ts, sig = sign(key or self.key, {"task_id_commitment": self.commitment})
        return li.json_get(f"/v1/inference_tasks/{self.commitment}", timestamp=ts, signature=sig)

    def status(self, li: Lithium) -> dict:
        status, body = self.get(li)
        assert status == 200, body
        return body["data"]

    def wait(self, li: Lithium, *statuses, timeout=20) -> dict:
        deadline = time.time() + timeout
        while True:
            data = self.status(li)
            if data["status"] in statuses:
                return data
            assert time.time() < deadline, f"task still in status {data['status']}, waiting for {statuses}"
            time.sleep(0.03)

    def proof(self, seed_hex: str) -> tuple[bytes, bytes]:
        beta, pi = vrf.prove(self.key, bytes.fromhex(seed_hex[2:]))
        return beta, pi

    def validate(self, li: Lithium, commitments=None, proof: bytes | None = None, task_id: bytes | None = None, key=None):
        seed = self.status(li)["sampling_seed"]
        body = {"task_id_commitments": commitments or [self.commitment], "task_id": "0x" + (task_id or self.task_id).hex(),
                "vrf_proof": "0x" + (proof if proof is not None else self.proof(seed)[1]).hex(),
                "public_key": "0x" + keys.PrivateKey(key or self.key).public_key.to_bytes().hex()}
        ts, sig = sign(key or self.key, body)
        return li.post_json("/v1/inference_tasks/validate", dict(body, timestamp=ts, signature=sig))

    def abort(self, li: Lithium, reason=7):
        value = {"task_id_commitment": self.commitment, "abort_reason": reason}
        ts, sig = sign(self.key, value)
        return li.post_json(f"/v1/inference_tasks/{self.commitment}/abort_reason",
                            {"abort_reason": reason, "timestamp": ts, "signature": sig})

    def result(self, li: Lithium, index: int):
        ts, sig = sign(self.key, {"index": str(index), "task_id_commitment": self.commitment})
        return li.get(f"/v1/inference_tasks/{self.commitment}/results/{index}", timestamp=ts, signature=sig)


def balance(li: Lithium, account) -> int:
    return int(li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["balance"])


def ledger(li: Lithium, account) -> list:
    return li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["events"]


def selected(task: Task, li: Lithium) -> bool:
    return vrf.selects(task.proof(task.status(li)["sampling_seed"])[0])


# ---------------------------------------------------------------- routes


def test_now(li):
    status, body = li.json_get("/v1/now")
    assert status == 200 and body["message"] == "success" and abs(body["data"]["now"] - time.time()) < 5


def test_unknown_route_is_gins_plain_404(li):
    status, headers, data = li.get("/v1/inference_tasks")
    assert (status, data) == (404, b"404 page not found")


def test_sd_task_from_create_to_results(li, creator):
    account = creator()
    task = Task(account)
    status, body = task.create(li)
    assert status == 200, body
    data = body["data"]
    assert data["status"] == QUEUED and data["creator"] == account.address and data["task_fee"] == str(CNX)
    assert data["task_id_commitment"] == task.commitment and data["sampling_seed"].startswith("0x") and len(data["sampling_seed"]) == 66
    assert list(data)[:3] == ["sequence", "task_args", "task_id_commitment"] and "start_time" not in data
    assert balance(li, account) == 99 * CNX
    started = task.wait(li, SCORE_READY)
    assert started["selected_node"].startswith("0x") and started["timeout"] >= 60 and started["score"].startswith("0x")
    assert len(bytes.fromhex(started["score"][2:])) == 16  # 8 bytes per image, 2 images
    assert not selected(task, li)
    assert task.validate(li) == (200, {"message": "success"})
    done = task.wait(li, END_SUCCESS)
    assert done["status"] == END_SUCCESS and "result_uploaded_time" in done and "validated_time" in done
    files = li.admin("GET", f"/admin/lithium/tasks/{task.commitment}")[1]["files"]
    assert len(files) == 2
    for f in files:
        status, headers, png = task.result(li, f["index"])
        assert status == 200 and png.startswith(b"\x89PNG") and headers["Content-Type"] == "application/octet-stream"
        assert hashlib.sha256(png).hexdigest() == f["sha256"]
    status, _, body = task.result(li, 2)
    assert status == 400 and json.loads(body)["data"] == {"field_name": "index", "message": "File not found"}
    # the node was paid the fee; the creator paid it once
    assert [e["type"] for e in ledger(li, account)] == [4]
    node = li.admin("GET", f"/admin/lithium/accounts/{done['selected_node']}")[1]
    assert any(e["type"] == 0 and e["reason"].startswith(f"0-{task.commitment}") and e["amount"] == str(CNX) for e in node["events"])


def test_gpt_task_succeeds_with_a_json_result(li, creator):
    task = Task(creator(), task_type=1, fee=2 * CNX, task_model_ids=["base:Qwen/Qwen2.5-7B"], min_vram=24)
    assert task.create(li)[0] == 200
    task.wait(li, SCORE_READY)
    assert task.validate(li)[0] == 200
    task.wait(li, END_SUCCESS)
    status, headers, body = task.result(li, 0)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["role"] == "assistant"
    assert "filename=0.json" in headers["Content-Disposition"]


def test_results_before_success_are_not_uploaded(li, creator):
    li.knobs(nodes=0)
    task = Task(creator())
    assert task.create(li)[0] == 200
    status, _, body = task.result(li, 0)
    assert status == 400 and json.loads(body)["data"] == {"field_name": "task_id", "message": "Task results not uploaded"}


# ---------------------------------------------------------------- create's checks, in create_task.go's order


def validation_error(response) -> tuple:
    status, body = response
    assert status == 400 and body["message"] == "validation_error", response
    return body["data"]["field_name"], body["data"]["message"]


def test_create_binding_requires_fields_in_struct_order(li, creator):
    task = Task(creator())
    assert validation_error(task.create(li, drop=("nonce", "task_version"))) == ("nonce", "required")
    assert validation_error(task.create(li, drop=("task_model_ids",))) == ("task_model_ids", "required")
    assert validation_error(task.create(li, form=dict(task.form, task_type="x"))) == (
        "task_type", 'strconv.ParseUint: parsing "x": invalid syntax')


def test_create_signature_window_and_signer(li, creator):
    task = Task(creator())
    assert validation_error(task.create(li, timestamp=int(time.time()) - 90)) == ("signature", "Invalid signature")
    # a signature over other fields recovers another address: the task would be someone else's
    other = Account.create()
    status, body = task.create(li, key=bytes(other.key))
    assert validation_error((status, body)) == ("task_fee", "Insufficient relay account balance")
    assert task.create(li)[0] == 200  # the creator is whoever signed


def test_create_whitelist_says_signer_not_allowed(li, creator):
    account = creator()
    li.admin("POST", "/admin/lithium/whitelist", {"addresses": [Account.create().address]})
    assert validation_error(Task(account).create(li)) == ("address", "Signer not allowed")
    li.admin("POST", "/admin/lithium/whitelist", {"addresses": [account.address]})
    assert Task(account).create(li)[0] == 200


def test_create_schema_errors_name_task_args(li, creator):
    task = Task(creator(), args={"prompt": "no base model", "task_config": {}})
    field, message = validation_error(task.create(li))
    assert field == "task_args" and message.startswith("jsonschema: ") and "stable-diffusion-task/main" in message
    gpt = Task(creator(), task_type=1, args={"messages": []})
    field, message = validation_error(gpt.create(li))
    assert field == "task_args" and "gpt-task/refs/tags/v3.1.0" in message
    status, body = Task(creator(), args="{not json").create(li)
    assert status == 500 and "task_args" in body["message"]


def test_create_task_version_and_duplicate_commitment(li, creator):
    account = creator()
    assert validation_error(Task(account, task_version="3.1").create(li)) == ("task_version", "Invalid task version")
    assert validation_error(Task(account, task_version="3.x.0").create(li)) == ("task_version", "Invalid task version")
    task = Task(account)
    assert task.create(li)[0] == 200
    before = balance(li, account)
    assert validation_error(task.create(li)) == ("task_id_commitment", "Task already uploaded")
    assert balance(li, account) == before  # the second send paid nothing


def test_create_without_a_pointer_field_panics_into_a_bare_500(li, creator):
    status, body = Task(creator()).create(li, drop=("min_vram",))
    assert (status, body) == (500, None)


def test_create_short_of_funds(li, creator):
    account = creator(balance=CNX // 2)
    assert validation_error(Task(account).create(li)) == ("task_fee", "Insufficient relay account balance")
    assert balance(li, account) == CNX // 2 and ledger(li, account) == []


# ---------------------------------------------------------------- get, selected node


def test_get_task_not_found_and_signer_not_allowed(li, creator):
    task = Task(creator())
    assert validation_error(task.get(li)) == ("task_id_commitment", "Task not found")
    assert task.create(li)[0] == 200
    assert validation_error(task.get(li, key=bytes(Account.create().key))) == ("signature", "Signer not allowed")


def test_selected_node_before_and_after_start(li, creator):
    li.knobs(nodes=0)
    task = Task(creator())
    assert task.create(li)[0] == 200
    ts, sig = sign(task.key, {"task_id_commitment": task.commitment})
    path = f"/v1/inference_tasks/{task.commitment}/selected_node"
    assert validation_error(li.json_get(path, timestamp=ts, signature=sig)) == ("task_id_commitment", "Task not started")
    assert validation_error(li.json_get(path)) == ("Timestamp", "required")
    li.free_nodes(4)
    node = task.wait(li, STARTED, SCORE_READY)["selected_node"]
    status, body = li.json_get(path, timestamp=ts, signature=sig)
    assert status == 200 and body["Data"]["address"] == node and body["Data"]["version"] == "3.5.0"
    assert body["Data"]["gpu_vram"] == 24 and body["Data"]["gpu_name"]


def test_required_gpu_pins_a_task_to_a_gpu(li, creator):
    li.knobs(node_gpu_kinds=2)
    li.free_nodes(2)
    first = Task(creator(), task_type=1, min_vram=24)
    assert first.create(li)[0] == 200
    info = first.wait(li, STARTED, SCORE_READY)
    ts, sig = sign(first.key, {"task_id_commitment": first.commitment})
    gpu = li.json_get(f"/v1/inference_tasks/{first.commitment}/selected_node", timestamp=ts, signature=sig)[1]["Data"]
    pinned = Task(first.account, task_type=1, task_id=first.task_id, min_vram=24, required_gpu=gpu["gpu_name"],
                  required_gpu_vram=gpu["gpu_vram"])
    assert pinned.create(li)[0] == 200
    ts2, sig2 = sign(first.key, {"task_id_commitment": pinned.commitment})
    pinned.wait(li, STARTED, SCORE_READY)
    other = li.json_get(f"/v1/inference_tasks/{pinned.commitment}/selected_node", timestamp=ts2, signature=sig2)[1]["Data"]
    assert other["gpu_name"] == gpu["gpu_name"] and info["selected_node"]
    nowhere = Task(first.account, task_type=1, required_gpu="NVIDIA B200", required_gpu_vram=192)
    assert nowhere.create(li)[0] == 200
    time.sleep(0.5)  # no node of that GPU exists: it stays queued
    assert nowhere.status(li)["status"] == QUEUED


def test_queue_is_ordered_by_fee_per_estimated_work(li, creator):
    li.knobs(nodes=0)
    account = creator(1000 * CNX)
    cheap = Task(account, fee=CNX)
    dear = Task(account, fee=5 * CNX)
    heavy = Task(account, fee=5 * CNX, args=dict(SD_ARGS, task_config=dict(SD_ARGS["task_config"], steps=40, num_images=4)))
    for t in (cheap, heavy, dear):
        assert t.create(li)[0] == 200
    prio = {t: int(li.admin("GET", f"/admin/lithium/tasks/{t.commitment}")[1]["priority"]) for t in (cheap, dear, heavy)}
    assert prio[dear] > prio[cheap] and prio[dear] > prio[heavy]
    li.free_nodes(1)
    dear.wait(li, STARTED, SCORE_READY)
    assert cheap.status(li)["status"] == QUEUED and heavy.status(li)["status"] == QUEUED


# ---------------------------------------------------------------- abort, deadlines and their money


def test_creator_cancel_only_while_queued(li, creator):
    li.knobs(nodes=0)
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    assert validation_error(task.abort(li, reason=1)) == ("abort_reason", "Abort reason not allowed")
    assert validation_error(task.abort(li, reason=0)) == ("abort_reason", "required")
    assert task.abort(li) == (200, {"message": "success"})
    data = task.status(li)
    assert (data["status"], data["abort_reason"]) == (END_ABORTED, 7)
    assert balance(li, account) == 100 * CNX and [e["type"] for e in ledger(li, account)] == [4, 5]
    li.free_nodes(4)
    started = Task(account)
    assert started.create(li)[0] == 200
    started.wait(li, STARTED, SCORE_READY)
    assert validation_error(started.abort(li)) == ("task_id_commitment", "Task can no longer be cancelled")


def test_queue_timeout_refunds(li, creator):
    li.knobs(nodes=0, queue_timeout_s=0.5)
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    data = task.wait(li, END_ABORTED, timeout=5)
    assert data["abort_reason"] == 1 and balance(li, account) == 100 * CNX


def test_execution_timeout_refunds(li, creator):
    li.knobs(execution_timeout_s=1, stuck_rate=1)
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    assert task.wait(li, STARTED)["timeout"] == 1
    data = task.wait(li, END_ABORTED, timeout=5)
    assert data["abort_reason"] == 1 and balance(li, account) == 100 * CNX


def test_creator_validation_timeout_pays_the_node_and_refunds_nothing(li, creator):
    li.knobs(app_validation_timeout_s=0.5)
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    node = task.wait(li, SCORE_READY)["selected_node"]
    data = task.wait(li, END_ABORTED, timeout=5)
    assert data["abort_reason"] == 8
    assert balance(li, account) == 99 * CNX and [e["type"] for e in ledger(li, account)] == [4]
    events = li.admin("GET", f"/admin/lithium/accounts/{node}")[1]["events"]
    assert any(e["type"] == 0 and task.commitment in e["reason"] for e in events)
    # too late now: the validation is refused and nothing changes
    status, body = task.validate(li)
    assert status == 500 and body["message"] == "illegal task state"


def test_result_upload_timeout_refunds(li, creator):
    li.knobs(result_upload_timeout_s=0.5)
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    li.admin("POST", f"/admin/lithium/tasks/{task.commitment}/outcome", {"outcome": "no_upload"})
    task.wait(li, SCORE_READY)
    assert task.validate(li)[0] == 200
    assert task.wait(li, VALIDATED)["status"] == VALIDATED
    data = task.wait(li, END_ABORTED, timeout=5)
    assert data["abort_reason"] == 9 and balance(li, account) == 100 * CNX


def test_error_report_validated_ends_aborted_with_a_refund(li, creator):
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    li.admin("POST", f"/admin/lithium/tasks/{task.commitment}/outcome", {"outcome": "error"})
    data = task.wait(li, ERROR_REPORTED)
    assert data["task_error"] == 1
    assert task.validate(li)[0] == 200
    data = task.status(li)
    assert (data["status"], data["abort_reason"]) == (END_ABORTED, 6) and balance(li, account) == 100 * CNX
    status, _, _ = task.result(li, 0)
    assert status == 400


# ---------------------------------------------------------------- validation


def test_validate_refusals(li, creator):
    account = creator()
    task = Task(account)
    status, body = li.post_json("/v1/inference_tasks/validate", {"task_id_commitments": ["a", "b"], "task_id": "0x01",
                                                                  "vrf_proof": "0x01", "public_key": "0x01",
                                                                  "timestamp": 1, "signature": "0x00"})
    assert validation_error((status, body)) == ("task_id_commitments", "TaskIDCommitments length incorrect")
    assert task.create(li)[0] == 200
    seed_task = task.wait(li, SCORE_READY)
    assert task.validate(li, task_id=secrets.token_bytes(32)) == (500, {"message": "task id incorrect"})
    beta, pi = task.proof(seed_task["sampling_seed"])
    bad = bytearray(pi)
    bad[40] ^= 1
    assert task.validate(li, proof=bytes(bad)) == (500, {"message": "invalid vrf proof"})
    assert task.validate(li, proof=pi[:80]) == (500, {"message": "invalid vrf proof"})
    # someone else's key and signature: not the creator
    other = Account.create()
    assert validation_error(task.validate(li, key=bytes(other.key))) == ("signature", "Signer not allowed")
    assert task.validate(li) == (200, {"message": "success"})
    assert task.validate(li) == (500, {"message": "illegal task state"})


def test_a_selected_task_cannot_be_validated_alone_and_an_unselected_not_in_a_group(li, creator):
    li.knobs(vrf_select_share=1)
    account = creator(1000 * CNX)
    task = Task(account)
    assert task.create(li)[0] == 200
    task.wait(li, SCORE_READY)
    assert selected(task, li)
    assert task.validate(li) == (500, {"message": "task is selected for validation"})
    li.knobs(vrf_select_share=1e-9)
    plain = [Task(account)]
    plain += [Task(account, task_id=plain[0].task_id) for _ in range(2)]
    for t in plain:
        assert t.create(li)[0] == 200
    for t in plain:
        t.wait(li, SCORE_READY)
    assert not selected(plain[0], li)
    commitments = [t.commitment for t in plain]
    assert plain[0].validate(li, commitments=commitments) == (500, {"message": "task is not selected for validation"})


def group_of_three(li, account, task_type=0, outcomes=("success", "success", "success")):
    li.knobs(vrf_select_share=1)
    first = Task(account, task_type=task_type)
    assert first.create(li)[0] == 200
    li.knobs(vrf_select_share=1e-9)
    first.wait(li, SCORE_READY) if outcomes[0] != "error" else None
    members = [first] + [Task(account, task_type=task_type, task_id=first.task_id) for _ in range(2)]
    for t, outcome in zip(members, outcomes):
        if t is not first:
            assert t.create(li)[0] == 200
        li.admin("POST", f"/admin/lithium/tasks/{t.commitment}/outcome", {"outcome": outcome})
    return members


def test_group_validation_pays_one_fee_and_refunds_the_rest(li, creator):
    account = creator(1000 * CNX)
    members = group_of_three(li, account)
    for t in members:
        t.wait(li, SCORE_READY)
    assert selected(members[0], li)
    commitments = [t.commitment for t in reversed(members)]  # the relay orders them itself
    assert members[0].validate(li, commitments=commitments) == (200, {"message": "success"})
    statuses = sorted(t.status(li)["status"] for t in members)
    assert statuses == [GROUP_VALIDATED, END_GROUP_REFUND, END_GROUP_REFUND] or END_GROUP_SUCCESS in statuses
    winner = next(t for t in members if t.status(li)["status"] in (GROUP_VALIDATED, END_GROUP_SUCCESS))
    winner.wait(li, END_GROUP_SUCCESS)
    assert winner.result(li, 0)[0] == 200
    for t in members:
        if t is not winner:
            assert t.result(li, 0)[0] == 400
    assert balance(li, account) == 999 * CNX  # three charged, two refunded
    assert sorted(e["type"] for e in ledger(li, account)) == [4, 4, 4, 5, 5]


def test_group_invalidates_a_wrong_result(li, creator):
    account = creator(1000 * CNX)
    members = group_of_three(li, account, outcomes=("success", "success", "wrong"))
    for t in members:
        t.wait(li, SCORE_READY)
    assert members[0].validate(li, commitments=[t.commitment for t in members])[0] == 200
    assert members[2].status(li)["status"] == END_INVALIDATED
    # the slashed member's fee is neither refunded nor paid
    assert balance(li, account) == 998 * CNX


def test_group_with_an_aborted_member(li, creator):
    li.knobs(execution_timeout_s=1)
    account = creator(1000 * CNX)
    members = group_of_three(li, account, outcomes=("success", "stuck", "success"))
    members[0].wait(li, SCORE_READY)
    members[2].wait(li, SCORE_READY)
    assert members[1].wait(li, END_ABORTED, timeout=6)["abort_reason"] == 1
    assert members[0].validate(li, commitments=[t.commitment for t in members])[0] == 200
    statuses = sorted(t.status(li)["status"] for t in members)
    assert statuses[0] in (GROUP_VALIDATED, END_GROUP_SUCCESS) or GROUP_VALIDATED in statuses or END_GROUP_SUCCESS in statuses
    assert END_GROUP_REFUND in statuses and END_ABORTED in statuses


def test_group_with_a_validation_timeout_is_refused_for_good(li, creator):
    li.knobs(app_validation_timeout_s=0.6)
    account = creator(1000 * CNX)
    members = group_of_three(li, account)
    members[0].wait(li, END_ABORTED, timeout=5)
    for t in members[1:]:
        t.wait(li, SCORE_READY, END_ABORTED)
    assert members[0].validate(li, commitments=[t.commitment for t in members]) == (500, {"message": "task group validation expired"})


# ---------------------------------------------------------------- Relay Accounts and deposits


def balance_request(li, account, address=None, signature=None):
    address = address or account.address
    ts, sig = sign(bytes(account.key), {"address": address})
    return li.json_get(f"/v2/relay_account/{address}/balance", timestamp=ts, signature=signature or sig)


def test_signed_balance_read(li, creator):
    account = creator(7 * CNX)
    assert balance_request(li, account) == (200, {"message": "success", "data": str(7 * CNX)})
    other = Account.create()
    assert validation_error(balance_request(li, other, address=account.address)) == ("address", "Address mismatch")
    assert balance_request(li, account, signature="0x1234") == (401, {"message": "Valid JWT or signature required"})
    assert li.json_get(f"/v2/relay_account/{account.address}/balance") == (401, {"message": "Valid JWT or signature required"})


def rpc(li, method, *params):
    status, _, data = li.rpc_http.request("POST", "/", json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode(),
                                          {"Content-Type": "application/json"})
    body = json.loads(data)
    assert "error" not in body, body
    return body["result"]


def test_a_cnx_transfer_to_the_deposit_address_is_credited_after_confirmations(li):
    li.knobs(deposit_confirmations=3)
    holder = li.info["accounts"][1]
    account = Account.from_key(holder["private_key"])
    before = int(li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["balance"])
    amount = 25 * CNX
    data = bytes.fromhex("a9059cbb") + bytes(12) + bytes.fromhex(li.info["deposit_address"][2:]) + amount.to_bytes(32, "big")
    tx = {"to": li.info["token_contract"], "data": "0x" + data.hex(), "gas": 100000, "gasPrice": int(rpc(li, "eth_gasPrice"), 16),
          "nonce": int(rpc(li, "eth_getTransactionCount", account.address, "pending"), 16), "chainId": li.info["chain_id"], "value": 0}
    raw = Account.sign_transaction(tx, account.key).raw_transaction
    tx_hash = rpc(li, "eth_sendRawTransaction", "0x" + raw.hex())
    deadline = time.time() + 10
    while rpc(li, "eth_getTransactionReceipt", tx_hash) is None:
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert int(li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["balance"]) == before  # 1 block deep
    li.admin("POST", "/admin/mine")
    li.admin("POST", "/admin/mine")
    deadline = time.time() + 5
    while int(li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["balance"]) == before:
        assert time.time() < deadline, "deposit not credited"
        time.sleep(0.05)
    events = li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["events"]
    assert int(li.admin("GET", f"/admin/lithium/accounts/{account.address}")[1]["balance"]) == before + amount
    assert [e for e in events if e["type"] == 3] == [dict(events[-1], reason=f"3-{tx_hash}-devnet")]


def test_the_description_file_names_what_a_worker_needs(li):
    info = li.info
    assert info["profile"] == "lithium" and info["relay_url"] and info["deposit_address"].startswith("0x")
    assert info["token_contract"] and info["chain_id"] == 10002 and len(info["accounts"]) == 10
    assert int(info["relay_account_balance_wei"]) == 10_000 * CNX


# ---------------------------------------------------------------- fault knobs and counters


def test_http500_knob(li, creator):
    li.knobs(relay_http500_rate=1)
    assert li.json_get("/v1/now")[0] == 500


def test_dropped_answer_still_creates_the_task(li, creator):
    account = creator()
    task = Task(account)
    li.knobs(relay_drop_answer_rate=1)
    with pytest.raises(Exception):
        task.create(li)
    li.knobs(relay_drop_answer_rate=0.0)
    assert task.status(li)["task_id_commitment"] == task.commitment
    assert validation_error(task.create(li)) == ("task_id_commitment", "Task already uploaded")
    assert balance(li, account) == 99 * CNX


def test_fault_knobs_can_be_scoped_to_some_creators(li, creator):
    faulty, spared = creator(), creator()
    li.admin("POST", "/admin/lithium/fault_creators", {"addresses": [faulty.address]})
    li.knobs(relay_drop_answer_rate=1, error_report_rate=1)
    spared_task = Task(spared)
    assert spared_task.create(li)[0] == 200
    with pytest.raises(Exception):
        Task(faulty).create(li)
    li.knobs(relay_drop_answer_rate=0.0)
    faulty_task = Task(faulty)
    assert faulty_task.create(li)[0] == 200
    assert faulty_task.wait(li, ERROR_REPORTED)["task_error"] == 1
    assert spared_task.wait(li, SCORE_READY)["status"] == SCORE_READY


def held(li) -> int:
    return li.admin("GET", "/admin/stats")[1]["relay"]["held"]


def wait_held(li, n: int):
    deadline = time.time() + 10
    while held(li) != n:
        assert time.time() < deadline, f"held requests: {held(li)}, waiting for {n}"
        time.sleep(0.02)


def send_create(li, task: Task) -> socket.socket:
    """A create sent on a raw connection, its answer not read: the caller hangs up or reads."""
    host, port = li.relay.host, li.relay.port
    sock = socket.create_connection((host, port), timeout=10)
    body = task.create_body()
    sock.sendall(f"POST /v1/inference_tasks/{task.commitment} HTTP/1.1\r\nHost: {host}\r\n"
                 f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def test_hold_before_a_create_drops_it_undone_when_the_client_hangs_up(li, creator):
    held_back, other = creator(), creator()
    li.admin("POST", "/admin/lithium/fault_creators", {"addresses": [held_back.address]})
    li.knobs(relay_hold="create:before")
    assert Task(other).create(li)[0] == 200, "another creator is not held"
    task = Task(held_back)
    sock = send_create(li, task)
    wait_held(li, 1)
    sock.close()
    wait_held(li, 0)
    li.knobs(relay_hold="")
    assert balance(li, held_back) == 100 * CNX and not [e for e in ledger(li, held_back) if e["type"] == 4]
    assert task.create(li)[0] == 200, "the dropped create was never done: sending it again creates the task"
    assert balance(li, held_back) == 99 * CNX


def test_hold_after_a_create_has_done_it_and_releases_the_answer(li, creator):
    account = creator()
    li.knobs(relay_hold="create:after")
    task = Task(account)
    sock = send_create(li, task)
    wait_held(li, 1)
    assert task.status(li)["task_id_commitment"] == task.commitment and balance(li, account) == 99 * CNX
    li.knobs(relay_hold="")
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert validation_error(task.create(li)) == ("task_id_commitment", "Task already uploaded")


def test_hold_before_a_validation_leaves_the_task_unvalidated_when_the_client_hangs_up(li, creator):
    account = creator()
    task = Task(account)
    assert task.create(li)[0] == 200
    data = task.wait(li, SCORE_READY)
    assert not selected(task, li)
    li.knobs(relay_hold="validate:before")
    beta, pi = task.proof(data["sampling_seed"])
    body = {"task_id_commitments": [task.commitment], "task_id": "0x" + task.task_id.hex(), "vrf_proof": "0x" + pi.hex(),
            "public_key": "0x" + keys.PrivateKey(task.key).public_key.to_bytes().hex()}
    ts, sig = sign(task.key, body)
    payload = json.dumps(dict(body, timestamp=ts, signature=sig)).encode()
    sock = socket.create_connection((li.relay.host, li.relay.port), timeout=10)
    sock.sendall(f"POST /v1/inference_tasks/validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    wait_held(li, 1)
    sock.close()
    wait_held(li, 0)
    li.knobs(relay_hold="")
    assert task.status(li)["status"] == SCORE_READY
    assert task.validate(li)[0] == 200


def test_stall_knob_answers_late(li):
    li.knobs(relay_stall_rate=1, relay_stall_ms=400)
    t0 = time.monotonic()
    assert li.json_get("/v1/now")[0] == 200
    assert time.monotonic() - t0 >= 0.4


def test_node_fault_rates(li, creator):
    li.knobs(error_report_rate=1)
    t1 = Task(creator())
    assert t1.create(li)[0] == 200
    assert t1.wait(li, ERROR_REPORTED)["status"] == ERROR_REPORTED
    li.knobs(error_report_rate=0.0, upload_stuck_rate=1, result_upload_timeout_s=0.5)
    t2 = Task(creator())
    assert t2.create(li)[0] == 200
    t2.wait(li, SCORE_READY)
    assert t2.validate(li)[0] == 200
    assert t2.wait(li, END_ABORTED, timeout=5)["abort_reason"] == 9
    li.knobs(upload_stuck_rate=0.0, stuck_rate=1, execution_timeout_s=1)
    t3 = Task(creator())
    assert t3.create(li)[0] == 200
    assert t3.wait(li, END_ABORTED, timeout=5)["abort_reason"] == 1
    li.knobs(stuck_rate=0.0, wrong_result_rate=1)
    t4 = Task(creator())
    assert t4.create(li)[0] == 200
    assert t4.wait(li, SCORE_READY)["score"] != ""
    fired = li.admin("GET", "/admin/stats")[1]["faults_fired"]
    assert fired["lithium_error_reported"] >= 1 and fired["lithium_upload_stuck"] >= 1
    assert fired["lithium_stuck"] >= 1 and fired["lithium_wrong_result"] >= 1


def test_request_counters_by_route(li, creator):
    before = li.admin("GET", "/admin/stats")[1]["relay"]["requests_by_kind"]
    task = Task(creator())
    assert task.create(li)[0] == 200
    task.get(li)
    after = li.admin("GET", "/admin/stats")[1]["relay"]["requests_by_kind"]
    assert after.get("create 200", 0) == before.get("create 200", 0) + 1
    assert after.get("task 200", 0) == before.get("task 200", 0) + 1


def test_the_relay_stores_normalised_arguments_and_model_ids(li, creator):
    args = {"prompt": "a <red> fox", "base_model": {"name": "Crynux-Network/SDXL-Turbo"}, "negative_prompt": "",
            "task_config": {"steps": 1, "num_images": 1, "cfg": 7.50, "seed": 42}, "version": "2.0.0"}
    task = Task(creator(), args=json.dumps(args, indent=1), task_model_ids=["base:Crynux-Network/SDXL-Turbo"],
                required_gpu="  NVIDIA   GeForce RTX 4090 ", required_gpu_vram=24)
    assert task.create(li)[0] == 200
    data = task.status(li)
    # models/model_id.go: names lowercased, keys sorted, compact, <>& escaped, numbers as written
    assert data["task_args"] == ('{"base_model":{"name":"crynux-network/sdxl-turbo"},"negative_prompt":"","prompt":"a \\u003cred\\u003e fox",'
                                 '"task_config":{"cfg":7.5,"num_images":1,"seed":42,"steps":1},"version":"2.0.0"}')
    assert data["model_ids"] == ["base:crynux-network/sdxl-turbo"] and data["required_gpu"] == "NVIDIA GeForce RTX 4090"
