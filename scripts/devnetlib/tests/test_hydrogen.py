"""--profile hydrogen: the Hydrogen network (era B, crynux-contracts@bf05e39,
crynux-relay@fa0afaa) as a task creator sees it: the CNX token, the
4-argument createTask with its reverts in order, TaskCreated x3, the 16-field
getTask, success / abort / cancel with their CNX flows, the relay without
/v1/now, and the ABI against the real one (abi/hydrogen/, from
crynux-bridge@ad3b37d)."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from client import SCRIPTS_DIR, DevnetProcess, RPCFailure, selector

sys.path.insert(0, str(SCRIPTS_DIR))
from devnetlib.contracts import HYDROGEN_NAMES, compile_contracts  # noqa: E402

ABI_DIR = Path(__file__).resolve().parents[1] / "abi" / "hydrogen"
CNX = 10**18
FEE_PER_NODE = 10 * CNX
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20  # checksummed form is the same
MAX_UINT = 2**256 - 1

TASK_INFO_B = "(uint256,uint256,address,bytes32,bytes32,uint256,bool,address[],bytes32[],bytes32[],bytes[],uint256[],address,bool,uint256,uint256)"
TASK_FIELDS = ["id", "taskType", "creator", "taskHash", "dataHash", "vramLimit", "isSuccess", "selectedNodes", "commitments",
               "nonces", "results", "resultDisclosedRounds", "resultNode", "aborted", "timeout", "balance"]
TOPIC = {
    name: "0x" + keccak(sig.encode()).hex()
    for name, sig in {
        "TaskCreated": "TaskCreated(uint256,uint256,address,address,bytes32,bytes32,uint256)",
        "TaskResultCommitmentsReady": "TaskResultCommitmentsReady(uint256)",
        "TaskSuccess": "TaskSuccess(uint256,bytes,address)",
        "TaskAborted": "TaskAborted(uint256,string)",
        "Transfer": "Transfer(address,address,uint256)",
        "Approval": "Approval(address,address,uint256)",
    }.items()
}
SD = {"base_model": "crynux-ai/sdxl-turbo", "prompt": "a red fox in the snow", "negative_prompt": "",
      "task_config": {"num_images": 2, "seed": 42, "steps": 1, "cfg": 1}}
GPT = {"model": "gpt2", "messages": [{"role": "user", "content": "hello hydrogen"}]}

FLAGS = (
    "--profile", "hydrogen",
    "--task-duration-ms", "300",
    "--results-upload-delay-ms", "100",
    "--relay-sync-lag-ms", "200",
    "--seed", "11",
    "--nodes", "30",
)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def hnet(_contract_cache):
    net = DevnetProcess(*FLAGS, *os.environ.get("DEVNET_TEST_FLAGS", "").split())
    yield net
    net.stop()


@pytest.fixture
def hc(hnet):
    yield hnet.client
    hnet.client.admin("POST", "/admin/config/reset")


@pytest.fixture
def account(hc):
    """A fresh key with 100 ETH and `cnx` CNX (no allowance)."""

    def make(cnx: int = 1000 * CNX, eth: int = 100):
        acct = Account.create()
        assert hc.admin("POST", "/admin/fund", {"address": acct.address, "wei": str(eth * 10**18)})[0] == 200
        if cnx:
            status, body = hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": str(cnx)})
            assert status == 200 and body["balance"] == str(cnx), body
        return acct

    return make


def token(hc) -> str:
    return to_checksum_address(hc.info["token_contract"])


def cnx_balance(hc, address) -> int:
    return decode(["uint256"], hc.call(token(hc), selector("balanceOf(address)") + encode(["address"], [address])))[0]


def allowance(hc, owner, spender) -> int:
    return decode(["uint256"], hc.call(token(hc), selector("allowance(address,address)") + encode(["address", "address"], [owner, spender])))[0]


def approve(hc, acct, amount, spender=None, **kw):
    data = selector("approve(address,uint256)") + encode(["address", "uint256"], [spender or hc.task, amount])
    receipt = hc.transact(acct, token(hc), data, **kw)
    assert receipt["status"] == "0x1"
    return receipt


def create_data(task_type, args: str, vram=8, task_hash=None) -> bytes:
    return selector("createTask(uint256,bytes32,bytes32,uint256)") + encode(
        ["uint256", "bytes32", "bytes32", "uint256"], [task_type, task_hash or keccak(args.encode()), ZERO32, vram])


def created_logs(hc, receipt) -> list:
    return [lg for lg in receipt["logs"] if lg["address"].lower() == hc.task.lower() and lg["topics"][0] == TOPIC["TaskCreated"]]


def create_task(hc, acct, args: str, task_type=0, vram=8, **kw):
    """(receipt, task id): the id is the first data word of TaskCreated."""
    receipt = hc.transact(acct, hc.task, create_data(task_type, args, vram), **kw)
    assert receipt["status"] == "0x1", receipt
    logs = created_logs(hc, receipt)
    return receipt, int(logs[0]["data"][2:66], 16)


def get_task(hc, task_id) -> dict:
    out = hc.call(hc.task, selector("getTask(uint256)") + encode(["uint256"], [task_id]))
    (t,) = decode([TASK_INFO_B], out)
    t = dict(zip(TASK_FIELDS, t))
    t["creator"], t["resultNode"] = to_checksum_address(t["creator"]), to_checksum_address(t["resultNode"])
    t["selectedNodes"] = [to_checksum_address(a) for a in t["selectedNodes"]]
    return t


def revert_of(hc, to, data, sender, value=0) -> str:
    req = {"to": to, "data": "0x" + data.hex(), "from": sender}
    if value:
        req["value"] = hex(value)
    with pytest.raises(RPCFailure) as e:
        hc.rpc("eth_call", req, "latest")
    return e.value.message


def outcome_logs(hc, task_id) -> list:
    # taskId is not indexed in era B: filter by topic0, match the first data word
    logs = hc.rpc("eth_getLogs", {"fromBlock": "0x0", "address": hc.task, "topics": [[TOPIC["TaskSuccess"], TOPIC["TaskAborted"]]]})
    return [lg for lg in logs if int(lg["data"][2:66], 16) == task_id]


def wait_for(predicate, timeout=15.0, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not met")


def wait_outcome(hc, task_id, timeout=15.0) -> dict:
    return wait_for(lambda: (outcome_logs(hc, task_id) or [None])[0], timeout)


def abort_reason(log) -> str:
    (task_id, reason) = decode(["uint256", "string"], bytes.fromhex(log["data"][2:]))
    return reason


def sd(**extra) -> str:
    return json.dumps(dict(SD, **extra))


def run_to_created(hc, account, args=None, task_type=0, **kw):
    acct = account()
    approve(hc, acct, 1000 * CNX)
    args = args or sd()
    receipt, task_id = create_task(hc, acct, args, task_type, **kw)
    return acct, args, receipt, task_id


# ---------------------------------------------------------------- ABI (no devnet needed)


def _strip(entry, renames=None):
    if isinstance(entry, dict):
        out = {k: _strip(v, renames) for k, v in entry.items() if k != "internalType"}
        if renames and out.get("name") in renames:
            out["name"] = renames[out["name"]]
        return out
    if isinstance(entry, list):
        return [_strip(v, renames) for v in entry]
    return entry


@pytest.fixture(scope="module")
def compiled_b(tmp_path_factory):
    cache = os.environ.get("DEVNET_CACHE_DIR")
    return compile_contracts(Path(cache) if cache else tmp_path_factory.mktemp("cache"), HYDROGEN_NAMES)


# Vyper cannot name a parameter `from`: the devnet token calls it `sender`
# (transferFrom's first input, Transfer's first field). Only the name differs.
TOKEN_RENAMES = {"sender": "from"}


@pytest.mark.parametrize("name,mine,renames", [("Task", "HydrogenTask", None), ("CrynuxToken", "CrynuxToken", TOKEN_RENAMES)])
def test_abi_matches_real_era_b(compiled_b, name, mine, renames):
    reference = json.loads((ABI_DIR / f"{name}.abi").read_text())
    have = {(e["type"], e.get("name")): _strip(e, renames) for e in compiled_b[mine]["abi"]}
    checked = 0
    for entry in reference:
        kind, fn = entry["type"], entry.get("name")
        if kind not in ("function", "event"):
            continue  # the constructors differ (no Node/QOS contracts here)
        assert (kind, fn) in have, f"{name}.{fn} missing"
        assert have[(kind, fn)] == _strip(entry), f"{name}.{fn} differs"
        checked += 1
    assert checked == (22 if name == "Task" else 13)


def test_selectors_and_topics():
    assert selector("createTask(uint256,bytes32,bytes32,uint256)").hex() == "6ab702ed"
    assert selector("getTask(uint256)").hex() == "1d65e77e"
    assert selector("cancelTask(uint256)").hex() == "7eec20a8"
    assert selector("approve(address,uint256)").hex() == "095ea7b3"
    assert selector("allowance(address,address)").hex() == "dd62ed3e"
    assert selector("balanceOf(address)").hex() == "70a08231"
    assert TOPIC["TaskCreated"] == "0xbb7c6b96a3c44e4d2f31e6c30253c53b53f88b24017a672bc1781402f646a8ad"
    assert TOPIC["Transfer"] == "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    assert TOPIC["Approval"] == "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"


# ---------------------------------------------------------------- chain, token


def test_description_chain_and_funding(hnet, hc):
    info = hnet.info
    assert info["profile"] == "hydrogen" and info["chain_id"] == 42 and info["task_queue_contract"] is None
    assert {"rpc_url", "relay_url", "admin_url", "task_contract", "token_contract", "accounts", "pid", "operator_address"} <= set(info)
    assert hc.rpc("eth_chainId") == "0x2a"
    # the last test account is never used by the tests: its start-up funding
    last = info["accounts"][-1]["address"]
    assert cnx_balance(hc, last) == 10_000 * CNX
    assert int(hc.rpc("eth_getBalance", last, "latest"), 16) == 10**6 * 10**18
    name, symbol, decimals = (decode([t], hc.call(token(hc), selector(f"{f}()")))[0]
                              for f, t in (("name", "string"), ("symbol", "string"), ("decimals", "uint8")))
    assert (name, symbol, decimals) == ("Crynux", "CNX", 18)


def test_gas_price_one_legacy_tx(hc, account):
    acct = account(cnx=0)
    assert int(hc.rpc("eth_getBlockByNumber", "latest", False)["baseFeePerGas"], 16) == 1
    receipt = hc.transact(acct, acct.address, value=1, gas=21000, legacy=True, gas_price=1)
    assert receipt["status"] == "0x1" and int(receipt["effectiveGasPrice"], 16) == 1
    # the real era-B configs send 42,949,670 / 42,949,672 gas per transaction
    receipt = hc.transact(acct, acct.address, value=1, gas=42_949_672, legacy=True, gas_price=1)
    assert receipt["status"] == "0x1"


def test_token_approve_allowance_transfer_from(hc, account):
    owner, spender, other = account(100 * CNX), account(0), account(0)
    receipt = approve(hc, owner, 40 * CNX, spender=spender.address)
    (lg,) = receipt["logs"]
    assert lg["topics"] == [TOPIC["Approval"], "0x" + "00" * 12 + owner.address[2:].lower(), "0x" + "00" * 12 + spender.address[2:].lower()]
    assert int(lg["data"], 16) == 40 * CNX
    assert allowance(hc, owner.address, spender.address) == 40 * CNX

    move = lambda amount: selector("transferFrom(address,address,uint256)") + encode(["address", "address", "uint256"], [owner.address, other.address, amount])
    receipt = hc.transact(spender, token(hc), move(15 * CNX))
    assert receipt["status"] == "0x1"
    assert [lg["topics"][0] for lg in receipt["logs"]] == [TOPIC["Approval"], TOPIC["Transfer"]]
    assert int(receipt["logs"][0]["data"], 16) == 25 * CNX  # the lowered allowance
    assert int(receipt["logs"][1]["data"], 16) == 15 * CNX
    assert cnx_balance(hc, other.address) == 15 * CNX and cnx_balance(hc, owner.address) == 85 * CNX

    # OZ 4.9 order: the allowance is checked before the balance
    assert revert_of(hc, token(hc), move(26 * CNX), spender.address) == "execution reverted: ERC20: insufficient allowance"
    approve(hc, owner, MAX_UINT, spender=spender.address)
    assert revert_of(hc, token(hc), move(86 * CNX), spender.address) == "execution reverted: ERC20: transfer amount exceeds balance"
    receipt = hc.transact(spender, token(hc), move(5 * CNX))
    assert [lg["topics"][0] for lg in receipt["logs"]] == [TOPIC["Transfer"]]  # no Approval at 2**256-1
    assert allowance(hc, owner.address, spender.address) == MAX_UINT

    send = selector("transfer(address,uint256)") + encode(["address", "uint256"], [other.address, 81 * CNX])
    assert revert_of(hc, token(hc), send, owner.address) == "execution reverted: ERC20: transfer amount exceeds balance"


def test_admin_cnx_mint_and_drain(hc, account):
    acct = account(5 * CNX)
    status, body = hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": "0"})
    assert status == 200 and body["balance"] == "0" and cnx_balance(hc, acct.address) == 0
    status, body = hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": str(123 * CNX + 1)})
    assert status == 200 and cnx_balance(hc, acct.address) == 123 * CNX + 1
    assert hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": -1})[0] == 400


# ---------------------------------------------------------------- createTask


def test_create_task_reverts_in_order(hc, account):
    acct = account(cnx=0)
    args = sd(prompt="reverts")
    call = lambda data, **kw: revert_of(hc, hc.task, data, acct.address, **kw)
    total = decode(["uint256"], hc.call(hc.task, selector("totalTasks()")))[0]
    # nonpayable: a value reverts without a reason
    assert call(create_data(0, args), value=1) == "execution reverted"
    assert call(create_data(2, args)) == "execution reverted: Invalid task type"
    assert call(create_data(0, args)) == "execution reverted: Not enough tokens for task"
    hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": str(30 * CNX - 1)})
    assert call(create_data(0, args)) == "execution reverted: Not enough tokens for task"
    hc.admin("POST", "/admin/cnx", {"address": acct.address, "balance": str(30 * CNX)})
    assert call(create_data(0, args)) == "execution reverted: Not enough allowance for task"
    approve(hc, acct, 30 * CNX - 1)
    assert call(create_data(0, args)) == "execution reverted: Not enough allowance for task"
    approve(hc, acct, 30 * CNX)
    # node selection (Node.sol at bf05e39): which text depends on the path taken
    assert call(create_data(0, args, vram=25)) == "execution reverted: No kind of gpu vram meets condition"
    hc.knobs(nodes=2)
    assert call(create_data(0, args, vram=0)) == "execution reverted: No available nodes"
    assert call(create_data(0, args, vram=8)) == "execution reverted: No kind of gpu vram meets condition"
    assert call(create_data(1, json.dumps(GPT), vram=8)) == "execution reverted: No kind of gpu id meets condition"
    hc.knobs(nodes=4)  # 2 GPU models x 2 free nodes: no model has 3
    assert call(create_data(1, json.dumps(GPT), vram=0)) == "execution reverted: No kind of gpu id meets condition"
    # a reverted createTask (mined) takes no id and no tokens
    receipt = hc.transact(acct, hc.task, create_data(1, json.dumps(GPT)), gas=1_000_000)
    assert receipt["status"] == "0x0" and receipt["logs"] == []
    assert decode(["uint256"], hc.call(hc.task, selector("totalTasks()")))[0] == total
    assert cnx_balance(hc, acct.address) == 30 * CNX
    hc.knobs(nodes=30)
    _, task_id = create_task(hc, acct, args, vram=0)
    assert task_id == total + 1 and cnx_balance(hc, acct.address) == 0


def test_node_vram_and_gpu_kinds_knobs(hc, account):
    acct = account(30 * CNX)
    approve(hc, acct, 30 * CNX)
    ok = lambda data: hc.call(hc.task, data, sender=acct.address) == b""
    assert revert_of(hc, hc.task, create_data(0, sd(), vram=40), acct.address) == "execution reverted: No kind of gpu vram meets condition"
    hc.knobs(node_vram_gb=48)
    assert ok(create_data(0, sd(), vram=40)) and ok(create_data(1, json.dumps(GPT), vram=48))
    hc.knobs(node_vram_gb=24, nodes=4, node_gpu_kinds=1)  # 4 nodes of one model: a GPT task fits
    assert ok(create_data(1, json.dumps(GPT), vram=24))


def test_node_views_count_the_free_nodes(hnet, hc, account):
    """Node.sol@bf05e39's views, at the address devnet.json names: what a client admits createTasks by."""
    node = hnet.info["node_contract"]
    assert node == hnet.info["task_contract"]
    hc.knobs(nodes=7, node_vram_gb=24, node_gpu_kinds=1)
    available = lambda: decode(["uint256"], hc.call(node, selector("availableNodes()")))[0]
    by_vram = lambda v, n: decode(["uint256[]", "uint256[]"], hc.call(node, selector("filterGPUVram(uint256,uint256)") + encode(["uint256", "uint256"], [v, n])))
    by_id = lambda v, n: decode(["bytes32[]", "uint256[]"], hc.call(node, selector("filterGPUID(uint256,uint256)") + encode(["uint256", "uint256"], [v, n])))
    # Earlier tests of this module may still hold a few of the seven nodes.
    free = available()
    assert 3 <= free <= 7
    assert by_vram(8, 1) == ((24,), (free,))
    ids, counts = by_id(24, 3)
    assert len(ids) == 1 and counts == (free,)
    call = lambda fn, *a: selector(fn) + encode(["uint256", "uint256"], list(a))
    assert revert_of(hc, node, call("filterGPUVram(uint256,uint256)", 40, 1), ZERO_ADDRESS) == "execution reverted: No kind of gpu vram meets condition"
    assert revert_of(hc, node, call("filterGPUID(uint256,uint256)", 24, 8), ZERO_ADDRESS) == "execution reverted: No kind of gpu id meets condition"
    acct = account()
    approve(hc, acct, 30 * CNX)
    create_task(hc, acct, sd(prompt="takes three"), vram=8)
    assert available() == free - 3
    if free > 3:
        assert by_vram(8, 1) == ((24,), (free - 3,))


