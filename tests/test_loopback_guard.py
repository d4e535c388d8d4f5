"""The loopback server hears only this machine's programs and the user's browser: the Host
rule (no DNS rebinding), /cancel from programs only, and bounded connections. Real server,
real requests on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.test_callback_server import AUTH, accept
from vandamme_oauth import OAuthFlowError
from vandamme_oauth._callback_server import CallbackServer
from vandamme_oauth._loopback_guard import allowed_hosts, cancel_allowed, host_allowed

#: What a page's <img src="http://127.0.0.1:PORT/cancel"> makes a browser send.
CROSS_SITE_IMAGE = {
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "image",
    "Origin": "https://evil.example",
}


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:4000", True),
        ("[::1]:4000", True),
        ("LOCALHOST:4000", False),
        ("127.0.0.1:4001", False),
        ("127.0.0.1", False),
        ("evil.example:4000", False),
        ("127.0.0.1.evil.example:4000", False),
        ("", False),
    ],
)
def test_the_host_rule(host: str, allowed: bool) -> None:
    """Only the server's own address and port; a name that merely starts like it is not."""
    assert host_allowed({"Host": host}, allowed_hosts(4000, localhost=False)) is allowed


def test_localhost_and_the_bound_address_are_allowed_when_they_are_ours() -> None:
    """`localhost:PORT` for redirect URIs that name localhost; the address bound, whatever
    it is; no Host at all (no browser sends that)."""
    assert host_allowed({"Host": "localhost:4000"}, allowed_hosts(4000, localhost=True))
    assert host_allowed(
        {"Host": "127.0.0.2:4000"}, allowed_hosts(4000, localhost=False, bound="127.0.0.2")
    )
    assert host_allowed({}, allowed_hosts(4000, localhost=False))


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Sec-Fetch-Site": "same-origin"}, True),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://127.0.0.1:4000"}, False),
        (CROSS_SITE_IMAGE, False),
    ],
)
def test_the_cancel_rule(headers: dict[str, str], allowed: bool) -> None:
    """/cancel acts only on requests no web page sent."""
    assert cancel_allowed(headers) is allowed


async def genuine_callback(port: int, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(
            f"http://127.0.0.1:{port}/auth/callback",
            params={"state": "s", "code": "c"},
            headers=headers,
        )


async def test_a_cross_site_cancel_is_refused_and_the_login_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An <img> on a hostile page asks /cancel: 403, the login keeps waiting, and the
    genuine callback (a top-level navigation from the provider) completes it."""
    caplog.set_level(logging.WARNING, "vandamme_oauth")
    async with CallbackServer(accept, success_grace=0) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            refused = await client.get(
                f"http://127.0.0.1:{server.port}/cancel", headers=CROSS_SITE_IMAGE
            )
        assert refused.status_code == 403
        assert "Only a program on this machine can cancel a login." in refused.text
        answer = await genuine_callback(
            server.port, **{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        )
        assert answer.status_code == 302
        assert await server.wait(5) is AUTH
    assert "a /cancel sent by a web page was refused; still waiting" in caplog.messages


@pytest.mark.parametrize("path", ["/cancel", "/auth/callback?state=s&code=c", "/success"])
async def test_a_rebinding_host_is_refused_on_every_route(path: str) -> None:
    """A request for evil.example:PORT (DNS rebinding) gets 421 on every route, the
    callback included, and the login goes on to complete with the genuine callback."""
    async with CallbackServer(accept, success_grace=0) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            refused = await client.get(
                f"http://127.0.0.1:{server.port}{path}",
                headers={"Host": f"evil.example:{server.port}"},
            )
        assert refused.status_code == 421
        assert "This server answers only its own loopback address." in refused.text
        assert (await genuine_callback(server.port)).status_code == 302
        assert await server.wait(5) is AUTH


async def test_a_localhost_login_answers_localhost_and_others_do_not() -> None:
    """A server for a `localhost` redirect answers Host localhost:PORT; a generic one 421."""
    for localhost, status in ((True, 302), (False, 421)):
        async with CallbackServer(accept, success_grace=0, localhost=localhost) as server:
            answer = await genuine_callback(server.port, Host=f"localhost:{server.port}")
            assert answer.status_code == status


async def plain_request(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a plain TCP connection and read the answer's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    # A hang guard, not a measurement.
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /cancel HTTP/1.0\r\n\r\n",  # a plain GET without headers (an older program)
        b"GET /cancel HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
    ],
    ids=["no headers", "our handshake's shape"],
)
async def test_a_programs_cancel_still_ends_the_login(raw: bytes) -> None:
    """The handshake of a stale login (ours, the Codex CLI's) still works."""
    async with CallbackServer(accept) as server:
        answer = await plain_request(server.port, raw.replace(b"{port}", str(server.port).encode()))
        assert answer.split(b"\r\n")[0].endswith(b" 200 OK")
        with pytest.raises(OAuthFlowError, match="another login asked this one to stop"):
            await server.wait(5)


async def test_a_form_post_from_the_provider_is_accepted() -> None:
    """response_mode=form_post: the provider's page posts the form cross-site, with an
    Origin; only the Host rule applies to the callback."""
    async with CallbackServer(accept, success_grace=0) as server:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.post(
                f"http://127.0.0.1:{server.port}/auth/callback",
                data={"state": "s", "code": "c"},
                headers={
                    "Origin": "https://idp.example",
                    "Sec-Fetch-Site": "cross-site",
                    "Sec-Fetch-Mode": "navigate",
                },
            )
        assert answer.status_code == 302
        assert await server.wait(5) is AUTH


async def test_a_flood_of_slow_connections_leaves_the_callback_working() -> None:
    """Thirty connections that never finish their request head, against a cap of eight:
    the oldest are closed as new ones come, the server never holds more than the cap, and
    the genuine callback completes the login."""
    flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    async with CallbackServer(accept, success_grace=0, max_connections=8) as server:
        for _ in range(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /auth/callback HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end
            await writer.drain()
            flood.append((reader, writer))
        assert (await genuine_callback(server.port)).status_code == 302
        assert await server.wait(5) is AUTH
        assert server.connections.evicted >= 23
        # The oldest 23 were closed by the server: each sees the end of its stream.
        for reader, _ in flood[:23]:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        assert len(server.connections) <= 8
    for _, writer in flood:
        writer.close()


async def test_a_connection_that_sends_no_request_is_closed_after_the_timeout() -> None:
    """A connection that sends half a request head is closed after request_timeout."""
    async with CallbackServer(accept, request_timeout=0.1) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /auth/callback HTTP/1.1\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_a_form_post_whose_body_never_ends_gets_408_and_the_login_waits() -> None:
    """A POST whose body stops half way: 408 after request_timeout; the login goes on."""
    async with CallbackServer(accept, request_timeout=0.1, success_grace=0) as server:
        head = (
            f"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            "state=s"
        ).encode()
        answer = await plain_request(server.port, head)
        assert answer.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
        assert (await genuine_callback(server.port)).status_code == 302
        assert await server.wait(5) is AUTH
