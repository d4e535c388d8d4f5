"""Benchmarks for vandamme-oauth, run by `scripts/test -s bench` (numbers printed, not asserted).

1. Hot path: ns per `await manager.get_access_token()` on a valid token, beside the floor
   (awaiting a trivial coroutine that returns an attribute), an uncontended asyncio.Lock,
   Authlib's `AsyncOAuth2Client.ensure_active_token` and MSAL's `acquire_token_silent`.
2. Many logins (``benchmarks/many_logins.py``): idle cost at up to 10,000 logins, refresh
   storms on a warm manager against a warm baseline, the cold start, cancellations, and
   10,000 logins expiring within a minute.
3. Cold import time of `vandamme_oauth` beside `httpx` (fresh interpreters).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from benchmarks import many_logins
from vandamme_oauth import AuthData, InMemoryAuthStorage, ProviderConfig, TokenManager
from vandamme_oauth._times import steady_clock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
from pathlib import Path

LOOPS = 200_000
REPEATS = 7
FLEET_REPEATS = 3  # each fleet configuration runs this often; medians are printed
STORM_REPEATS = 5


async def ns_per_call(fn: Callable[[], Awaitable[object]], loops: int = LOOPS) -> float:
    """Best of REPEATS runs of `loops` awaited calls, in ns per call."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(loops):
            await fn()
        best = min(best, (time.perf_counter_ns() - start) / loops)
    return best


def provider_for(token_endpoint: str) -> ProviderConfig:
    return ProviderConfig(
        name="bench",
        issuer="http://127.0.0.1",
        client_id="bench",
        authorization_endpoint="http://127.0.0.1/authorize",
        token_endpoint=token_endpoint,
    )


class _Holder:
    def __init__(self) -> None:
        self.value = "token"


async def bench_hot_path() -> None:
    print("== Hot path: one call on a valid token (best of 7 x 200k) ==")
    holder = _Holder()

    async def floor() -> str:
        return holder.value

    until = [math.inf]

    async def floor_and_clock() -> str:
        if steady_clock() < until[0]:  # the one reading the hot path may add to the floor
            return holder.value
        return ""

    lock = asyncio.Lock()

    async def locked() -> str:
        async with lock:
            return holder.value

    now = time.time()
    auth = AuthData(access_token="AT", refresh_token="RT", expires_at=now + 86400, last_refresh=now)
    manager = TokenManager(provider_for("http://127.0.0.1:9/token"), InMemoryAuthStorage(auth))
    await manager.get_access_token()  # load the cache

    results = {
        "floor (await trivial coroutine)": await ns_per_call(floor),
        "floor + one steady-clock reading": await ns_per_call(floor_and_clock),
        "vandamme-oauth get_access_token()": await ns_per_call(manager.get_access_token),
        "uncontended asyncio.Lock + return": await ns_per_call(locked),
    }
    await manager.aclose()
    results.update(await _authlib_ns())
    results.update(_msal_ns())
    base = results["floor (await trivial coroutine)"]
    ours = results["vandamme-oauth get_access_token()"]
    for name, ns in results.items():
        print(f"  {name:<44} {ns:9.1f} ns   {ns / base:6.2f}x floor   {ns / ours:7.1f}x ours")


async def _authlib_ns() -> dict[str, float]:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = {
        "access_token": "AT",
        "refresh_token": "RT",
        "token_type": "Bearer",
        "expires_at": int(time.time()) + 86400,
    }
    client = AsyncOAuth2Client(
        client_id="bench", token=token, token_endpoint="http://127.0.0.1:9/token"
    )

    async def check() -> object:
        return await client.ensure_active_token(client.token)

    try:
        return {"Authlib ensure_active_token()": await ns_per_call(check, 50_000)}
    finally:
        await client.aclose()


