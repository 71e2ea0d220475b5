"""The Vyper contracts expose the real era-D ABI for everything a client uses;
the relay's Go-JSON encoder matches the protocol's test vectors."""

import json
import os
import sys
from pathlib import Path

import pytest
from eth_utils import keccak

from client import SCRIPTS_DIR, Client

sys.path.insert(0, str(SCRIPTS_DIR))
from devnetlib import gojson  # noqa: E402
from devnetlib.contracts import compile_contracts  # noqa: E402

# The real era-D ABIs: the project's shared folder beside the repository (as in CI), or where
# CRYNUX_SHARED_DIR points. A missing folder fails the test; it is never skipped.
ABI_DIR = Path(os.environ.get("CRYNUX_SHARED_DIR") or Path(__file__).resolve().parents[4] / "shared") / "protocol" / "abi"
CLIENT_SURFACE = {
    "Task": {"function": ["createTask", "getTask", "cancelTask", "totalTasks"], "event": "all"},
    "TaskQueue": {"function": ["include", "size", "getSizeLimit"], "event": []},
}


def _strip(entry):
    if isinstance(entry, dict):
        return {k: _strip(v) for k, v in entry.items() if k != "internalType"}
    if isinstance(entry, list):
        return [_strip(v) for v in entry]
    return entry


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import os

    cache = os.environ.get("DEVNET_CACHE_DIR")
    return compile_contracts(Path(cache) if cache else tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("name", ["Task", "TaskQueue"])
def test_abi_matches_reference(compiled, name):
    assert ABI_DIR.is_dir(), f"{ABI_DIR} is missing: the shared folder must sit beside the repository"
    reference = json.loads((ABI_DIR / f"{name}.abi").read_text())
    mine = {(e["type"], e.get("name")): _strip(e) for e in compiled[name]["abi"]}
    checked = 0
    for entry in reference:
        kind, fn = entry["type"], entry.get("name")
        wanted = CLIENT_SURFACE[name].get(kind, [])
        if kind not in ("function", "event") or (wanted != "all" and fn not in wanted):
            continue
        assert (kind, fn) in mine, f"{name}.{fn} missing"
        assert mine[(kind, fn)] == _strip(entry), f"{name}.{fn} differs"
        checked += 1
    assert checked >= (13 if name == "Task" else 3)


def test_selectors_and_topics_from_protocol():
    assert keccak(b"createTask(uint256,bytes32,bytes32,uint256,uint256)")[:4].hex() == "043b438f"
    assert keccak(b"getTask(uint256)")[:4].hex() == "1d65e77e"
    assert keccak(b"TaskPending(uint256,uint256,address,bytes32,bytes32)").hex() == "a8b23b175c46381c07d9001d248005cebb7fd414d3f64bf1cebfe320a23f6050"
    assert keccak(b"TaskAborted(uint256,string)").hex() == "346216bb718ede47b40f85e7caf58cd997eebda879d146a8b49091c106c851d9"


VECTORS = [
    ('{"image_num":"0","task_id":42}', "4ba6a26c06c8520a7ff2562462984dfe3b480a9ada737ed80b1246a7d86acdf7"),
    ('{"task_id":42}', "5b66ce7ed90590b05b2dc2c5e0696b8e1c7e4ce2b7516bc496883f516bd5f9df"),
    ('{"task_args":"{\\"a\\":\\"x \\u003c y \\u0026 z\\"}","task_id":42}', "ece3a0d8447b38decb07ae225be518c202a795d4a8b350860fcf9cc9c747840c"),
]


def test_go_json_vectors():
    encoded = [
        gojson.marshal_object([("image_num", "0"), ("task_id", 42)]),
        gojson.marshal_object([("task_id", 42)]),
        gojson.marshal_object([("task_args", '{"a":"x < y & z"}'), ("task_id", 42)]),
    ]
    for got, (text, digest) in zip(encoded, VECTORS):
        assert got == text.encode()
        assert keccak(got + b"1700000000").hex() == digest
    # the test client's independent encoder agrees
    assert Client.go_quote('{"a":"x < y & z"}') == gojson.quote('{"a":"x < y & z"}')


def test_go_json_string_rules():
    assert gojson.quote("a/b é \u2028 \u2029 \x01 \x7f") == '"a/b é \\u2028 \\u2029 \\u0001 \x7f"'
    assert gojson.quote('"\\\n\r\t') == '"\\"\\\\\\n\\r\\t"'
    assert gojson.quote("\b\f") == '"\\u0008\\u000c"'
    assert gojson.quote("\b\f", go122=True) == '"\\b\\f"'
