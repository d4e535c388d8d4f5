"""Telemetry with the real OpenTelemetry SDK (in-memory reader and exporter): what each
instrument records for each kind of refresh, logins, storage failures and retries, how the
spans nest, that no secret reaches any attribute, and that without the extra nothing is
imported."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.support.interpreters import python_without
from tests.support.managers import login, no_watch_manager, settled
from tests.test_device import Sleeps, device_answer
from tests.test_protocol import GENERIC
from vandamme_oauth import (
    AuthData,
    DeviceFlow,
    InMemoryAuthStorage,
    ProviderConfig,
    ReauthenticationRequired,
    StorageError,
    TokenClient,
    TokenEndpointError,
    TokenManager,
)

if TYPE_CHECKING:
    import respx

    from tests.conftest import FakeClock
    from tests.support.managers import FakeTokenEndpoint

SECRETS = ("AT0", "RT0", "AT1", "RT1", "acct-secret", "alice@example.com", "generic")


class Recorded:
    """The SDK's in-memory reader and exporter, installed once for the process."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))
        self.before: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}

    def points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
        """(instrument, attributes) -> a counter's sum or a histogram's count."""
        found: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                if scope.scope.name != "vandamme_oauth":
                    continue
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = point.value if isinstance(point, NumberDataPoint) else point.count
                        key = (metric.name, frozenset(dict(point.attributes or {}).items()))
                        found[key] = float(value)
        return found

    def start(self) -> None:
        self.before = self.points()
        self.spans.clear()

    def delta(self, name: str, **attributes: str) -> float:
        """How much ``name`` grew since start() at points carrying ``attributes``."""
        wanted = set(attributes.items())
        now = self.points()
        return sum(
            value - self.before.get(key, 0.0)
            for key, value in now.items()
            if key[0] == name and wanted <= set(key[1])
        )

    def total(self, name: str) -> float:
        """The sum of every value the histogram ``name`` recorded in this process."""
        found = 0.0
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        found += point.sum
        return found

    def attribute_sets(self, name: str) -> list[dict[str, Any]]:
        """The attributes of every point of ``name``."""
        return [dict(key[1]) for key in self.points() if key[0] == name]

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def every_attribute(self) -> list[str]:
        values = [str(v) for key in self.points() for _, v in key[1]]
        for span in self.spans.get_finished_spans():
            values += [str(v) for v in dict(span.attributes or {}).values()]
            for event in span.events:
                values += [str(v) for v in dict(event.attributes or {}).values()]
            values.append(span.status.description or "")
        return values


_RECORDED: list[Recorded] = []


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    if not _RECORDED:
        _RECORDED.append(Recorded())
    _RECORDED[0].start()
    yield _RECORDED[0]
    assert not [v for v in _RECORDED[0].every_attribute() for s in SECRETS if s in v]


def expired(clock: FakeClock) -> AuthData:
    return login(clock, expires_in=-1).replace(account_id="acct-secret", email="alice@example.com")


BASE = {"vandamme_oauth.dialect": "standard", "server.address": "idp.example"}
WAIT = "vandamme_oauth.refresh.wait.duration"
WAITERS = "vandamme_oauth.refresh.waiters"


