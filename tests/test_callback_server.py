"""The loopback callback server on real sockets: paths, single use, /cancel and busy ports."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

import httpx
import pytest
from aiohttp import web

from tests.integration.test_remote_login import ipv6_loopback
from tests.support.off_loop import OffLoopGuard
from vandamme_oauth import (
    AuthData,
    AuthorizationError,
    CallbackServerError,
    CallbackTimeoutError,
    OAuthFlowError,
    StateMismatchError,
    _http_client,
)
from vandamme_oauth._callback_server import CallbackServer, Refused
from vandamme_oauth._loopback_guard import GuardedSite

if TYPE_CHECKING:
    from collections.abc import Mapping

AUTH = AuthData(access_token="AT")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def send_callback(client: httpx.AsyncClient, port: int) -> asyncio.Task[httpx.Response]:
    """Deliver the matching callback in the background: its answer waits on the judgement."""
    return asyncio.create_task(
        client.get(f"http://127.0.0.1:{port}/auth/callback", params={"state": "s", "code": "c"})
    )


async def accept(params: Mapping[str, str]) -> AuthData:
    if params.get("state") != "s":
        raise StateMismatchError("wrong state")
    if "error" in params:
        raise AuthorizationError(error=params["error"])
    return AUTH


async def test_form_post_callback_is_accepted() -> None:
    """response_mode=form_post: the parameters arrive as a POST form."""
    async with CallbackServer(accept, success_grace=0) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.post(
                f"http://127.0.0.1:{server.port}/auth/callback", data={"state": "s", "code": "c"}
            )
        assert answer.status_code == 302
        assert answer.headers["Location"].startswith("/success?t=")
        assert await server.wait(5) is AUTH


async def test_a_finished_login_refuses_further_callbacks() -> None:
    """After the first judged callback, the state is spent: later ones get 400."""
    async with CallbackServer(accept, success_grace=0) as server:
        url = f"http://127.0.0.1:{server.port}/auth/callback"
        async with httpx.AsyncClient(trust_env=False) as client:
            first = await client.get(url, params={"state": "s", "error": "access_denied"})
            second = await client.get(url, params={"state": "s", "code": "c"})
        assert first.status_code == 400
        assert second.status_code == 400
        assert "already finished" in second.text
        with pytest.raises(AuthorizationError):
            await server.wait(5)


async def test_cancel_ends_the_wait() -> None:
    """GET /cancel ends a pending login with OAuthFlowError."""
    async with CallbackServer(accept) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/cancel")
        assert answer.status_code == 200
        with pytest.raises(OAuthFlowError, match="cancelled"):
            await server.wait(5)


async def test_busy_port_is_freed_by_cancelling_our_stale_login() -> None:
    """A stale login of ours on the first port is asked to /cancel; we then take that port."""
    first, second = free_port(), free_port()
    stale = CallbackServer(accept, ports=(first,))
    await stale.start()

    async def stale_owner() -> None:
        try:
            await stale.wait(30)
        except OAuthFlowError:
            pass
        finally:
            await stale.close()

    owner = asyncio.create_task(stale_owner())
    async with CallbackServer(accept, ports=(first, second), cancel_busy_port=True) as server:
        assert server.port == first
    await owner


async def test_the_cancel_handshake_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Proxy variables in the environment (a corporate proxy, here a dead one) do not
    reroute the loopback /cancel request: the stale login is still reached and stopped."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    await test_busy_port_is_freed_by_cancelling_our_stale_login()


@pytest.mark.parametrize("cancel_busy_port", [True, False], ids=["asked", "not-asked"])
async def test_busy_port_of_a_foreign_program_falls_back_to_the_next(
    cancel_busy_port: bool,
) -> None:
    """A foreign listener on the first port: we use the second. It is sent one /cancel
    (which it ignores) only when ``cancel_busy_port`` asks for it; otherwise nothing (it
    may not be a login at all)."""
    first, second = free_port(), free_port()
    cancels: list[str] = []

    async def foreign(request: web.Request) -> web.Response:
        cancels.append(request.path)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/cancel", foreign)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", first).start()
    try:
        async with CallbackServer(
            accept, ports=(first, second), cancel_busy_port=cancel_busy_port
        ) as server:
            assert server.port == second
        assert cancels == (["/cancel"] if cancel_busy_port else [])
    finally:
        await runner.cleanup()


async def test_all_ports_busy_names_them() -> None:
    """When every allowed port is taken, the error names them and how to find the owner."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        b.bind(("127.0.0.1", 0))
        b.listen()
        ports = (a.getsockname()[1], b.getsockname()[1])
        with pytest.raises(CallbackServerError) as caught:
            async with CallbackServer(accept, ports=ports):
                pass  # pragma: no cover
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1 port {ports[0]} and {ports[1]}: in use by another "
        f"program. Finish or stop the other login (e.g. 'lsof -i :{ports[0]}' shows who)"
    )


