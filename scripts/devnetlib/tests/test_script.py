"""scripts/devnet up / status / down: background start, description file,
refusal of a second instance, clean stop."""

import json
import os
import subprocess
import tempfile

from client import SCRIPTS_DIR, Client

DEVNET = str(SCRIPTS_DIR / "devnet")


def run(*args, env):
    return subprocess.run([DEVNET, *args], env=env, capture_output=True, text=True, timeout=120)


def test_up_status_refuse_down():
    with tempfile.TemporaryDirectory(prefix="devnet-script-") as state:
        env = dict(os.environ, DEVNET_DIR=state)
        up = run("up", "--nodes", "3", "--chain-id", "4242", env=env)
        try:
            assert up.returncode == 0, up.stderr
            printed = json.loads(up.stdout)
            on_disk = json.loads(open(os.path.join(state, "devnet.json")).read())
            assert printed == on_disk
            assert set(on_disk) >= {"rpc_url", "relay_url", "admin_url", "chain_id", "task_contract",
                                    "task_queue_contract", "accounts", "pid"}
            assert on_disk["chain_id"] == 4242 and len(on_disk["accounts"]) >= 5
            assert on_disk["profile"] == "era-d" and "token_contract" not in on_disk
            client = Client(on_disk)
            assert client.rpc("eth_chainId") == hex(4242)
            balance = int(client.rpc("eth_getBalance", on_disk["accounts"][0]["address"], "latest"), 16)
            assert balance >= 10**6 * 10**18
            assert client.stats()["tasks"]["registered_nodes"] == 3
            status = run("status", env=env)
            assert status.returncode == 0 and "running" in status.stderr
            again = run("up", env=env)
            assert again.returncode == 1 and "already running" in again.stderr
        finally:
            down = run("down", env=env)
        assert down.returncode == 0 and "stopped" in down.stderr
        assert not os.path.exists(os.path.join(state, "devnet.json"))
        assert run("status", env=env).returncode == 3


def test_help_lists_every_knob():
    out = subprocess.run([DEVNET, "up", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for flag in ("--idle-block-ms", "--sd-schema {68b52d2,8fcf6e7,union,c0d652a}", "--relay-blind-task-ids", "--node-gpu-kinds",
                 "--rpc-flavor {geth,ethermint}", "--logs-max-block-range", "--profile {era-d,hydrogen,lithium}",
                 "--task-fee-per-node", "--queue-timeout-s", "--app-validation-timeout-s", "--result-upload-timeout-s",
                 "--vrf-select-share", "--deposit-confirmations", "--relay-drop-answer-rate"):
        assert flag in out.stdout
