"""Fixtures shared by every test: a controllable clock and a real Redis-protocol server."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import httpx
import pytest

from harness.redis_server import RedisCluster, RedisServer
from tests.support.managers import FakeTokenEndpoint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

# A shell starts a background job with SIGINT ignored, and children inherit that: the CLI
# and the examples that the tests stop with Ctrl-C would then never stop. Restored here,
# the children start with the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# No test, and no CLI a test starts, touches the keyring of the machine it runs on: keyring's
# "null" backend is no keyring to the library (secrets stay in files). Tests of the keyring
# name their own backend.
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"


class FakeClock:
    """A wall clock that only moves when told to."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at a fixed instant."""
    return FakeClock()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real valkey-server on a free 127.0.0.1 port for the whole run."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real three-node Redis Cluster (valkey-server, cluster mode) on loopback ports."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def endpoint() -> FakeTokenEndpoint:
    """An in-process token endpoint that rotates refresh tokens (tests.support.managers)."""
    return FakeTokenEndpoint()


@pytest.fixture
async def http(endpoint: FakeTokenEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose every request goes to ``endpoint``."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handler)) as client:
        yield client