async def test_success_page_and_security_headers() -> None:
    """The success page is static, uncacheable and sends no referrer."""
    async with CallbackServer(accept, success_grace=5) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            final = await client.get(
                f"http://127.0.0.1:{server.port}/auth/callback",
                params={"state": "s", "code": "c"},
                follow_redirects=True,
            )
        assert await server.wait(5) is AUTH
    assert final.status_code == 200
    assert "Signed in" in final.text
    for header, value in {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "Connection": "close",
        "X-Frame-Options": "DENY",
    }.items():
        assert final.headers[header] == value
    assert "default-src 'none'" in final.headers["Content-Security-Policy"]


async def test_falls_back_to_the_next_loopback_address_that_can_be_bound() -> None:
    """RFC 8252 7.3: don't assume an IP version; an address that cannot be bound (192.0.2.1
    stands in for a missing IPv4 loopback) is skipped for the next one (127.0.0.2 stands in
    for ::1, so this runs on every machine)."""
    async with CallbackServer(accept, hosts=("192.0.2.1", "127.0.0.2"), success_grace=0) as server:
        assert server.host == "127.0.0.2"
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(
                f"http://127.0.0.2:{server.port}/auth/callback", params={"state": "s", "code": "c"}
            )
        assert answer.status_code == 302
        assert await server.wait(5) is AUTH


async def test_no_bindable_loopback_is_a_clear_error() -> None:
    """When no address can be bound, the error lists what was tried."""
    with pytest.raises(CallbackServerError) as caught:
        async with CallbackServer(accept, hosts=("192.0.2.1", "198.51.100.1")):
            pass  # pragma: no cover
    assert str(caught.value) == (
        "no loopback address can be bound here (tried 192.0.2.1, 198.51.100.1)"
    )


async def test_an_ipv6_loopback_is_probed_as_ipv6() -> None:
    """Where IPv6 loopback exists, hosts=("::1",) serves on it (probed with an IPv6
    socket); where it does not, the error names it (the test runs either way)."""
    if not ipv6_loopback():
        with pytest.raises(CallbackServerError, match=r"tried ::1"):
            async with CallbackServer(accept, hosts=("::1",)):
                pass  # pragma: no cover
        return
    async with CallbackServer(accept, hosts=("::1",), success_grace=0) as server:
        assert server.host == "::1"


async def test_a_stray_success_request_neither_ends_nor_spoils_the_wait() -> None:
    """GET /success before the callback (a prefetch, another tab) gets a 404 and leaves the
    grace for the real browser: that one, sent with the ticket, gets the success page."""
    async with CallbackServer(accept, success_grace=30) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(trust_env=False) as client:
            stray = await client.get(f"{base}/success")
            assert stray.status_code == 404
            waiting = asyncio.create_task(server.wait(5))
            callback = await client.get(f"{base}/auth/callback", params={"state": "s", "code": "c"})
            assert callback.status_code == 302
            forged = await client.get(f"{base}/success", params={"t": "guess"})
            assert forged.status_code == 404
            bare = await client.get(f"{base}/success")
            assert bare.status_code == 404
            assert not waiting.done()  # still lingering for the real browser
            final = await client.get(f"{base}{callback.headers['Location']}")
        assert final.status_code == 200
        assert "Signed in" in final.text
        assert await waiting is AUTH