async def test_a_successful_refresh(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Counted as success with its duration, the caller's wait, the remaining lifetime and
    the lock wait; one refresh span with the lock event and its outcome."""
    async with no_watch_manager(InMemoryAuthStorage(expired(clock)), clock, http) as m:
        assert await m.get_access_token() == "AT1"
    outcome = {**BASE, "vandamme_oauth.outcome": "success"}
    assert recorded.delta("vandamme_oauth.refreshes", **outcome) == 1
    assert recorded.delta("vandamme_oauth.refresh.duration", **outcome) == 1
    assert recorded.delta(WAIT, **BASE) == 1
    assert recorded.delta(WAITERS, **BASE) == 1
    assert recorded.delta("vandamme_oauth.token.remaining_lifetime", **BASE) == 1
    lock = {"vandamme_oauth.storage.backend": "inmemory"}
    assert recorded.delta("vandamme_oauth.storage.lock.wait.duration", **lock) == 1
    (span,) = recorded.finished("vandamme_oauth.refresh")
    assert dict(span.attributes or {}) == outcome
    assert [e.name for e in span.events] == ["storage.lock.acquired"]
    assert span.status.status_code is StatusCode.UNSET


async def test_durations_are_measured_from_the_start_of_what_they_time(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """The refresh's duration and the lock wait each lie between zero
    and the time the whole call took, seen from outside; the lock event carries its wait;
    a success carries no error type and counts no storage error."""
    timed = ("vandamme_oauth.refresh.duration", "vandamme_oauth.storage.lock.wait.duration")
    before = {name: recorded.total(name) for name in timed}
    outside = time.monotonic()
    async with no_watch_manager(InMemoryAuthStorage(expired(clock)), clock, http) as m:
        assert await m.get_access_token() == "AT1"
    took = time.monotonic() - outside
    for name in timed:
        assert recorded.delta(name) == 1, name
        assert 0 <= recorded.total(name) - before[name] <= took, name
    (span,) = recorded.finished("vandamme_oauth.refresh")
    (event,) = span.events
    waited = dict(event.attributes or {})["vandamme_oauth.lock.wait"]
    assert isinstance(waited, float)
    assert 0 <= waited <= took
    for attributes in recorded.attribute_sets("vandamme_oauth.refreshes"):
        if attributes["vandamme_oauth.outcome"] == "success":
            assert "error.type" not in attributes
    assert recorded.delta("vandamme_oauth.storage.errors") == 0


async def held_refresh(
    m: TokenManager, endpoint: FakeTokenEndpoint, *, callers: int
) -> list[asyncio.Task[str]]:
    """``callers`` calls waiting on one refresh, which the endpoint holds until its gate
    is set."""
    endpoint.arrived.clear()
    endpoint.gate.clear()
    waiting = [asyncio.create_task(m.get_access_token()) for _ in range(callers)]
    await endpoint.arrived.wait()
    return waiting


@pytest.mark.parametrize(("later", "waited"), [(5.0, 15.0), (-30.0, 0.0)])
async def test_a_refresh_s_wait_is_recorded_once_when_it_ends_and_every_caller_counted(
    recorded: Recorded,
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    later: float,
    waited: float,
) -> None:
    """Two callers start a refresh; 10 s later two more join it in flight and one of them
    leaves (cancelled); the refresh ends ``later`` s after that. Nothing is recorded before
    it ends; then one wait, from the first caller's arrival (none below zero when the clock
    was stepped back), and four callers."""
    before = recorded.total(WAIT)
    async with no_watch_manager(InMemoryAuthStorage(expired(clock)), clock, http) as m:
        staying = await held_refresh(m, endpoint, callers=2)
        clock.advance(10)
        late = asyncio.ensure_future(m.get_access_token())
        leaving = asyncio.ensure_future(m.get_access_token())
        await asyncio.sleep(0)  # one turn: both join the refresh in flight
        leaving.cancel()
        await asyncio.wait([leaving])
        clock.advance(later)
        assert recorded.delta(WAIT) == recorded.delta(WAITERS) == 0
        endpoint.gate.set()
        assert await asyncio.gather(*staying, late) == ["AT1"] * 3
    assert recorded.delta(WAIT, **BASE) == 1
    assert recorded.delta(WAITERS, **BASE) == 4
    assert recorded.total(WAIT) - before == waited


async def test_a_refresh_ahead_that_no_caller_waited_on_records_no_wait(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """On a warm manager, 100 s before expiry a call gets the current token and starts a
    refresh ahead: the refresh is counted, but no wait and no waiter."""
    async with no_watch_manager(InMemoryAuthStorage(login(clock)), clock, http) as m:
        assert await m.get_access_token() == "AT0"  # the first call waits for storage
        recorded.start()
        clock.advance(3600 - 100)
        assert await m.get_access_token() == "AT0"
        await settled(m)
        assert await m.get_access_token() == "AT1"
    assert recorded.delta("vandamme_oauth.refreshes", **BASE) == 1
    assert recorded.delta(WAIT) == recorded.delta(WAITERS) == 0


async def test_each_refresh_records_its_own_waiters(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """Two refreshes in a row, three callers on the first and one on the second: the
    second's count and wait start afresh."""
    before = recorded.total(WAIT)
    async with no_watch_manager(InMemoryAuthStorage(expired(clock)), clock, http) as m:
        first = await held_refresh(m, endpoint, callers=3)
        clock.advance(7)
        endpoint.gate.set()
        assert await asyncio.gather(*first) == ["AT1"] * 3
        assert recorded.delta(WAITERS, **BASE) == 3
        clock.advance(3600)
        (second,) = await held_refresh(m, endpoint, callers=1)
        clock.advance(2)
        endpoint.gate.set()
        assert await second == "AT2"
    assert recorded.delta(WAIT, **BASE) == 2
    assert recorded.delta(WAITERS, **BASE) == 4
    assert recorded.total(WAIT) - before == 9


