"""Benchmarks of many logins in one process (issue 18), run by ``scripts/test -s bench``:

1. Idle cost at 10, 100, 1,000 and 10,000 logins, on files (one home) and on Redis: each
   login has a `TokenManager`, entered and served once, then the process idles. Measured
   in a fresh process per configuration: CPU % of one core over the idle window, KiB of
   resident memory per login, threads, and the server's connections from that process.
2. Storms at 1, 100, 1,000 and 10,000 callers on a warm manager whose token just expired,
   against the same callers on the same warm manager with a valid token (the baseline),
   plus the cold start (a new manager on an expired stored login); 40,000 callers with half
   of them cancelled, against 40,000 without cancellations. Run in an interpreter of
   their own, beside asyncio's floor, with the garbage collector paused, after
   ``gc.freeze()``, and with an OpenTelemetry SDK recording.
3. 10,000 logins whose tokens expire within one minute, each asked for its token every
   half second: the requests, the most in flight at once, and the closest to its expiry
   that any token was served (negative would be late).

The token endpoint runs in a process of its own (``benchmarks/token_server.py``, 20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from vandamme_oauth import (
    AuthData,
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    ProviderConfig,
    RedisAuthStorage,
    TokenManager,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from vandamme_oauth import AuthStorage

IDLE_WINDOW = 5.0  # seconds of idling measured
SIZES = (10, 100, 1_000, 10_000)
STORMS = (1, 100, 1_000, 10_000)
REPEATS = 9  # storms: a full collection of the garbage collector lands in some runs only


def provider_for(port: int) -> ProviderConfig:
    return ProviderConfig(
        name="bench",
        issuer=f"http://127.0.0.1:{port}",
        client_id="bench",
        authorization_endpoint=f"http://127.0.0.1:{port}/authorize",
        token_endpoint=f"http://127.0.0.1:{port}/token",
    )


def login(name: str, *, expires_at: float, lifetime: float = 3600.0, n: int = 0) -> AuthData:
    return AuthData(
        access_token=f"AT-{name}-{n}",
        refresh_token=f"RT-{name}-{n}",
        expires_at=expires_at,
        last_refresh=expires_at - lifetime,
    )


@contextlib.contextmanager
def token_server(latency: float = 0.020) -> Any:
    """The token endpoint in its own process; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.token_server", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


async def server_stats(port: int, *, reset: bool = False) -> dict[str, int]:
    async with httpx.AsyncClient(trust_env=False) as client:
        if reset:
            await client.post(f"http://127.0.0.1:{port}/stats")
            return {}
        return dict((await client.get(f"http://127.0.0.1:{port}/stats")).json())


# -- 1. idle cost ------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _redis_connections(url: str, name: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        listed = await client.client_list()
        return sum(1 for c in listed if c.get("name") == name)
    finally:
        await client.aclose()


def write_files(home: Path, n: int) -> None:
    """``n`` logins in ``home``, written directly (n fsyncs would measure the disk)."""
    expires_at = time.time() + 3600
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i in range(n):
        storage = FileSystemAuthStorage(home, f"u{i}")
        storage.path.write_bytes(storage._encode(login(f"u{i}", expires_at=expires_at), None))


