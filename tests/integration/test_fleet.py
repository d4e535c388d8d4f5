"""Fleet-safe refresh: OS processes sharing one login through a file or Redis, against the
real provider with refresh-token rotation (reuse of a spent token fails)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import FakeClock
from tests.integration.conftest import scripted_login
from vandamme_oauth import (
    AuthData,
    AuthStorage,
    FileSystemAuthStorage,
    ProviderConfig,
    RedisAuthStorage,
)

if TYPE_CHECKING:
    from harness.redis_server import RedisCluster, RedisServer
    from tests.support.provider import RunningProvider

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def start_worker(config: dict[str, Any]) -> subprocess.Popen[str]:
    """Start one fleet worker process and wait until it reports ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.fleet_worker", json.dumps(config)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process


def release(process: subprocess.Popen[str]) -> None:
    """Send the start signal."""
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


async def expire(storage: AuthStorage) -> AuthData:
    """Make the stored access token expire now (the provider still honours the refresh token)."""
    stored = await storage.read_auth()
    assert stored is not None
    expired = stored.replace(expires_at=time.time() - 1)
    await storage.write_auth(expired)
    return expired


async def expired_file_login(
    provider: ProviderConfig, home: Path, *, callers: int
) -> tuple[FileSystemAuthStorage, AuthData, dict[str, Any]]:
    """Log in into a file, expire the access token, and build the workers' configuration."""
    storage = FileSystemAuthStorage(home, provider.name)
    await scripted_login(provider, storage)
    expired = await expire(storage)
    config = {
        "provider": provider.to_dict(),
        "backend": "file",
        "home": str(home),
        "callers": callers,
    }
    return storage, expired, config


async def run_storm(
    oidc_provider: RunningProvider, config: dict[str, Any], processes: int
) -> list[dict[str, Any]]:
    workers = [start_worker(config) for _ in range(processes)]
    for worker in workers:
        release(worker)
    return [result_of(worker) for worker in workers]


def assert_one_refresh_for_all(
    results: list[dict[str, Any]], before: dict[str, int], after: dict[str, int], old: str
) -> None:
    assert [r["errors"] for r in results] == [[]] * len(results)
    tokens = {token for r in results for token in r["tokens"]}
    assert len(tokens) == 1, tokens
    assert old not in tokens
    assert after["refresh_token"] == before["refresh_token"] + 1
    assert after["token_errors"] == before["token_errors"]  # no invalid_grant anywhere


