"""OpenTelemetry metrics and traces, through ``opentelemetry-api`` (the ``otel`` extra).

Without the extra nothing is imported and nothing is recorded; with it but no SDK configured,
the API's no-op instruments cost next to nothing. Nothing here runs on the hot path: only
refreshes, logins, storage locks and their failures are recorded. One meter and one tracer,
both named ``vandamme_oauth`` with the package's version. The instruments (names, units and
attributes follow the semantic-convention naming rules; the README's "Telemetry" section
has the table):

- ``vandamme_oauth.refreshes`` (counter, ``{refresh}``): ``vandamme_oauth.outcome`` (success,
  adopted, transient_failure, permanent_failure, storage_failure) and ``error.type``;
- ``vandamme_oauth.refresh.duration`` (histogram, s), ``vandamme_oauth.refresh.wait.duration``
  (histogram, s: once per refresh that callers waited on, from the first one's arrival),
  ``vandamme_oauth.refresh.waiters`` (counter, ``{caller}``: how many waited),
  ``vandamme_oauth.token.remaining_lifetime`` (histogram, s, when a refresh starts);
- ``vandamme_oauth.logins`` (counter, ``{login}``) and ``vandamme_oauth.login.duration``
  (histogram, s): ``vandamme_oauth.login.method`` and the outcome;
- ``vandamme_oauth.storage.lock.wait.duration`` (histogram, s) and
  ``vandamme_oauth.storage.errors`` (counter, ``{error}``): ``vandamme_oauth.storage.backend``;
- ``vandamme_oauth.http.retries`` (counter, ``{retry}``), from stamina's retry hooks;
- ``vandamme_oauth.managers`` (observable up-down counter, ``{manager}``) by
  ``vandamme_oauth.manager.state``.

Every instrument also carries ``vandamme_oauth.dialect`` and ``server.address`` (the token
endpoint's host) where a provider is known. No attribute ever holds a token, code, state,
verifier, secret, account id, e-mail or login name (a login name may be a user's).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._exceptions import HttpError, NetworkError, OAuthError, StorageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ._provider import ProviderConfig

__all__ = [
    "enabled",
    "error_type",
    "instruments",
    "provider_attributes",
    "span",
    "track_manager",
]

_NAME = "vandamme_oauth"
#: Managers alive in this process, for the observable gauge (weak: never keeps one alive).
_MANAGERS: weakref.WeakSet[Any] = weakref.WeakSet()
#: Set while one of our requests runs its retries: stamina's hook counts only those.
_IN_REQUEST: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "vandamme_oauth_request", default=None
)


@functools.cache
def enabled() -> bool:
    """Whether ``opentelemetry-api`` is installed (looked up once, imported only if so)."""
    return importlib.util.find_spec("opentelemetry") is not None


def _version() -> str:
    from importlib.metadata import version

    return version("vandamme-oauth")


class Instruments:
    """The meter's instruments and the tracer, made once on first use."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace

        meter = metrics.get_meter(_NAME, _version())
        self.tracer = trace.get_tracer(_NAME, _version())
        self.refreshes = meter.create_counter(
            "vandamme_oauth.refreshes", unit="{refresh}", description="Token refreshes."
        )
        self.refresh_duration = meter.create_histogram(
            "vandamme_oauth.refresh.duration",
            unit="s",
            description="How long a refresh took, lock wait and storage included.",
        )
        self.wait_duration = meter.create_histogram(
            "vandamme_oauth.refresh.wait.duration",
            unit="s",
            description=(
                "How long callers without a valid token waited for a refresh: from the first "
                "caller's arrival to the refresh's end, once per refresh they waited on."
            ),
        )
        self.waiters = meter.create_counter(
            "vandamme_oauth.refresh.waiters",
            unit="{caller}",
            description="Callers that waited for a refresh (those that gave up included).",
        )
        self.remaining_lifetime = meter.create_histogram(
            "vandamme_oauth.token.remaining_lifetime",
            unit="s",
            description="Seconds the access token had left when its refresh started.",
        )
        self.logins = meter.create_counter(
            "vandamme_oauth.logins", unit="{login}", description="Logins, by method and outcome."
        )
        self.login_duration = meter.create_histogram(
            "vandamme_oauth.login.duration", unit="s", description="How long a login took."
        )
        self.lock_wait = meter.create_histogram(
            "vandamme_oauth.storage.lock.wait.duration",
            unit="s",
            description="How long a refresh waited for the storage lock.",
        )
        self.storage_errors = meter.create_counter(
            "vandamme_oauth.storage.errors", unit="{error}", description="Storage failures."
        )
        self.retries = meter.create_counter(
            "vandamme_oauth.http.retries",
            unit="{retry}",
            description="HTTP requests retried (stamina's retry hook).",
        )
        meter.create_observable_up_down_counter(
            "vandamme_oauth.managers",
            callbacks=[_observe_managers],
            unit="{manager}",
            description="Token managers alive in this process, by state.",
        )
        _hook_stamina_retries()