def test_task_created_events_and_get_task(hc, account):
    acct = account()
    approve(hc, acct, 100 * CNX)
    args = sd(prompt="events")
    receipt, task_id = create_task(hc, acct, args, vram=8, legacy=True, gas_price=1, gas=42_949_672)
    logs = receipt["logs"]
    # what crynux-bridge@ad3b37d expects: exactly Approval, Transfer, TaskCreated x3, the id in Logs[2]
    assert len(logs) == 5
    assert [lg["topics"][0] for lg in logs] == [TOPIC["Approval"], TOPIC["Transfer"]] + [TOPIC["TaskCreated"]] * 3
    assert logs[0]["address"].lower() == logs[1]["address"].lower() == token(hc).lower()
    assert int(logs[0]["data"], 16) == 70 * CNX  # allowance left
    assert logs[1]["topics"][2] == "0x" + "00" * 12 + hc.task[2:].lower() and int(logs[1]["data"], 16) == 30 * CNX
    nodes = []
    for i, lg in enumerate(logs[2:]):
        assert lg["topics"][1] == "0x" + "00" * 12 + acct.address[2:].lower()
        t_id, t_type, t_hash, d_hash, rnd = decode(["uint256", "uint256", "bytes32", "bytes32", "uint256"], bytes.fromhex(lg["data"][2:]))
        assert (t_id, t_type, t_hash, d_hash, rnd) == (task_id, 0, keccak(args.encode()), ZERO32, i)
        nodes.append(to_checksum_address("0x" + lg["topics"][2][-40:]))
    assert len(set(nodes)) == 3
    block = hc.rpc("eth_getBlockByNumber", receipt["blockNumber"], False)
    t = get_task(hc, task_id)
    assert t["id"] == task_id and t["taskType"] == 0 and t["creator"] == acct.address and t["vramLimit"] == 8
    assert t["taskHash"] == keccak(args.encode()) and t["dataHash"] == ZERO32 and t["isSuccess"] is False
    assert list(t["selectedNodes"]) == nodes
    assert list(t["commitments"]) == [ZERO32] * 3 and list(t["nonces"]) == [ZERO32] * 3 and list(t["results"]) == [b""] * 3
    assert list(t["resultDisclosedRounds"]) == [] and t["resultNode"] == ZERO_ADDRESS and t["aborted"] is False
    assert t["timeout"] == int(block["timestamp"], 16) + 900 and t["balance"] == 30 * CNX
    assert cnx_balance(hc, hc.task) >= 30 * CNX
    assert get_task(hc, 10**9)["id"] == 0