@pytest.mark.parametrize(("before_expiry", "remaining"), [(100.0, 100.0), (-5.0, 0.0)])
async def test_the_remaining_lifetime_is_what_was_left_when_the_refresh_started(
    recorded: Recorded,
    clock: FakeClock,
    http: httpx.AsyncClient,
    before_expiry: float,
    remaining: float,
) -> None:
    """A refresh ahead 100 s before expiry records 100 s; one after expiry records 0."""
    stored = login(clock, expires_in=3600)
    async with no_watch_manager(InMemoryAuthStorage(stored), clock, http) as m:
        assert await m.get_access_token() == "AT0"
        before = recorded.total(REMAINING)
        clock.advance(3600 - before_expiry)
        await m.refresh()
    assert recorded.total(REMAINING) - before == remaining


REMAINING = "vandamme_oauth.token.remaining_lifetime"


async def test_an_adopted_refresh(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """Another process stored a new login while we waited for the lock: adopted, no
    request."""

    class Elsewhere(InMemoryAuthStorage):
        async def read_auth(self) -> AuthData | None:
            stored = await super().read_auth()
            if stored is not None and stored.access_token == "AT0" and self.reads:
                await self.write_auth(login(clock, token="AT-THEIRS").replace(refresh_token="R2"))
            self.reads += 1
            return await super().read_auth()

        reads = 0

    async with no_watch_manager(Elsewhere(expired(clock)), clock, http) as m:
        assert await m.get_access_token() == "AT-THEIRS"
    assert recorded.delta("vandamme_oauth.refreshes", **{"vandamme_oauth.outcome": "adopted"}) == 1
    assert recorded.delta("vandamme_oauth.refreshes", **{"vandamme_oauth.outcome": "success"}) == 0


async def test_a_rejected_refresh_token_with_a_newer_login_stored_is_adopted(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    """invalid_grant, because another process refreshed meanwhile: the stored login is
    served and the refresh counts as adopted, not as a permanent failure."""
    storage = InMemoryAuthStorage(expired(clock))
    endpoint.fail = (400, {"error": "invalid_grant"})
    async with no_watch_manager(storage, clock, http) as m:
        endpoint.gate.clear()
        call = asyncio.ensure_future(m.get_access_token())
        await endpoint.arrived.wait()
        await storage.write_auth(login(clock, token="AT-THEIRS").replace(refresh_token="R2"))
        endpoint.gate.set()
        assert await call == "AT-THEIRS"
    adopted = {**BASE, "vandamme_oauth.outcome": "adopted"}
    assert recorded.delta("vandamme_oauth.refreshes", **adopted) == 1
    failed = {"vandamme_oauth.outcome": "permanent_failure"}
    assert recorded.delta("vandamme_oauth.refreshes", **failed) == 0


@pytest.mark.parametrize(
    ("answer", "outcome", "code", "error"),
    [
        (
            (503, {"error": "temporarily_unavailable"}),
            "transient_failure",
            "temporarily_unavailable",
            TokenEndpointError,
        ),
        ((502, {}), "transient_failure", "http_502", TokenEndpointError),
        (
            (400, {"error": "invalid_grant"}),
            "permanent_failure",
            "invalid_grant",
            ReauthenticationRequired,
        ),
        (
            (400, {"error": "invalid_client"}),
            "permanent_failure",
            "invalid_client",
            TokenEndpointError,
        ),
    ],
)
async def test_failed_refreshes_are_counted_by_outcome_and_code(
    recorded: Recorded,
    clock: FakeClock,
    http: httpx.AsyncClient,
    endpoint: FakeTokenEndpoint,
    answer: tuple[int, dict[str, str]],
    outcome: str,
    code: str,
    error: type[Exception],
) -> None:
    """A failure's outcome and bounded error code; the span's status names the error."""
    endpoint.fail = answer
    async with no_watch_manager(InMemoryAuthStorage(expired(clock)), clock, http) as m:
        with pytest.raises(error):
            await m.get_access_token()
    labels = {**BASE, "vandamme_oauth.outcome": outcome, "error.type": code}
    assert recorded.delta("vandamme_oauth.refreshes", **labels) == 1
    (span,) = recorded.finished("vandamme_oauth.refresh")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == error.__name__
    assert dict(span.attributes or {})["vandamme_oauth.outcome"] == outcome


async def test_a_storage_failure(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """A storage that cannot be read: a storage_failure refresh and a storage error."""

    class Down(InMemoryAuthStorage):
        async def read_auth(self) -> AuthData | None:
            raise StorageError("down")

    async with no_watch_manager(Down(), clock, http) as m:
        with pytest.raises(StorageError):
            await m.get_access_token()
    labels = {"vandamme_oauth.outcome": "storage_failure", "error.type": "storage"}
    assert recorded.delta("vandamme_oauth.refreshes", **labels) == 1
    down = {"vandamme_oauth.storage.backend": "down", "error.type": "storage"}
    assert recorded.delta("vandamme_oauth.storage.errors", **down) == 1


async def test_managers_by_state(
    recorded: Recorded, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """The gauge counts live managers by their state."""
    fresh = no_watch_manager(InMemoryAuthStorage(login(clock)), clock, http)
    empty = no_watch_manager(InMemoryAuthStorage(), clock, http)
    await fresh.get_access_token()
    points = recorded.points()
    assert (
        points[("vandamme_oauth.managers", frozenset({("vandamme_oauth.manager.state", "fresh")}))]
        >= 1
    )
    assert (
        points[("vandamme_oauth.managers", frozenset({("vandamme_oauth.manager.state", "empty")}))]
        >= 1
    )
    await fresh.aclose()
    await empty.aclose()


async def test_a_device_login_is_counted_and_traced(
    recorded: Recorded, respx_mock: respx.MockRouter
) -> None:
    """A device login: counted by method and outcome, its poll loop a child span of the
    login's."""
    provider = GENERIC.replace(device_authorization_endpoint="https://idp.example/device")
    respx_mock.post("https://idp.example/device").respond(json=device_answer())
    respx_mock.post(provider.token_endpoint).respond(
        json={"access_token": "AT1", "refresh_token": "RT1", "expires_in": 60}
    )
    flow = DeviceFlow(provider, InMemoryAuthStorage(), sleep=Sleeps())
    await flow.authenticate()
    await flow.aclose()
    labels = {"vandamme_oauth.login.method": "device", "vandamme_oauth.outcome": "success"}
    assert recorded.delta("vandamme_oauth.logins", **labels) == 1
    assert recorded.delta("vandamme_oauth.login.duration", **labels) == 1
    (outer,) = recorded.finished("vandamme_oauth.login")
    (poll,) = recorded.finished("vandamme_oauth.device_poll")
    assert poll.parent is not None
    assert poll.parent.span_id == outer.context.span_id


async def test_retries_are_counted_through_staminas_hook(
    recorded: Recorded, respx_mock: respx.MockRouter
) -> None:
    """Discovery answered 503 then 200: one retry counted for the issuer's host."""
    issuer = "https://retry.example"
    route = respx_mock.get(f"{issuer}/.well-known/oauth-authorization-server")
    route.side_effect = [
        httpx.Response(503),
        httpx.Response(
            200,
            json={
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "code_challenge_methods_supported": ["S256"],
            },
        ),
    ]
    await ProviderConfig.discover(issuer, client_id="c")
    assert recorded.delta("vandamme_oauth.http.retries", **{"server.address": "retry.example"}) == 1


def test_without_the_extra_nothing_is_imported(tmp_path: Any) -> None:
    """An interpreter without opentelemetry: a refresh works, nothing is reported on the
    side, and sys.modules holds no opentelemetry."""
    code = (
        "import asyncio, sys, time, httpx\n"
        "from vandamme_oauth import AuthData, InMemoryAuthStorage, ProviderConfig, TokenManager\n"
        "provider = ProviderConfig(name='p', issuer='https://idp.example', client_id='c',"
        " authorization_endpoint='https://idp.example/a', token_endpoint='https://idp.example/t')\n"
        "def answer(request):\n"
        "    return httpx.Response(200, json={'access_token': 'NEW', 'expires_in': 60})\n"
        "async def main():\n"
        "    old = AuthData(access_token='OLD', refresh_token='R', expires_at=time.time() - 1)\n"
        "    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:\n"
        "        storage = InMemoryAuthStorage(old)\n"
        "        async with TokenManager(provider, storage, http_client=http) as m:\n"
        "            print(await m.get_access_token())\n"
        "asyncio.run(main())\n"
        "print(any(name.startswith('opentelemetry') for name in sys.modules))\n"
    )
    result = subprocess.run(
        [*python_without(tmp_path, "opentelemetry"), code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["NEW", "False"]
    assert result.stderr == ""  # nothing failed on the side (in a done-callback, say)
    assert sys.modules.get("opentelemetry") is not None  # here, the extra is installed


async def test_a_code_exchange_and_a_revocation_are_traced(
    recorded: Recorded, respx_mock: respx.MockRouter
) -> None:
    """One span each, named for what it does, carrying the provider's attributes."""
    respx_mock.post(GENERIC.token_endpoint).respond(
        json={"access_token": "AT1", "refresh_token": "RT1", "expires_in": 60}
    )
    respx_mock.post(GENERIC.revocation_endpoint or "").respond(200)
    async with TokenClient(GENERIC) as client:
        login = await client.exchange_code(
            code="C-code", redirect_uri="http://127.0.0.1:1/cb", verifier="V" * 43
        )
        assert await client.revoke(login)
    (exchange,) = recorded.finished("vandamme_oauth.code_exchange")
    (revocation,) = recorded.finished("vandamme_oauth.revoke")
    for span in (exchange, revocation):
        assert BASE.items() <= dict(span.attributes or {}).items()