async def idle_worker(backend: str, n: int, place: str) -> dict[str, float]:
    """In a fresh process: ``n`` logins on ``backend`` served once, then idle."""
    expires_at = time.time() + 3600
    name = f"bench-idle-{os.getpid()}"
    storages: list[AuthStorage] = []
    if backend == "redis":
        writer = RedisAuthStorage.from_url(place, key="bench:writer")
        for i in range(n):
            key = f"bench:{os.getpid()}:u{i}"
            await RedisAuthStorage(writer._client, key=key).write_auth(
                login(f"u{i}", expires_at=expires_at)
            )
        await writer.aclose()
    gc.collect()
    before = _rss_bytes()
    for i in range(n):
        if backend == "files":
            storages.append(FileSystemAuthStorage(Path(place), f"u{i}"))
        else:
            storages.append(
                RedisAuthStorage.from_url(place, key=f"bench:{os.getpid()}:u{i}", client_name=name)
            )
    provider = provider_for(1)  # never called: every token is valid for an hour
    managers = [TokenManager(provider, s) for s in storages]
    async with contextlib.AsyncExitStack() as stack:
        for m in managers:
            await stack.enter_async_context(m)
        for m in managers:
            await m.get_access_token()
        await asyncio.sleep(2 * 0.5)  # the watchers take their first look
        gc.collect()
        after = _rss_bytes()
        cpu = time.process_time()
        await asyncio.sleep(IDLE_WINDOW)
        cpu = time.process_time() - cpu
        connections = await _redis_connections(place, name) if backend == "redis" else 0
        threads = threading.active_count()
        adoption = await _adoption_seconds(backend, place, n, managers[n // 2])
    for storage in storages:
        if isinstance(storage, RedisAuthStorage):
            await storage.aclose()
    return {
        "cpu_percent": cpu / IDLE_WINDOW * 100,
        "kib_per_login": (after - before) / n / 1024,
        "threads": threads,
        "redis_connections": connections,
        "adoption_s": adoption,
    }


async def _adoption_seconds(backend: str, place: str, n: int, manager: TokenManager) -> float:
    """Seconds from another program's re-login of one login until its manager serves it."""
    relogin = login(f"u{n // 2}", expires_at=time.time() + 3600, n=1)
    if backend == "files":
        other: AuthStorage = FileSystemAuthStorage(Path(place), f"u{n // 2}")
    else:
        other = RedisAuthStorage.from_url(place, key=f"bench:{os.getpid()}:u{n // 2}")
    adopted = asyncio.Event()
    handle = manager._storage_changed

    async def spy() -> None:
        await handle()
        if manager._token == relogin.access_token:
            adopted.set()

    manager._storage_changed = spy  # type: ignore[method-assign]
    start = time.perf_counter()
    await other.write_auth(relogin)
    await adopted.wait()
    took = time.perf_counter() - start
    if isinstance(other, RedisAuthStorage):
        await other.aclose()
    return took


def bench_idle(redis_url: str) -> None:
    print("\n== Idle cost of many logins (one process each, served once, then idle 5 s) ==")
    print(
        "  backend  logins  CPU % of a core  KiB/login  threads  Redis connections"
        "  re-login adopted after"
    )
    for backend in ("files", "redis"):
        for n in SIZES:
            with tempfile.TemporaryDirectory() as tmp:
                place = str(Path(tmp) / "home") if backend == "files" else redis_url
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.many_logins",
                        "idle",
                        backend,
                        str(n),
                        place,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            r = json.loads(out.splitlines()[-1])
            print(
                f"  {backend:<7} {n:>7}  {r['cpu_percent']:>14.2f}  {r['kib_per_login']:>9.1f}"
                f"  {r['threads']:>7}  {r['redis_connections']:>17}"
                f"  {r['adoption_s'] * 1000:>17.0f} ms"
            )


# -- 2. storms ---------------------------------------------------------------------------------


class Shifted:
    """A wall clock and a steady clock that the benchmark can move forward together."""

    def __init__(self) -> None:
        self.shift = 0.0

    def wall(self) -> float:
        return time.time() + self.shift

    def steady(self) -> float:
        return time.monotonic() + self.shift


async def _callers(manager: TokenManager, n: int, *, cancel_half: bool = False) -> float:
    """``n`` concurrent callers; seconds until the last one that stayed was served. Every
    caller that stayed must get the same token."""
    done: list[float] = []
    tokens: set[str] = set()

    async def caller() -> None:
        tokens.add(await manager.get_access_token())
        done.append(time.perf_counter())

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(caller()) for _ in range(n)]
    if cancel_half:
        await asyncio.sleep(0)  # every caller is waiting on the refresh now
        for task in random.sample(tasks, n // 2):
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    assert not failed, failed[:1]
    assert len(tokens) == 1, tokens
    return max(done) - start


async def _floor(n: int, round_trip: float, *, wait: bool, queued: bool = False) -> float:
    """What asyncio itself charges: ``n`` tasks that each await a plain future of their own,
    all set by one callback a round trip later (``wait``), or that return at once.

    ``queued``: the round trip starts only once every task has taken its first step, as a
    refresh request does that must first open a connection (the token endpoint's connection
    has long expired an hour after the last refresh): the connection's completion is
    handled behind the steps already queued."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = []
    done: list[float] = []

    async def caller() -> None:
        if wait:
            future = loop.create_future()
            futures.append(future)
            await future
        done.append(time.perf_counter())

    def wake() -> None:
        for future in futures:
            future.set_result(None)

    start = time.perf_counter()
    tasks = [asyncio.ensure_future(caller()) for _ in range(n)]
    if wait and queued:
        loop.call_soon(loop.call_later, round_trip, wake)
    elif wait:
        loop.call_later(round_trip, wake)
    await asyncio.gather(*tasks)
    return max(done) - start


async def _added(port: int, serial: list[int], round_trip: float, *, paused: bool = False) -> float:
    """Round trips that a refresh adds to 10,000 callers over their warm baseline, on one
    warm manager; ``paused``: with the garbage collector paused in both runs, and what the
    baseline left collected before the storm."""
    async with warm_manager(port, serial) as (manager, clocks):
        if paused:
            gc.collect()
            gc.disable()
        try:
            base = await _callers(manager, 10_000)
            if paused:
                gc.collect()
            clocks.shift += 3600
            return (await _callers(manager, 10_000) - base) / round_trip
        finally:
            if paused:
                gc.enable()


@contextlib.asynccontextmanager
async def warm_manager(port: int, serial: list[int]) -> AsyncIterator[tuple[TokenManager, Shifted]]:
    """A manager that has served its valid token; ``Shifted`` moves its clocks."""
    clocks = Shifted()
    storage = InMemoryAuthStorage(login("L", expires_at=time.time() + 3600, n=serial[0]))
    manager = TokenManager(
        provider_for(port), storage, clock=clocks.wall, steady_clock=clocks.steady
    )
    async with manager:
        await manager.get_access_token()
        yield manager, clocks
    stored = await storage.read_auth()
    assert stored is not None
    assert stored.refresh_token is not None
    serial[0] = int(stored.refresh_token.rpartition("-")[2])


async def bench_storms() -> None:
    print("\n== Refresh storms on a warm manager (token endpoint in its own process, 20 ms) ==")
    with token_server() as port:
        serial = [0]
        async with warm_manager(port, serial) as (manager, clocks):
            trips = []
            for _ in range(5):
                start = time.perf_counter()
                await manager.refresh()
                trips.append(time.perf_counter() - start)
        round_trip = min(trips)
        await server_stats(port, reset=True)
        serial[0] = 0
        print(f"  one refresh round trip (best of 5, warm client): {round_trip * 1000:.1f} ms")
        for n in STORMS:
            bases, walls = [], []
            for _ in range(REPEATS):
                async with warm_manager(port, serial) as (manager, clocks):
                    bases.append(await _callers(manager, n))
                    clocks.shift += 3600  # the token expired a moment ago
                    walls.append(await _callers(manager, n))
            requests = (await server_stats(port))["requests"]
            await server_stats(port, reset=True)
            serial[0] = 0
            each = [(wall - base) / round_trip for base, wall in zip(bases, walls, strict=True)]
            added = statistics.median(each)
            returning = statistics.median(
                [await _floor(n, round_trip, wait=False) for _ in range(REPEATS)]
            )
            floors = [
                statistics.median(
                    [await _floor(n, round_trip, wait=True, queued=q) for _ in range(REPEATS)]
                )
                - returning
                for q in (False, True)
            ]
            print(
                f"  N={n:>6}: warm baseline {statistics.median(bases) * 1000:7.1f} ms, at expiry "
                f"{statistics.median(walls) * 1000:7.1f} ms: the refresh adds {added:5.2f} "
                f"round trips (median of {REPEATS} pairs, {min(each):.2f} to {max(each):.2f}; "
                f"{requests} requests in {REPEATS} storms); "
                f"asyncio's own floor for {n} waiting tasks: {floors[0] / round_trip:5.2f}, "
                f"{floors[1] / round_trip:5.2f} when the round trip starts after their first step"
            )
        # Diagnosis: the same 10,000-caller storm with the garbage collector paused in both
        # runs (a storm allocates a future and a coroutine per caller; the collections that
        # triggers, gen2 ones included, are most of the spread between runs).
        paused = [await _added(port, serial, round_trip, paused=True) for _ in range(REPEATS)]
        print(
            f"  N= 10000 with the garbage collector paused: the refresh adds "
            f"{statistics.median(paused):5.2f} round trips (median of {REPEATS}; "
            f"{min(paused):.2f} to {max(paused):.2f})"
        )
        # The lever a gateway has: gc.freeze() once started moves everything alive then
        # (modules, clients, managers) out of the collections a storm triggers.
        gc.collect()
        gc.freeze()
        try:
            frozen = [await _added(port, serial, round_trip) for _ in range(REPEATS)]
        finally:
            gc.unfreeze()
        print(
            f"  N= 10000 after gc.freeze(): the refresh adds {statistics.median(frozen):5.2f} "
            f"round trips (median of {REPEATS}; {min(frozen):.2f} to {max(frozen):.2f})"
        )
        colds = []
        for _ in range(REPEATS):
            storage = InMemoryAuthStorage(login("L", expires_at=time.time() - 1, n=serial[0]))
            async with TokenManager(provider_for(port), storage) as manager:
                colds.append(await _callers(manager, 10_000))
            stored = await storage.read_auth()
            assert stored is not None
            assert stored.refresh_token is not None
            serial[0] = int(stored.refresh_token.rpartition("-")[2])
        print(
            f"  cold start (a new manager, expired stored login), N=10000: "
            f"{statistics.median(colds) * 1000:.1f} ms ({statistics.median(colds) / round_trip:.2f}"
            " round trips)"
        )
        for cancel_half in (False, True):
            times = []
            for _ in range(REPEATS):
                async with warm_manager(port, serial) as (manager, clocks):
                    clocks.shift += 3600
                    times.append(await _callers(manager, 40_000, cancel_half=cancel_half))
            what = "half cancelled" if cancel_half else "none cancelled"
            print(
                f"  N= 40000, {what}: last served {statistics.median(times) * 1000:7.1f} ms "
                f"(median of {REPEATS})"
            )
        # Last, as it stays installed: an OpenTelemetry SDK, as a gateway exporting metrics
        # has it. A refresh records its waiters once, however many (an SDK's histogram takes
        # about 12 us a recording: one per caller would hold 10,000 callers 120 ms more).
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        with_sdk = [await _added(port, serial, round_trip) for _ in range(REPEATS)]
        print(
            f"  N= 10000 with an OpenTelemetry SDK recording: the refresh adds "
            f"{statistics.median(with_sdk):5.2f} round trips (median of {REPEATS}; "
            f"{min(with_sdk):.2f} to {max(with_sdk):.2f})"
        )


# -- 3. many logins expiring together ------------------------------------------------------------


async def bench_expiring_together(n: int = 10_000) -> None:
    print(f"\n== {n} logins expiring within one minute (each asked every 0.5 s) ==")
    with token_server() as port:
        now = time.time()
        managers = [
            TokenManager(
                provider_for(port),
                InMemoryAuthStorage(login(f"u{i}", expires_at=now + 40 + 60 * i / n, lifetime=600)),
                refresh_margin=30,
                mandatory_margin=5,
            )
            for i in range(n)
        ]
        closest = float("inf")
        late = 0
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            for m in managers:
                await stack.enter_async_context(m)
            while time.monotonic() - started < 150:
                refreshed = 0
                for m in managers:
                    auth = await m.get_auth_data()
                    assert auth.expires_at is not None
                    left = auth.expires_at - time.time()
                    closest = min(closest, left)
                    late += left <= 0
                    refreshed += not auth.access_token.endswith("-0")
                if refreshed == n:
                    break
                await asyncio.sleep(0.5)
            took = time.monotonic() - started
        stats = await server_stats(port)
    print(
        f"  all refreshed after {took:.0f} s: {stats['requests']} requests ({stats['refused']} "
        f"refused), at most {stats['most_in_flight']} in flight at once; closest to expiry a "
        f"token was served: {closest:.1f} s before it; late: {late}"
    )


async def main() -> None:
    from harness.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            bench_idle(server.url)
        finally:
            server.stop()
    in_a_fresh_interpreter("storms")
    await bench_expiring_together()


def in_a_fresh_interpreter(section: str) -> None:
    """Run one section in an interpreter of its own. A storm's cost moves with the garbage
    collector, whose full collections walk every object alive: what the benchmarks before
    it left (Authlib, MSAL, an OpenTelemetry SDK, their garbage) would weigh on it and not
    on the same section run alone."""
    sys.stdout.flush()
    subprocess.run([sys.executable, "-m", "benchmarks.many_logins", section], check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "idle":
        if sys.argv[2] == "files":
            write_files(Path(sys.argv[4]), int(sys.argv[3]))
        result = asyncio.run(idle_worker(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
        print(json.dumps(result))
    elif len(sys.argv) > 1 and sys.argv[1] == "storms":
        asyncio.run(bench_storms())
    else:
        asyncio.run(main())