# ---------------------------------------------------------------- life cycles


def test_success_results_payouts_and_deletion(hc, account):
    acct, args, receipt, task_id = run_to_created(hc, account, sd(prompt="success path"))
    nodes = [to_checksum_address("0x" + lg["topics"][2][-40:]) for lg in created_logs(hc, receipt)]
    before = {n: cnx_balance(hc, n) for n in nodes}
    creator_before = cnx_balance(hc, acct.address)
    status, _, _ = hc.result(acct, task_id, 0)
    assert status == 400  # not uploaded yet
    status, body = hc.upload_when_synced(acct, task_id, args)
    assert status == 200 and body["data"]["status"] == 1 and body["data"]["task_id"] == task_id
    success = wait_outcome(hc, task_id)
    assert success["topics"][0] == TOPIC["TaskSuccess"]
    t_id, result = decode(["uint256", "bytes"], bytes.fromhex(success["data"][2:]))
    assert t_id == task_id and len(result) == 16  # 8 bytes per image
    result_node = to_checksum_address("0x" + success["topics"][1][-40:])
    assert result_node in nodes
    # the commitments were ready in an earlier transaction
    ready = hc.rpc("eth_getLogs", {"fromBlock": receipt["blockNumber"], "address": hc.task, "topics": [TOPIC["TaskResultCommitmentsReady"]]})
    assert any(int(lg["data"], 16) == task_id for lg in ready)
    # results: 400 "Task results not uploaded" until the result node uploaded them
    def downloaded():
        status, headers, data = hc.result(acct, task_id, 1)
        if status == 400:
            assert json.loads(data)["data"] == {"field_name": "task_id", "message": "Task results not uploaded"}
            return None
        return status, headers, data
    status, headers, data = wait_for(downloaded)
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n" and headers["Content-Disposition"] == "attachment; filename=1.png"
    # each node is paid taskFeePerNode; the task is deleted once all are settled
    wait_for(lambda: get_task(hc, task_id)["id"] == 0)
    assert {n: cnx_balance(hc, n) - before[n] for n in nodes} == {n: FEE_PER_NODE for n in nodes}
    assert cnx_balance(hc, acct.address) == creator_before
    assert outcome_logs(hc, task_id) == [success]  # no TaskResultUploaded in era B