def _msal_ns() -> dict[str, float]:
    import msal

    base = "https://login.example.test/tenant"

    class Response:
        def __init__(self, body: dict[str, Any]) -> None:
            self.status_code, self.text = 200, json.dumps(body)
            self.headers: dict[str, str] = {}

        def raise_for_status(self) -> None:
            return None

    class OfflineHttp:
        """Answers MSAL's one discovery GET locally; the cached path makes no request."""

        def get(self, url: str, **kwargs: Any) -> Response:
            return Response(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                }
            )

        def post(self, url: str, **kwargs: Any) -> Response:
            raise AssertionError("MSAL tried to refresh in the cached benchmark")

        def close(self) -> None:
            return None

    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    now = int(time.time())
    id_token = f"{part({'alg': 'none'})}.{part({'sub': 'u', 'iss': base, 'aud': 'bench', 'exp': now + 3600, 'iat': now, 'preferred_username': 'u@x'})}.sig"  # noqa: E501
    app = msal.PublicClientApplication("bench", oidc_authority=base, http_client=OfflineHttp())
    app.token_cache.add(
        {
            "client_id": "bench",
            "scope": ["api"],
            "token_endpoint": f"{base}/token",
            "response": {
                "access_token": "AT",
                "refresh_token": "RT",
                "expires_in": 86400,
                "token_type": "Bearer",
                "id_token": id_token,
            },
        }
    )
    account = app.get_accounts()[0]
    loops = 5_000
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(loops):
            app.acquire_token_silent(["api"], account=account)
        best = min(best, (time.perf_counter_ns() - start) / loops)
    return {"MSAL acquire_token_silent() (sync)": best}


class RotatingTokenServer:
    """A loopback token endpoint in its own thread: 20 ms latency, rotating refresh tokens."""

    def __init__(self, latency: float = 0.020, expires_in: float = 3600) -> None:
        self.latency = latency
        self.expires_in = expires_in
        self.requests = 0
        self.reused = 0
        self._valid = "RT0"
        self._serial = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def reset(self, refresh_token: str) -> None:
        self._valid, self.requests, self.reused = refresh_token, 0, 0

    async def _token(self, request: web.Request) -> web.Response:
        self.requests += 1
        form = await request.post()
        await asyncio.sleep(self.latency)
        if form.get("refresh_token") != self._valid:
            self.reused += 1
            return web.json_response({"error": "invalid_grant"}, status=400)
        self._serial += 1
        self._valid = f"RT{self._serial}"
        return web.json_response(
            {
                "access_token": f"AT{self._serial}",
                "refresh_token": self._valid,
                "expires_in": self.expires_in,
            }
        )

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/token", self._token)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> RotatingTokenServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _added(walls: list[float], bases: list[float], round_trip: float) -> str:
    """What the refresh adds, in round trips, with the spread of the no-refresh runs beside
    it: a difference smaller than that spread is said to be noise, not a cost."""
    added = (statistics.median(walls) - statistics.median(bases)) / round_trip
    spread = (max(bases) - min(bases)) / round_trip
    verdict = "  (within the noise)" if abs(added) <= spread else ""
    return f"the refresh adds {added:5.2f} round trips (baseline spread {spread:.2f}){verdict}"


async def _round_trip(provider: ProviderConfig, storage: InMemoryAuthStorage) -> float:
    """Seconds for one forced refresh on a warm manager, best of 5."""
    best = float("inf")
    async with TokenManager(provider, storage) as manager:
        await manager.get_access_token()
        for _ in range(5):
            start = time.perf_counter()
            await manager.refresh()
            best = min(best, time.perf_counter() - start)
    return best


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_refresh_cycles() -> None:
    print(
        "\n== Latency across 20 refresh cycles, 1,000 calls per second "
        "(calls made while the token was valid) =="
    )
    for latency, lifetime in ((0.020, 1.0), (1.0, 3.0)):
        with RotatingTokenServer(latency=latency, expires_in=lifetime) as server:
            provider = provider_for(f"http://127.0.0.1:{server.port}/token")
            server.reset("RT0")
            now = time.time()
            storage = InMemoryAuthStorage(
                AuthData(
                    access_token="AT0",
                    refresh_token="RT0",
                    expires_at=now + lifetime,
                    last_refresh=now,
                )
            )
            valid: list[float] = []
            waited: list[float] = []
            # Tokens living 1 s meet the default rate floor (one refresh a second) exactly:
            # this measures refresh cycles, so the floor is set below the lifetime.
            async with TokenManager(provider, storage, min_refresh_interval=0.1) as manager:
                await manager.get_access_token()
                while server.requests < 20:
                    auth = await manager.get_auth_data()
                    before = time.time()
                    start = time.perf_counter_ns()
                    await manager.get_access_token()
                    took = (time.perf_counter_ns() - start) / 1e6
                    expiry = auth.expires_at or 0.0
                    (valid if before < expiry else waited).append(took)
                    await asyncio.sleep(0.001)
            print(
                f"  endpoint {latency * 1000:5.0f} ms, tokens live {lifetime:g} s: "
                f"{len(valid)} calls on a valid token: p50 {_percentile(valid, 0.5):.3f} ms  "
                f"p99 {_percentile(valid, 0.99):.3f} ms  max {max(valid):.3f} ms;  "
                f"{len(waited)} calls after expiry;  refreshes={server.requests} "
                f"(rejected {server.reused})"
            )