async def test_login_timeout_during_the_exchange_reports_its_true_outcome() -> None:
    """The login timeout runs out while an accepted callback's exchange is in flight: the
    wait goes on for the exchange and returns the stored login, not a timeout."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_exchange(params: Mapping[str, str]) -> AuthData:
        arrived.set()
        await release.wait()
        return AUTH

    async with (
        CallbackServer(slow_exchange, success_grace=0) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        callback = send_callback(client, server.port)
        await arrived.wait()
        waiting = asyncio.create_task(server.wait(0.01))
        await asyncio.wait({waiting}, timeout=0.1)  # well past the login timeout
        assert not waiting.done()
        release.set()
        assert await waiting is AUTH
        assert (await callback).status_code == 302


async def test_a_hung_exchange_is_bounded_by_exchange_timeout() -> None:
    """An exchange that never finishes ends the login with CallbackTimeoutError naming the
    exchange, after exchange_timeout."""
    arrived = asyncio.Event()

    async def hung(params: Mapping[str, str]) -> AuthData:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with (
        CallbackServer(hung, success_grace=0, exchange_timeout=0.05) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        callback = send_callback(client, server.port)
        await arrived.wait()
        with pytest.raises(CallbackTimeoutError) as caught:
            await server.wait(0.01)
        assert str(caught.value) == (
            "the code exchange did not finish within 0.05 s; "
            "is the provider's token endpoint reachable? Start the login again"
        )
    with contextlib.suppress(httpx.HTTPError):
        await callback


async def test_cancelling_the_login_during_the_exchange_ends_it_at_once() -> None:
    """A login cancelled while its exchange hangs closes the server promptly (the judgement
    is cancelled; aiohttp's one-minute shutdown wait does not apply)."""
    arrived = asyncio.Event()
    cancelled = asyncio.Event()

    async def hung(params: Mapping[str, str]) -> AuthData:
        arrived.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    listening = asyncio.Event()
    port: list[int] = []

    async def login() -> AuthData:
        async with CallbackServer(hung, success_grace=0) as server:
            port.append(server.port)
            listening.set()
            return await server.wait(60)

    task = asyncio.create_task(login())
    await listening.wait()
    async with httpx.AsyncClient(trust_env=False) as client:
        callback = send_callback(client, port[0])
        await arrived.wait()
        task.cancel()
        async with asyncio.timeout(5):  # a hang guard; without the fix this takes a minute
            await asyncio.wait({task})
        assert cancelled.is_set()
        with contextlib.suppress(httpx.HTTPError):
            await callback
    assert task.cancelled()


async def test_submit_maps_each_verdict() -> None:
    """Paste-back: a foreign state raises StateMismatchError and keeps waiting; the right
    one is accepted; anything after the end is refused with False."""
    async with CallbackServer(accept, success_grace=0) as server:
        with pytest.raises(StateMismatchError) as caught:
            await server.submit({"state": "x", "code": "c"})
        assert str(caught.value) == "wrong state"
        assert await server.submit({"state": "s", "code": "c"}) is True
        assert await server.submit({"state": "s", "code": "c"}) is False
        assert await server.wait(5) is AUTH


async def test_submit_judges_with_the_judge_it_is_given() -> None:
    """Paste-back of a bare code is judged by its own judge (no state to check), not by the
    callback judge."""
    other = AuthData(access_token="OTHER")
    seen: list[Mapping[str, str]] = []

    async def bare_code(params: Mapping[str, str]) -> AuthData:
        seen.append(params)
        return other

    async with CallbackServer(accept, success_grace=0) as server:
        assert await server.submit({"code": "c"}, judge=bare_code) is True
        assert await server.wait(5) is other
    assert seen == [{"code": "c"}]


async def test_a_foreign_listener_on_ipv6_loopback_moves_a_localhost_login_on() -> None:
    """For a `localhost` redirect, another program on [::1]:port could receive the
    browser's redirect: that port is given up for the next one, and with no port left the
    error names the conflict. On a machine without IPv6 loopback there can be no such
    listener: the login keeps its first port on IPv4 alone (the test runs either way)."""
    first, second = free_port(), free_port()
    if not ipv6_loopback():
        async with CallbackServer(accept, ports=(first, second), also_ipv6=True) as server:
            assert server.port == first
        return
    with socket.socket(socket.AF_INET6) as squatter:
        squatter.bind(("::1", first))
        squatter.listen()
        async with CallbackServer(accept, ports=(first, second), also_ipv6=True) as server:
            assert server.port == second
        with pytest.raises(CallbackServerError, match=rf"\[::1\]:{first}"):
            async with CallbackServer(accept, ports=(first,), also_ipv6=True):
                pass  # pragma: no cover
        with socket.socket(socket.AF_INET6) as other:
            other.bind(("::1", second))
            other.listen()
            with pytest.raises(CallbackServerError) as caught:
                async with CallbackServer(accept, ports=(first, second), also_ipv6=True):
                    pass  # pragma: no cover
        assert f"(another program holds [::1]:{first}, [::1]:{second})" in str(caught.value)
    async with CallbackServer(accept, ports=(first,), also_ipv6=True) as server:
        assert server.port == first  # the port is free again: it was not leaked


@pytest.mark.parametrize(
    ("params", "status", "title", "message"),
    [
        ({"state": "x"}, 400, "Sign-in link not recognised", "wrong state"),
        ({"state": "s", "error": "access_denied"}, 400, "Sign-in failed", "access_denied"),
        (
            {"state": "s", "boom": "1"},
            500,
            "Sign-in failed",
            "<p>An internal error occurred; see the logs.</p>",
        ),
    ],
)
async def test_each_verdict_has_its_page(
    params: dict[str, str], status: int, title: str, message: str
) -> None:
    """Refused, failed and broken callbacks get their status, title and message (escaped
    HTML); a broken judge ends the login with an OAuthFlowError naming only its type."""

    async def judge(received: Mapping[str, str]) -> AuthData:
        if "boom" in received:
            raise RuntimeError("secret detail")
        return await accept(received)

    async with (
        CallbackServer(judge, success_grace=0) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        page = await client.get(f"http://127.0.0.1:{server.port}/auth/callback", params=params)
        assert page.status_code == status
        assert f"<title>{title}</title>" in page.text
        assert message in page.text
        assert "secret detail" not in page.text
        if "boom" in params:
            with pytest.raises(OAuthFlowError) as caught:
                await server.wait(5)
            assert str(caught.value) == "the callback could not be handled: RuntimeError"


def page_of(response: httpx.Response) -> tuple[int, str, str, str]:
    """(status, content type, title, message) of one of the server's pages."""
    text = response.text
    title = text.split("<title>", 1)[1].split("</title>", 1)[0]
    message = text.split("<p>", 1)[1].split("</p>", 1)[0]
    return response.status_code, response.headers["Content-Type"], title, message


HTML = "text/html; charset=utf-8"


async def test_every_page_says_exactly_what_happened() -> None:
    """The success page, the redirect to it (with the security headers), a callback after
    the end, a refused one, a stray /success and /cancel: status, type, title, message."""

    async def judge(received: Mapping[str, str]) -> AuthData:
        if received.get("code") == "refuse-me":
            raise Refused("that code was not accepted")
        return await accept(received)

    async with (
        CallbackServer(judge, success_grace=5) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        base = f"http://127.0.0.1:{server.port}"
        stray = await client.get(f"{base}/success")
        assert page_of(stray) == (404, HTML, "Not found", "No sign-in finished here.")
        refused = await client.get(
            f"{base}/auth/callback", params={"state": "s", "code": "refuse-me"}
        )
        assert page_of(refused) == (400, HTML, "Not accepted", "that code was not accepted")
        redirect = await client.get(f"{base}/auth/callback", params={"state": "s", "code": "c"})
        assert redirect.status_code == 302
        assert redirect.headers["Location"].startswith("/success?t=")
        assert redirect.headers["Cache-Control"] == "no-store"
        assert redirect.headers["Referrer-Policy"] == "no-referrer"
        success = await client.get(f"{base}{redirect.headers['Location']}")
        assert page_of(success) == (
            200, HTML, "Signed in", "You are signed in. You can close this tab now."
        )  # fmt: skip
        again = await client.get(f"{base}/auth/callback", params={"state": "s", "code": "c"})
        assert page_of(again) == (400, HTML, "Login already finished", "You can close this tab.")
        assert await server.wait(5) is AUTH

    async with (
        CallbackServer(accept, success_grace=0) as server,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        cancel = await client.get(f"http://127.0.0.1:{server.port}/cancel")
        assert page_of(cancel) == (200, HTML, "Login cancelled", "This login was cancelled.")
        with pytest.raises(OAuthFlowError) as caught:
            await server.wait(5)
        assert str(caught.value) == (
            "the login was cancelled (another login asked this one to stop)"
        )


async def test_submit_passes_on_a_refusal() -> None:
    """Paste-back: a judge's refusal reaches the paster with its reason; still waiting."""

    async def refuse(params: Mapping[str, str]) -> AuthData:
        raise Refused("the provider did not accept that code (invalid_grant)")

    async with CallbackServer(accept, success_grace=0) as server:
        with pytest.raises(Refused) as caught:
            await server.submit({"code": "c"}, judge=refuse)
        assert str(caught.value) == "the provider did not accept that code (invalid_grant)"
        assert await server.submit({"state": "s", "code": "c"}) is True
        assert await server.wait(5) is AUTH


async def test_no_callback_in_time_is_a_timeout_that_says_so() -> None:
    """Nothing arrives: CallbackTimeoutError with the time waited and what to do."""
    async with CallbackServer(accept, success_grace=0) as server:
        with pytest.raises(CallbackTimeoutError) as caught:
            await server.wait(0.05)
    assert str(caught.value) == (
        "no login arrived at the callback within 0.05 s; start the login again"
    )


def test_documented_defaults() -> None:
    """An ephemeral port, IPv4 only, no /cancel to a busy port, 2 s for the browser to
    fetch the success page, 60 s for an exchange in flight, no localhost Host, 64
    connections, 10 s to send a request."""
    import inspect

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(CallbackServer).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    assert defaults == {
        "path": "/auth/callback",
        "ports": (0,),
        "host": "127.0.0.1",
        "hosts": (),
        "also_ipv6": False,
        "cancel_busy_port": False,
        "localhost": False,
        "max_connections": 64,
        "request_timeout": 10.0,
        "success_grace": 2.0,
        "exchange_timeout": 60.0,
    }


async def test_no_access_log_and_no_signal_handlers(caplog: pytest.LogCaptureFixture) -> None:
    """Callback URLs carry codes, so aiohttp's access log records nothing; and the server
    leaves Ctrl-C to the program (it installs no signal handler of its own)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with CallbackServer(accept, success_grace=5) as server:
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        async with httpx.AsyncClient(trust_env=False) as client:
            await client.get(
                f"http://127.0.0.1:{server.port}/auth/callback",
                params={"state": "s", "code": "the-secret-code"},
                follow_redirects=True,
            )
        assert await server.wait(5) is AUTH
    assert [r for r in caplog.records if r.name == "aiohttp.access"] == []
    assert "the-secret-code" not in caplog.text


async def test_an_outcome_nobody_waited_for_is_not_reported_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A login that failed (here: cancelled through /cancel) while nobody waited, then
    closed: its error is not printed later as "exception was never retrieved"."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    server = CallbackServer(accept)
    await server.start()
    async with httpx.AsyncClient(trust_env=False) as client:
        await client.get(f"http://127.0.0.1:{server.port}/cancel")
    await server.close()
    del server
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_no_ports_given_means_an_ephemeral_port() -> None:
    """``ports=()`` is the same as the default ``(0,)``: the system picks a free port."""
    async with CallbackServer(accept, ports=()) as server:
        assert server.port >= 1024


def refuse_to_listen(monkeypatch: pytest.MonkeyPatch, host: str, error: int) -> None:
    """Make the server's listening on ``host`` fail with the OS error ``error``."""
    start = GuardedSite.start

    async def refusing(site: GuardedSite) -> None:
        if site._host == host:
            raise OSError(error, os.strerror(error))
        await start(site)

    monkeypatch.setattr(GuardedSite, "start", refusing)


async def test_a_port_we_may_not_listen_on_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure other than "in use" (here: permission denied) is not retried on the next
    port: it is one CallbackServerError naming the address and the reason."""
    port = free_port()
    refuse_to_listen(monkeypatch, "127.0.0.1", errno.EACCES)
    with pytest.raises(CallbackServerError) as caught:
        async with CallbackServer(accept, ports=(port, free_port())):
            pass  # pragma: no cover
    assert str(caught.value) == f"cannot listen on 127.0.0.1:{port}: Permission denied"


async def test_a_machine_without_ipv6_loopback_keeps_the_port_on_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """For a `localhost` login, [::1] that cannot be bound at all (no IPv6 loopback) is
    not a conflict: the login keeps its first port, on IPv4."""
    first, second = free_port(), free_port()
    refuse_to_listen(monkeypatch, "::1", errno.EADDRNOTAVAIL)
    async with CallbackServer(accept, ports=(first, second), also_ipv6=True) as server:
        assert server.port == first


async def test_a_busy_port_whose_owner_never_answers_does_not_hang_the_login() -> None:
    """The owner of the busy port accepts the /cancel connection and never answers: the
    handshake gives up (2 s) and the login moves on to the next port."""
    first, second = free_port(), free_port()
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", first))
        mute.listen()
        async with asyncio.timeout(30):  # a hang guard
            async with CallbackServer(
                accept, ports=(first, second), cancel_busy_port=True
            ) as server:
                assert server.port == second


async def test_the_cancel_handshake_keeps_blocking_work_off_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The /cancel request's HTTP client is built with the shared SSL context, made in a
    worker thread: nothing blocking (such as loading the CA bundle) runs on the loop."""
    monkeypatch.setattr(_http_client, "_ssl_context", None)
    guard = OffLoopGuard(monkeypatch)
    await test_busy_port_is_freed_by_cancelling_our_stale_login()
    assert guard.offences == []
    assert guard.calls > 0