def test_gpt_task_success(hc, account):
    acct = account()
    approve(hc, acct, 30 * CNX)
    args = json.dumps(GPT)
    _, task_id = create_task(hc, acct, args, task_type=1, vram=8)
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    assert wait_outcome(hc, task_id)["topics"][0] == TOPIC["TaskSuccess"]
    status, _, data = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(hc.result(acct, task_id, 0)))
    assert json.loads(data)["choices"][0]["message"]["role"] == "assistant"


def test_error_reported_pays_the_reporters(hc, account):
    hc.knobs(results_upload_delay_ms=1500)  # time to read the task before the third node reports
    acct, args, receipt, task_id = run_to_created(hc, account, sd(prompt="devnet:abort"))
    nodes = [to_checksum_address("0x" + lg["topics"][2][-40:]) for lg in created_logs(hc, receipt)]
    before = {n: cnx_balance(hc, n) for n in nodes}
    creator = cnx_balance(hc, acct.address)
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    aborted = wait_outcome(hc, task_id)
    assert aborted["topics"] == [TOPIC["TaskAborted"]] and abort_reason(aborted) == "Task error reported"
    t = get_task(hc, task_id)
    assert t["aborted"] is True and t["isSuccess"] is True and len(t["resultDisclosedRounds"]) == 2
    assert t["balance"] == FEE_PER_NODE  # the third node's share, until it reports too
    wait_for(lambda: get_task(hc, task_id)["id"] == 0)
    assert sorted(cnx_balance(hc, n) - before[n] for n in nodes) == [FEE_PER_NODE] * 3
    assert cnx_balance(hc, acct.address) == creator  # nothing refunded
    # the relay: Aborted, so no results
    status, _, data = hc.result(acct, task_id, 0)
    assert status == 400 and json.loads(data)["data"]["message"] == "Task results not uploaded"


