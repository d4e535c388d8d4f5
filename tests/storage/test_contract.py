"""The AuthStorage contract, run against every backend."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import FakeClock
from tests.support.managers import until_seen, watch_adoptions
from vandamme_oauth import (
    AuthData,
    AuthStorage,
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    NotAuthenticatedError,
    ProviderConfig,
    RedisAuthStorage,
    TokenManager,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from harness.redis_server import RedisServer

LOGIN = AuthData(
    access_token="AT",
    refresh_token="RT",
    id_token="ID",
    account_id="acct",
    email="a@example.com",
    expires_at=1_800_000_000.5,
    last_refresh=1_799_999_000.0,
    scope="openid",
)


PROVIDER = ProviderConfig(
    name="r",
    issuer="https://idp.example",
    client_id="c",
    authorization_endpoint="https://idp.example/a",
    token_endpoint="https://idp.example/t",
)


async def relogin_and_logout_reach_a_manager(
    ours: AuthStorage, theirs: AuthStorage, **options: Any
) -> None:
    """Another process or host (``theirs``, the same login through another storage object)
    stores a login for another account: the manager running on ``ours`` serves it without a
    refresh (through its watcher); their logout then makes it raise NotAuthenticatedError."""
    await ours.write_auth(LOGIN)
    clock = FakeClock(LOGIN.last_refresh)
    async with TokenManager(PROVIDER, ours, clock=clock, **options) as manager:
        assert await manager.get_access_token() == LOGIN.access_token
        adopted = watch_adoptions(manager)
        bob = LOGIN.replace(access_token="BOB-AT", refresh_token="BOB-RT", account_id="bob")
        await until_seen(
            adopted, lambda: manager._token == "BOB-AT", lambda: theirs.write_auth(bob)
        )
        assert (await manager.get_auth_data()).account_id == "bob"
        await until_seen(adopted, lambda: manager._auth is None, theirs.clear_auth)
        with pytest.raises(NotAuthenticatedError):
            await manager.get_access_token()


@pytest.fixture(params=["memory", "file", "redis", "redis-client-decoding"])
async def make_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], AuthStorage]]:
    """A factory of storages that share one login (several handles to the same backend)."""
    if request.param == "memory":
        shared = InMemoryAuthStorage()
        yield lambda: shared
    elif request.param == "file":
        yield lambda: FileSystemAuthStorage(tmp_path / "home", "contract")
    elif request.param == "redis-client-decoding":
        # Storages on a client of the application's, one that decodes replies to str.
        server: RedisServer = request.getfixturevalue("redis_server")
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        key = f"contract:{uuid.uuid4().hex}"
        yield lambda: RedisAuthStorage(client, key=key)
        await client.aclose()
    else:
        server = request.getfixturevalue("redis_server")
        key = f"contract:{uuid.uuid4().hex}"
        made: list[RedisAuthStorage] = []

        def factory() -> AuthStorage:
            made.append(RedisAuthStorage.from_url(server.url, key=key))
            return made[-1]

        yield factory
        for storage in made:
            await storage.aclose()


async def test_empty_storage(make_storage: Callable[[], AuthStorage]) -> None:
    """A new storage holds nothing."""
    storage = make_storage()
    assert await storage.read_auth() is None
    assert await storage.is_authenticated() is False
    await storage.clear_auth()  # clearing nothing is fine


async def test_write_read_clear(make_storage: Callable[[], AuthStorage]) -> None:
    """What is written is read back equal, by another handle too, and clear removes it."""
    storage = make_storage()
    await storage.write_auth(LOGIN)
    assert await make_storage().read_auth() == LOGIN
    assert await storage.is_authenticated() is True
    newer = LOGIN.replace(access_token="AT2", refresh_token="RT2")
    await storage.write_auth(newer)
    assert await storage.read_auth() == newer
    await storage.clear_auth()
    assert await make_storage().read_auth() is None


async def test_lock_excludes_other_holders(make_storage: Callable[[], AuthStorage]) -> None:
    """While one task holds lock(), another handle's lock() waits until it is released."""
    first, second = make_storage(), make_storage()
    order: list[str] = []
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with first.lock():
            order.append("first in")
            held.set()
            await release.wait()
            order.append("first out")

    async def waiter() -> None:
        await held.wait()
        async with second.lock():
            order.append("second in")

    tasks = [asyncio.create_task(holder()), asyncio.create_task(waiter())]
    await held.wait()
    for _ in range(20):
        await asyncio.sleep(0)  # give the waiter every chance to (wrongly) get in
    assert order == ["first in"]
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in"]


def test_auth_data_repr_hides_secrets() -> None:
    """Tokens never appear in repr."""
    text = repr(LOGIN)
    assert "AT" not in text.replace("AuthData", "")
    assert "RT" not in text
    assert "ID'" not in text
    assert "acct" in text


def test_auth_data_json_round_trip_and_version() -> None:
    """to_dict is versioned, RFC 3339 timed, and from_dict reverses it; unknown keys pass."""
    data = LOGIN.to_dict()
    assert data["version"] == 1
    assert data["expires_at"] == "2027-01-15T08:00:00.500Z"
    assert data["last_refresh"] == "2027-01-15T07:43:20Z"
    assert AuthData.from_dict({**data, "future_key": 1}) == LOGIN


@given(
    st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    st.one_of(st.none(), st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)),
)
def test_times_round_trip_exactly(last_refresh: float, expires_at: float | None) -> None:
    """Any time survives the JSON form unchanged (kept to the millisecond)."""
    auth = LOGIN.replace(last_refresh=last_refresh, expires_at=expires_at)
    assert AuthData.from_dict(auth.to_dict()) == auth
    assert abs(auth.last_refresh - last_refresh) <= 0.0005
