"""LoginPool: managers by login name, made on first use, closed when idle, reported
without a request, all closed together."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import FakeClock
from tests.support.managers import login
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    LoginPool,
    ManagerState,
    NotAuthenticatedError,
    OAuthError,
)
from vandamme_oauth.storage._home_watch import home_watcher

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from tests.support.managers import FakeTokenEndpoint


def pool_of(
    clock: FakeClock, http: httpx.AsyncClient, **options: Any
) -> tuple[LoginPool, dict[str, InMemoryAuthStorage]]:
    storages = {
        "alice": InMemoryAuthStorage(login(clock, token="AT-alice")),
        "bob": InMemoryAuthStorage(login(clock, token="AT-bob")),
        "nobody": InMemoryAuthStorage(),
    }
    idle = FakeClock(0.0)
    pool = LoginPool(
        GENERIC,
        storages.__getitem__,
        idle_clock=idle,
        clock=clock,
        http_client=http,
        watch_interval=None,
        **options,
    )
    pool.idle = idle  # type: ignore[attr-defined]
    return pool, storages


async def test_managers_are_made_on_first_use_and_kept(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Each login's token from its own storage; one manager per name, made when first
    asked for."""
    pool, _ = pool_of(clock, http)
    assert len(pool) == 0
    assert await pool.get_access_token("alice") == "AT-alice"
    assert await pool.get_access_token("bob") == "AT-bob"
    assert pool.manager("alice") is pool.manager("alice")
    assert (await pool.get_auth_data("bob")).access_token == "AT-bob"
    assert "alice" in pool
    assert len(pool) == 2
    with pytest.raises(NotAuthenticatedError):
        await pool.get_access_token("nobody")
    await pool.aclose()
    assert endpoint.calls == 0