def test_result_illegal_refunds_everything(hc, account):
    acct, args, receipt, task_id = run_to_created(hc, account, sd(prompt="devnet:illegal"))
    nodes = [to_checksum_address("0x" + lg["topics"][2][-40:]) for lg in created_logs(hc, receipt)]
    before = {n: cnx_balance(hc, n) for n in nodes}
    creator = cnx_balance(hc, acct.address)
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    aborted = wait_outcome(hc, task_id)
    assert abort_reason(aborted) == "Task result illegal"
    assert get_task(hc, task_id)["id"] == 0  # deleted in the same transaction
    assert cnx_balance(hc, acct.address) == creator + 3 * FEE_PER_NODE
    assert all(cnx_balance(hc, n) == before[n] for n in nodes)


def test_admin_outcome_before_upload(hc, account):
    acct, args, _, task_id = run_to_created(hc, account, sd(prompt="forced"))
    status, body = hc.admin("POST", f"/admin/tasks/{task_id}/outcome", {"outcome": "illegal"})
    assert status == 200 and body == {"task_id": task_id, "outcome": "illegal", "applied": "pending"}
    assert hc.admin("POST", f"/admin/tasks/{task_id}/outcome", {"outcome": "boom"})[0] == 400
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    assert abort_reason(wait_outcome(hc, task_id)) == "Task result illegal"