async def test_four_processes_on_one_file_refresh_once(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """4 processes x 250 callers on one FileSystemAuthStorage at expiry: one refresh, the
    same new token for all, no invalid_grant."""
    storage, expired, config = await expired_file_login(provider_config, tmp_path, callers=250)
    before = oidc_provider.stats()
    results = await run_storm(oidc_provider, config, processes=4)
    assert_one_refresh_for_all(results, before, oidc_provider.stats(), expired.access_token)
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token == results[0]["tokens"][0]


async def test_four_hosts_on_one_redis_key_refresh_once(
    provider_config: ProviderConfig,
    oidc_provider: RunningProvider,
    redis_server: RedisServer,
) -> None:
    """4 processes, each with its own Redis client (4 hosts), 250 callers each: one refresh."""
    key = f"fleet:{uuid.uuid4().hex}"
    storage = RedisAuthStorage.from_url(redis_server.url, key=key)
    try:
        await storm_once_on(
            provider_config, oidc_provider, storage, backend="redis", url=redis_server.url
        )
    finally:
        await storage.aclose()


async def storm_once_on(
    provider: ProviderConfig,
    oidc_provider: RunningProvider,
    storage: RedisAuthStorage,
    **backend: Any,
) -> None:
    """Log in into ``storage``, expire the token, run 4 worker processes x 250 callers on
    the same login (``backend`` tells the workers how to reach it) and check that exactly
    one refresh served them all and was stored."""
    await scripted_login(provider, storage)
    expired = await expire(storage)
    config = {"provider": provider.to_dict(), "key": storage.key, "callers": 250, **backend}
    before = oidc_provider.stats()
    results = await run_storm(oidc_provider, config, processes=4)
    assert_one_refresh_for_all(results, before, oidc_provider.stats(), expired.access_token)
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.access_token == results[0]["tokens"][0]


async def _kill_holder_mid_refresh(
    oidc_provider: RunningProvider, config: dict[str, Any], *, rotated: bool
) -> dict[str, Any]:
    """Start a process whose refresh is held up at the provider, SIGKILL it there, then run a
    successor and return its outcome. ``rotated``: kill after the provider processed the
    refresh (the new tokens die with the process) rather than before."""
    counter = "token_requests_processed" if rotated else "token_requests_started"
    if rotated:
        oidc_provider.set_token_latency(0, after_processing_ms=2000)
    else:
        oidc_provider.set_token_latency(2000)
    try:
        seen = oidc_provider.stats()[counter]
        holder = start_worker(config)
        release(holder)
        oidc_provider.wait_for(counter, after=seen)  # the holder's refresh is at the provider
        os.kill(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
        assert holder.returncode == -signal.SIGKILL
        successor = start_worker(config)
        release(successor)
        return result_of(successor)
    finally:
        oidc_provider.set_token_latency(0)


@pytest.mark.parametrize("rotated", [False, True], ids=["before-rotation", "after-rotation"])
async def test_killed_lock_holder_is_taken_over_with_a_clear_outcome(
    provider_config: ProviderConfig,
    oidc_provider: RunningProvider,
    tmp_path: Path,
    rotated: bool,
) -> None:
    """SIGKILL the process holding the file lock while its refresh is at the provider: the
    kernel frees the lock and a successor takes over at once. If the provider had not yet
    processed the dead request, the fleet recovers with a new token; if it had (the rotated
    tokens died with the process), the successor gets a clear ReauthenticationRequired. The
    file is never corrupt and nothing hangs."""
    storage, expired, config = await expired_file_login(provider_config, tmp_path, callers=1)
    outcome = await _kill_holder_mid_refresh(oidc_provider, config, rotated=rotated)
    stored = await storage.read_auth()
    if rotated:
        assert (outcome["tokens"], outcome["errors"]) == ([], ["ReauthenticationRequired"])
        assert stored == expired  # intact, not half-written
    else:
        assert outcome["errors"] == []
        assert stored is not None
        assert outcome["tokens"] == [stored.access_token]
        assert stored.access_token != expired.access_token


async def test_reactive_refresh_across_processes_adopts_the_winner(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, tmp_path: Path
) -> None:
    """A second process that reports a 401 for a token the first already replaced adopts
    the stored one instead of refreshing again."""
    from vandamme_oauth import TokenManager

    storage_a = FileSystemAuthStorage(tmp_path, provider_config.name)
    storage_b = FileSystemAuthStorage(tmp_path, provider_config.name)
    login = await scripted_login(provider_config, storage_a)
    clock = FakeClock(login.auth.last_refresh)
    before = oidc_provider.stats()["refresh_token"]
    async with (
        TokenManager(provider_config, storage_a, clock=clock) as a,
        TokenManager(provider_config, storage_b, clock=clock) as b,
    ):
        old = await a.get_access_token()
        assert await b.get_access_token() == old
        a.report_unauthorized(old)
        new = await a.get_access_token()
        b.report_unauthorized(old)
        assert await b.get_access_token() == new
    assert oidc_provider.stats()["refresh_token"] == before + 1


async def test_four_hosts_on_a_cluster_refresh_once(
    provider_config: ProviderConfig, oidc_provider: RunningProvider, redis_cluster: RedisCluster
) -> None:
    """4 processes x 250 callers on one login in the cluster at expiry: one refresh, one
    token for all, no invalid_grant."""
    client = redis_cluster.client()
    storage = RedisAuthStorage(client, key=f"fleet:{uuid.uuid4().hex}")
    try:
        await storm_once_on(
            provider_config,
            oidc_provider,
            storage,
            backend="redis-cluster",
            nodes=redis_cluster.startup_nodes,
        )
    finally:
        await client.aclose()