def _observe_managers(options: Any) -> Iterator[Any]:
    from opentelemetry.metrics import Observation

    states = Counter(manager.state.name.lower() for manager in list(_MANAGERS))
    for state, count in sorted(states.items()):
        yield Observation(count, {"vandamme_oauth.manager.state": state})


def _hook_stamina_retries() -> None:
    """Count our retries through stamina's own instrumentation hooks (added to the ones
    configured, never replacing them); retries of other code are not ours to count."""
    import stamina.instrumentation as si

    def on_retry(details: si.RetryDetails) -> None:
        attributes = _IN_REQUEST.get()
        if attributes is not None:
            instruments().retries.add(
                1, {**attributes, "error.type": error_type(details.caused_by)}
            )

    si.set_on_retry_hooks([*si.get_on_retry_hooks(), on_retry])


@functools.cache
def instruments() -> Instruments:
    """The instruments (call only when `enabled()`)."""
    return Instruments()


def provider_attributes(provider: ProviderConfig) -> dict[str, str]:
    """The provider's attributes: its dialect and its token endpoint's host."""
    return {
        "vandamme_oauth.dialect": provider.dialect.name,
        "server.address": urlsplit(provider.token_endpoint).hostname or "",
    }


def error_type(exc: BaseException) -> str:
    """A bounded error code: the OAuth ``error`` (from a server's fixed vocabulary, cut to
    40 characters), ``http_<status>``, ``network``, ``storage``, or the class name."""
    if isinstance(exc, NetworkError):
        return "network"
    if isinstance(exc, StorageError):
        return "storage"
    if isinstance(exc, OAuthError) and exc.error and exc.error.replace("_", "").isalnum():
        return exc.error[:40]
    if isinstance(exc, HttpError) and exc.status_code is not None:
        return f"http_{exc.status_code}"
    return type(exc).__name__


@contextlib.contextmanager
def span(name: str, attributes: dict[str, str]) -> Iterator[Any]:
    """A span named ``name`` (a no-op without the extra); on an error its status says the
    error's class, and ``error.type`` its bounded code."""
    if not enabled():
        yield None
        return
    from opentelemetry.trace import Status, StatusCode

    with instruments().tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                current.set_attribute("error.type", error_type(exc))
            raise


@contextlib.contextmanager
def request_retries(url: str, method: str) -> Iterator[None]:
    """Mark the retries stamina makes meanwhile as ours (a request to ``url``)."""
    if not enabled():
        yield
        return
    attributes = {"server.address": urlsplit(url).hostname or "", "http.request.method": method}
    token = _IN_REQUEST.set(attributes)
    try:
        yield
    finally:
        _IN_REQUEST.reset(token)


def track_manager(manager: Any) -> None:
    """Count ``manager`` in the managers-by-state gauge while it lives."""
    if enabled():
        instruments()  # the gauge exists from the first manager on
        _MANAGERS.add(manager)


@contextlib.contextmanager
def login(method: str, provider: ProviderConfig) -> Iterator[None]:
    """Count a login by ``method`` (browser, paste, device, web, resource) and its outcome,
    record its duration, and trace it as a ``vandamme_oauth.login`` span."""
    if not enabled():
        yield
        return
    import time

    attributes = {**provider_attributes(provider), "vandamme_oauth.login.method": method}
    started = time.monotonic()
    outcome: dict[str, str] = {"vandamme_oauth.outcome": "success"}
    try:
        with span("vandamme_oauth.login", attributes):
            yield
    except BaseException as exc:
        outcome = {"vandamme_oauth.outcome": "failure", "error.type": error_type(exc)}
        raise
    finally:
        tools = instruments()
        tools.logins.add(1, {**attributes, **outcome})
        tools.login_duration.record(time.monotonic() - started, {**attributes, **outcome})