def test_cancel_after_deadline_refunds_cnx(hc, account):
    hc.knobs(task_timeout_s=2, watchdog_delay_ms=-1)
    acct, args, _, task_id = run_to_created(hc, account, sd(prompt="devnet:stuck"))
    creator = cnx_balance(hc, acct.address)
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    cancel = selector("cancelTask(uint256)") + encode(["uint256"], [task_id])
    assert revert_of(hc, hc.task, cancel, acct.address) == "execution reverted: Task has not exceeded the deadline yet"
    stranger = account(cnx=0)
    assert revert_of(hc, hc.task, cancel, stranger.address) == "execution reverted: Unauthorized to cancel task"
    missing = selector("cancelTask(uint256)") + encode(["uint256"], [10**9])
    assert revert_of(hc, hc.task, missing, acct.address) == "execution reverted: Task not exist"
    deadline = get_task(hc, task_id)["timeout"]
    wait_for(lambda: int(hc.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16) > deadline, timeout=10)
    receipt = hc.transact(acct, hc.task, cancel)
    assert receipt["status"] == "0x1"
    kinds = [(lg["address"].lower(), lg["topics"][0]) for lg in receipt["logs"]]
    assert kinds == [(token(hc).lower(), TOPIC["Transfer"]), (hc.task.lower(), TOPIC["TaskAborted"])]
    assert abort_reason(receipt["logs"][1]) == "Task Cancelled"
    assert cnx_balance(hc, acct.address) == creator + 3 * FEE_PER_NODE
    assert get_task(hc, task_id)["id"] == 0
    assert revert_of(hc, hc.task, cancel, acct.address) == "execution reverted: Task not exist"