async def test_health_reports_every_login_without_a_request(
    clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """States by name: fresh, empty; nothing is read or sent to find them."""
    pool, _ = pool_of(clock, http)
    await pool.get_access_token("alice")
    pool.manager("nobody")
    assert pool.health() == {"alice": ManagerState.FRESH, "nobody": ManagerState.EMPTY}
    await pool.aclose()
    assert endpoint.calls == 0


async def test_idle_managers_are_closed_and_made_again_on_use(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """A manager unused for idle_timeout is closed (the next use of another login does
    it, or close_idle()); asking for it again makes a new one."""
    pool, _ = pool_of(clock, http, idle_timeout=60)
    first = pool.manager("alice")
    await first.get_access_token()
    pool.idle.advance(30)  # type: ignore[attr-defined]
    pool.manager("bob")
    pool.idle.advance(31)  # type: ignore[attr-defined]
    assert await pool.close_idle() == ["alice"]
    assert "alice" not in pool
    assert "bob" in pool
    clock.advance(3600 - 250)  # inside the margin: a call needs more than the hot path
    with pytest.raises(OAuthError, match="closed"):
        await first.get_access_token()  # the closed manager needs storage: it says so
    again = pool.manager("alice")
    assert again is not first
    assert await again.get_access_token() == "AT-alice"
    await pool.aclose()


async def test_aclose_closes_every_manager_and_the_pool(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """After aclose() the managers are closed and the pool refuses new ones."""
    pool, _ = pool_of(clock, http)
    managers = [pool.manager(name) for name in ("alice", "bob")]
    await pool.aclose()
    assert len(pool) == 0
    clock.advance(3600)
    for manager in managers:
        with pytest.raises(OAuthError, match="closed"):
            await manager.get_access_token()
    with pytest.raises(OAuthError) as caught:
        pool.manager("alice")
    assert str(caught.value) == "this LoginPool is closed"


async def test_a_forgotten_login_is_closed_and_dropped(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """forget() closes one login's manager (after a logout, say)."""
    pool, _ = pool_of(clock, http)
    manager = pool.manager("alice")
    await pool.forget("alice")
    await pool.forget("never-made")
    assert "alice" not in pool
    clock.advance(3600)
    with pytest.raises(OAuthError, match="closed"):
        await manager.get_access_token()
    await pool.aclose()


async def test_the_provider_may_depend_on_the_login(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """A function from the login's name to its provider."""
    seen: list[str] = []

    def provider_for(name: str) -> object:
        seen.append(name)
        return GENERIC.replace(name=name)

    storage = InMemoryAuthStorage(login(clock))
    pool = LoginPool(
        provider_for,  # type: ignore[arg-type]
        lambda name: storage,
        http_client=http,
        clock=clock,
    )
    assert pool.manager("work").provider.name == "work"
    assert seen == ["work"]
    await pool.aclose()


async def test_an_evicted_login_leaves_the_shared_watcher(
    tmp_path: Path, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """File logins of one home: the pool's managers share the home's one watcher; closing
    an idle one ends its interest there, and closing the last ends the watcher."""
    for name in ("alice", "bob"):
        await FileSystemAuthStorage(tmp_path, name).write_auth(login(clock, token=f"AT-{name}"))
    idle = FakeClock(0.0)
    pool = LoginPool(
        GENERIC,
        lambda name: FileSystemAuthStorage(tmp_path, name),
        idle_timeout=60,
        idle_clock=idle,
        clock=clock,
        http_client=http,
        watch_interval=0.01,
    )
    watcher = home_watcher(tmp_path, 0.01)
    assert await pool.get_access_token("alice") == "AT-alice"
    assert await pool.get_access_token("bob") == "AT-bob"
    while watcher.watched < 2:  # each manager's watcher registers on its first step
        await watcher.scanned.wait()
    task = watcher._task
    assert task is not None
    idle.advance(61)
    assert await pool.close_idle() == ["alice", "bob"]
    assert watcher.watched == 0
    await asyncio.wait({task})
    assert task.cancelled()
    await pool.aclose()


def closing_tasks() -> list[str]:
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("vandamme-oauth close") and not t.done()
    )


async def test_the_next_use_closes_a_login_idle_for_exactly_the_timeout(
    clock: FakeClock, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Default idle_timeout, ten minutes: at 599.5 s alice stays; at 600 s using bob closes
    alice in a task of its own, named for her, which aclose() waits for."""
    pool, _ = pool_of(clock, http)
    alice = pool.manager("alice")
    pool.idle.advance(599.5)  # type: ignore[attr-defined]
    pool.manager("bob")
    assert "alice" in pool
    pool.idle.advance(0.5)  # type: ignore[attr-defined]
    pool.manager("bob")
    assert "alice" not in pool
    assert closing_tasks() == ["vandamme-oauth close alice"]
    await pool.aclose()
    assert closing_tasks() == []
    clock.advance(3600)
    with pytest.raises(OAuthError, match="closed"):
        await alice.get_access_token()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_idleness_counts_from_the_last_use(clock: FakeClock, http: httpx.AsyncClient) -> None:
    """alice used at 0 and 50, bob at 10: at 71 bob (idle 61 s) is closed, alice (21 s)
    stays, though she was made first."""
    pool, _ = pool_of(clock, http, idle_timeout=60)
    pool.manager("alice")
    pool.idle.advance(10)  # type: ignore[attr-defined]
    pool.manager("bob")
    pool.idle.advance(40)  # type: ignore[attr-defined]
    pool.manager("alice")
    pool.idle.advance(21)  # type: ignore[attr-defined]
    assert await pool.close_idle() == ["bob"]
    assert "alice" in pool
    await pool.aclose()


async def test_no_idle_timeout_keeps_every_manager(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    pool, _ = pool_of(clock, http, idle_timeout=None)
    pool.manager("alice")
    pool.idle.advance(10**9)  # type: ignore[attr-defined]
    pool.manager("bob")
    assert await pool.close_idle() == []
    assert len(pool) == 2
    await pool.aclose()


async def test_one_manager_failing_to_close_does_not_keep_the_others_open(
    clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """aclose() closes every manager even when one of them raises while closing."""
    pool, _ = pool_of(clock, http)
    alice, bob = pool.manager("alice"), pool.manager("bob")

    async def broken() -> None:
        raise RuntimeError("a storage client that fails to close")

    alice.aclose = broken  # type: ignore[method-assign]
    await pool.aclose()
    clock.advance(3600)
    with pytest.raises(OAuthError, match="closed"):
        await bob.get_access_token()