#: What each import-time case imports, and its baseline: the same minus what is measured.
IMPORT_CASES = {
    "import vandamme_oauth": ("import vandamme_oauth", "import httpx"),
    # A proxy's real import: the manager and the file storage (the manager runs in asyncio,
    # which such a program has loaded anyway; the baseline loads it too).
    "from vandamme_oauth import TokenManager, FileSystemAuthStorage": (
        "from vandamme_oauth import TokenManager, FileSystemAuthStorage",
        "import httpx, asyncio",
    ),
}


def _import_seconds(statement: str) -> tuple[float, bool]:
    code = (
        f"import sys, time; t = time.perf_counter(); {statement}; "
        "print(time.perf_counter() - t, 'aiohttp' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), out[1] == "True"


def bench_import() -> None:
    print(
        "\n== Cold import time (median of 15 fresh interpreters, interleaved with the baseline) =="
    )
    for label, (measured, baseline) in IMPORT_CASES.items():
        ours: list[float] = []
        theirs: list[float] = []
        aiohttp_loaded = False
        for _ in range(15):  # one of each in turn: a busy moment weighs on both alike
            seconds, loaded = _import_seconds(measured)
            ours.append(seconds)
            aiohttp_loaded |= loaded
            theirs.append(_import_seconds(baseline)[0])
        extra = statistics.median(o - t for o, t in zip(ours, theirs, strict=True))
        print(
            f"  {label}: {statistics.median(ours) * 1000:6.1f} ms; baseline {baseline!r}: "
            f"{statistics.median(theirs) * 1000:6.1f} ms; difference (median of pairs) "
            f"{extra * 1000:+.1f} ms; aiohttp loaded: {aiohttp_loaded}"
        )


async def bench_hot_path_redis(server_url: str) -> None:
    from vandamme_oauth import RedisAuthStorage

    print("\n== Hot path with a Redis backend (valid token: no network) ==")
    now = time.time()
    auth = AuthData(access_token="AT", refresh_token="RT", expires_at=now + 86400, last_refresh=now)
    memory = TokenManager(provider_for("http://127.0.0.1:9/token"), InMemoryAuthStorage(auth))
    storage = RedisAuthStorage.from_url(server_url, key="bench:hot")
    await storage.write_auth(auth)
    redis_manager = TokenManager(provider_for("http://127.0.0.1:9/token"), storage)
    for manager in (memory, redis_manager):
        await manager.get_access_token()
    mem_ns = await ns_per_call(memory.get_access_token)
    redis_ns = await ns_per_call(redis_manager.get_access_token)
    print(f"  memory backend {mem_ns:7.1f} ns   redis backend {redis_ns:7.1f} ns")
    await storage.aclose()


async def bench_fleet(redis_url: str, home: Path) -> None:

    print("\n== Refresh storm across processes: P processes x 1,000 callers ==")
    with RotatingTokenServer() as server:
        provider = provider_for(f"http://127.0.0.1:{server.port}/token")
        server.reset("RT-rt")
        round_trip = await _round_trip(
            provider,
            InMemoryAuthStorage(AuthData(access_token="AT", refresh_token="RT-rt", expires_at=0.0)),
        )
        server.reset("unused")
        print(f"  one refresh round trip (best of 5, warm client): {round_trip * 1000:.1f} ms")
        for backend in ("file", "redis"):
            for processes in (1, 2, 4, 8):
                walls: dict[str, list[float]] = {"valid": [], "expired": []}
                requests = rejected = errors = 0
                tokens: set[str] = set()
                for run in range(FLEET_REPEATS):
                    for state in ("valid", "expired"):
                        outcome = await _fleet_run(
                            server, provider, redis_url, home, backend, processes, state, run
                        )
                        walls[state].append(outcome[0])
                        if state == "expired":
                            requests = max(requests, server.requests)
                            rejected += server.reused
                            errors += outcome[1]
                            tokens |= outcome[2]
                valid, expired = (statistics.median(walls[k]) for k in ("valid", "expired"))
                print(
                    f"  {backend:<5} P={processes}: no refresh {valid * 1000:6.1f} ms, "
                    f"at expiry {expired * 1000:6.1f} ms (medians of {FLEET_REPEATS}): "
                    f"{_added(walls['expired'], walls['valid'], round_trip)};  "
                    f"most refresh requests in a run={requests} (rejected {rejected})  "
                    f"failed callers={errors}"
                )


async def _fleet_run(
    server: RotatingTokenServer,
    provider: ProviderConfig,
    redis_url: str,
    home: Path,
    backend: str,
    processes: int,
    state: str,
    run: int,
) -> tuple[float, int, set[str]]:
    """One storm of ``processes`` x 1,000 callers; (seconds to the last served, failed
    callers, distinct tokens). ``state`` "valid": the same run with a token that needs no
    refresh, what starting the callers costs on this machine by itself."""
    from vandamme_oauth import FileSystemAuthStorage, RedisAuthStorage

    key = f"bench:fleet:{backend}:{processes}:{state}:{run}"
    name = f"fleet-{processes}-{state}-{run}"
    storage: Any = (
        RedisAuthStorage.from_url(redis_url, key=key)
        if backend == "redis"
        else FileSystemAuthStorage(home, name)
    )
    refresh_token = f"RT-{key}"
    await storage.write_auth(
        AuthData(
            access_token=state,
            refresh_token=refresh_token,
            expires_at=time.time() + (3600 if state == "valid" else -1),
            last_refresh=time.time() - 3600,
        )
    )
    if backend == "redis":
        await storage.aclose()
    server.reset(refresh_token)
    config = {
        "provider": provider.replace(name=name).to_dict(),
        "backend": backend,
        "home": str(home),
        "url": redis_url,
        "key": key,
        "callers": 1000,
    }
    workers = [_start_worker(config) for _ in range(processes)]
    go = time.time()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = [json.loads(w.communicate(timeout=120)[0].strip().splitlines()[-1]) for w in workers]
    errors = sum(len(r["errors"]) for r in results)
    if errors:
        print("   first error:", next(e for r in results for e in r["errors"]))
    wall = max(r["last_done"] for r in results) - go
    return wall, errors, {t for r in results for t in r["tokens"]}


def _start_worker(config: dict[str, Any]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.fleet_worker", json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def bench_hot_path_telemetry() -> None:
    """The hot path without an OpenTelemetry SDK and with one configured (it records
    nothing either way: the numbers must match)."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    print("\n== Hot path, OpenTelemetry API only vs an SDK configured (valid token) ==")
    now = time.time()
    auth = AuthData(access_token="AT", refresh_token="RT", expires_at=now + 86400, last_refresh=now)
    manager = TokenManager(provider_for("http://127.0.0.1:9/token"), InMemoryAuthStorage(auth))
    await manager.get_access_token()
    without = await ns_per_call(manager.get_access_token)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    trace.set_tracer_provider(TracerProvider())
    with_sdk = await ns_per_call(manager.get_access_token)
    print(f"  without an SDK {without:7.1f} ns   with the SDK {with_sdk:7.1f} ns per call")
    await manager.aclose()


async def main() -> None:
    from harness.redis_server import RedisServer

    await bench_hot_path()
    await bench_hot_path_telemetry()
    await bench_refresh_cycles()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            await bench_hot_path_redis(server.url)
            await bench_fleet(server.url, Path(tmp) / "home")
        finally:
            server.stop()
    bench_import()
    await many_logins.main()


if __name__ == "__main__":
    asyncio.run(main())
