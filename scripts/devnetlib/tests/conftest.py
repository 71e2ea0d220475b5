"""Fixtures: one shared devnet for the suite (fast task timings), knobs reset
after every test, fresh funded keys per test (so a test counts only its own
tasks and nonces)."""

import os
import tempfile

import pytest
from eth_account import Account

from client import DevnetProcess

FAST = (
    "--task-duration-ms", "300",
    "--results-upload-delay-ms", "100",
    "--relay-sync-lag-ms", "200",
    "--seed", "7",
    "--nodes", "60",  # tests leave tasks running (no upload): keep nodes free (selection gas grows with them)
)


@pytest.fixture(scope="session", autouse=True)
def _contract_cache():
    # compile the Vyper contracts once for every devnet the suite starts
    if "DEVNET_CACHE_DIR" not in os.environ:
        tmp = tempfile.TemporaryDirectory(prefix="devnet-cache-")
        os.environ["DEVNET_CACHE_DIR"] = tmp.name
        yield
        tmp.cleanup()
    else:
        yield


@pytest.fixture(scope="session")
def devnet(_contract_cache):
    # DEVNET_TEST_FLAGS: extra start-up flags, e.g. "--block-time-ms 250"
    net = DevnetProcess(*FAST, *os.environ.get("DEVNET_TEST_FLAGS", "").split())
    yield net
    net.stop()


@pytest.fixture
def client(devnet):
    yield devnet.client
    # leave no fault or speed change behind for the next test
    devnet.client.admin("POST", "/admin/config/reset")


@pytest.fixture
def funded(client):
    """A fresh random account with 100 ETH, funded through /admin/fund."""

    def make(eth: int = 100):
        account = Account.create()
        status, _ = client.admin("POST", "/admin/fund", {"address": account.address, "wei": str(eth * 10**18)})
        assert status == 200
        return account

    return make