def test_watchdog_cancels_stuck_task(hc, account):
    hc.knobs(task_timeout_s=1, watchdog_delay_ms=0)
    acct, args, _, task_id = run_to_created(hc, account, sd(prompt="devnet:stuck again"))
    creator = cnx_balance(hc, acct.address)
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    aborted = wait_outcome(hc, task_id, timeout=15)
    assert abort_reason(aborted) == "Task Cancelled"
    assert cnx_balance(hc, acct.address) == creator + 3 * FEE_PER_NODE


def test_task_fee_per_node_knob(hc, account):
    config = hc.knobs(task_fee_per_node=str(CNX))
    assert config["task_fee_per_node"] == str(CNX)
    acct = account(10 * CNX)
    approve(hc, acct, 3 * CNX)
    args = sd(prompt="cheap")
    receipt, task_id = create_task(hc, acct, args)
    assert int(receipt["logs"][1]["data"], 16) == 3 * CNX and cnx_balance(hc, acct.address) == 7 * CNX
    assert get_task(hc, task_id)["balance"] == 3 * CNX
    nodes = [to_checksum_address("0x" + lg["topics"][2][-40:]) for lg in created_logs(hc, receipt)]
    before = {n: cnx_balance(hc, n) for n in nodes}
    assert hc.upload_when_synced(acct, task_id, args)[0] == 200
    wait_for(lambda: get_task(hc, task_id)["id"] == 0)
    assert all(cnx_balance(hc, n) - before[n] == CNX for n in nodes)
    assert hc.admin("POST", "/admin/config", {"task_fee_per_node": "ten"})[0] == 400
    hc.admin("POST", "/admin/config/reset")
    assert hc.admin("GET", "/admin/config")[1]["task_fee_per_node"] == str(FEE_PER_NODE)


# ---------------------------------------------------------------- relay


def test_relay_era_b(hc, account):
    status, headers, body = hc.relay_http.request("GET", "/v1/now")
    assert status == 404 and body == b"404 page not found"
    hc.knobs(relay_sync_lag_ms=1500)
    acct, args, _, task_id = run_to_created(hc, account, sd(prompt="relay"))
    status, body = hc.upload(acct, task_id, args)
    assert status == 400 and body["data"] == {"field_name": "task_id", "message": "Task not found on the Blockchain"}
    status, body = hc.upload_when_synced(acct, task_id, sd(prompt="not the hashed one"))
    assert status == 400 and body["data"] == {"field_name": "task_hash", "message": "Task hash mismatch"}
    stranger = account(cnx=0)
    status, body = hc.upload(stranger, task_id, args)
    assert status == 400 and body["data"] == {"field_name": "signature", "message": "Signer not allowed"}
    status, body = hc.upload(acct, task_id, json.dumps({"prompt": "no base model", "task_config": {}}))
    assert status == 400 and body["data"]["field_name"] == "task_args"
    assert hc.upload(acct, task_id, args)[0] == 200
    status, body = hc.upload(acct, task_id, args)
    assert status == 400 and body["data"]["message"] == "Task already uploaded"
    # GET /v1/inference_tasks/{id}, signed {"task_id": n}
    ts = int(time.time())
    sig = hc.relay_sign(acct, ('{"task_id":' + str(task_id) + "}").encode(), ts)
    status, _, data = hc.relay_http.request("GET", f"/v1/inference_tasks/{task_id}?timestamp={ts}&signature={sig}")
    task = json.loads(data)["data"]
    assert status == 200 and task["task_id"] == task_id and task["creator"] == acct.address and task["vram_limit"] == 8
    assert len(task["SelectedNodes"]) == 3


def test_faults_in_hydrogen(hc, account):
    hc.knobs(rpc_error_rate=1)
    with pytest.raises(RPCFailure) as e:
        hc.rpc("eth_blockNumber")
    assert e.value.code == -32603
    hc.knobs(rpc_error_rate=0, relay_http500_rate=1)
    status, _, body = hc.relay_http.request("GET", "/v1/inference_tasks/1/results/0")
    assert status == 500
    hc.knobs(relay_http500_rate=0)
    total = decode(["uint256"], hc.call(hc.task, selector("totalTasks()")))[0]
    hc.knobs(relay_blind_task_ids=[total + 1])
    acct, args, _, task_id = run_to_created(hc, account, sd(prompt="blind"))
    assert task_id == total + 1
    time.sleep(0.6)
    status, body = hc.upload(acct, task_id, args)
    assert status == 400 and body["data"]["message"] == "Task not found on the Blockchain"
