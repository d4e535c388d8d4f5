"""A scripted user agent: completes the test provider's login and consent pages like a person.

It follows redirects by hand, fills the login form (any login and password are accepted by
oidc-provider's development interactions), presses Continue on the consent page and finally
requests our loopback callback, following it to the success page.
"""

from __future__ import annotations

import contextlib
import html
import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

if TYPE_CHECKING:
    import logging

_FORM = re.compile(r"<form([^>]*)>(.*?)</form>", re.S)
_INPUT = re.compile(r"<input([^>]*)>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_ABORT = re.compile(r'href="([^"]*/abort)"')


# True while the scripted browser runs: its own httpx logs (which show the callback URL, as a
# real browser's history would) are not the library's and are filtered out by log tests.
IN_BROWSER: ContextVar[bool] = ContextVar("IN_BROWSER", default=False)


def not_from_browser(record: logging.LogRecord) -> bool:
    """A logging filter dropping records emitted by the scripted browser."""
    return not IN_BROWSER.get()


@dataclass
class BrowserResult:
    """Where the scripted browser ended: the callback URL it reached and the final page."""

    callback_url: str
    final_url: str
    final_status: int
    final_text: str


def _form_fields(form_html: str, login: str, user_code: str = "") -> dict[str, str]:
    fields: dict[str, str] = {}
    for attrs_text in _INPUT.findall(form_html):
        attrs = dict(_ATTR.findall(attrs_text))
        name = attrs.get("name")
        if not name:
            continue
        if name == "login":
            fields[name] = login
        elif name == "user_code" and not attrs.get("value"):
            fields[name] = user_code
        elif name == "password":
            fields[name] = "any-password"
        else:
            fields[name] = html.unescape(attrs.get("value", ""))
    return fields


def _is_callback(url: str, callback_prefix: str) -> bool:
    return url.startswith(callback_prefix)


async def run_browser(
    authorization_url: str,
    *,
    login: str = "alice",
    deny: bool = False,
    follow_callback: bool = True,
    max_steps: int = 20,
    client: httpx.AsyncClient | None = None,
) -> BrowserResult:
    """Drive the provider's pages from ``authorization_url`` to our loopback callback.

    Args:
        authorization_url: The URL our flow asked the browser to open.
        login: The account to log in as (becomes the ``sub``).
        deny: Press "Cancel" on the login page instead (the provider answers access_denied).
        follow_callback: Request the callback (and the success page); False stops before it,
            as a browser would on a machine that cannot reach our loopback port.
        client: Use this client (and its cookies) instead of a fresh one.
    """
    token = IN_BROWSER.set(True)
    try:
        return await _browse(
            authorization_url,
            login=login,
            deny=deny,
            follow_callback=follow_callback,
            max_steps=max_steps,
            client=client,
        )
    finally:
        IN_BROWSER.reset(token)


def _post_form(page: str) -> tuple[str, str] | None:
    """The first form that POSTs: its action and inner HTML."""
    for attrs_text, inner in _FORM.findall(page):
        attrs = dict(_ATTR.findall(attrs_text))
        if attrs.get("method", "").lower() == "post" and "action" in attrs:
            return html.unescape(attrs["action"]), inner
    return None


async def _browse(
    authorization_url: str,
    *,
    login: str,
    deny: bool,
    follow_callback: bool,
    max_steps: int,
    client: httpx.AsyncClient | None,
) -> BrowserResult:
    query = parse_qs(urlsplit(authorization_url).query)
    callback_prefix = query["redirect_uri"][0]
    context = (
        httpx.AsyncClient(follow_redirects=False, timeout=30, trust_env=False)
        if client is None
        else contextlib.nullcontext(client)
    )
    async with context as ua:
        response = await ua.get(authorization_url)
        for _ in range(max_steps):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if _is_callback(target, callback_prefix):
                    if not follow_callback:
                        return BrowserResult(target, target, 0, "")
                    final = await ua.get(target, follow_redirects=True)
                    return BrowserResult(target, str(final.url), final.status_code, final.text)
                response = await ua.get(target)
                continue
            if deny:
                match = _ABORT.search(response.text)
                if match is None:
                    raise AssertionError(f"no abort link on {response.url}")
                response = await ua.get(urljoin(str(response.url), html.unescape(match[1])))
                continue
            form = _post_form(response.text)
            if form is None:
                raise AssertionError(
                    f"unexpected page {response.url} ({response.status_code}): "
                    f"{response.text[:300]}"
                )
            action = urljoin(str(response.url), form[0])
            fields = _form_fields(form[1], login)
            if _is_callback(action, callback_prefix):  # response_mode=form_post
                posted = f"{action}?{urlencode(fields)}"
                if not follow_callback:
                    return BrowserResult(posted, posted, 0, "")
                final = await ua.post(action, data=fields, follow_redirects=True)
                return BrowserResult(posted, str(final.url), final.status_code, final.text)
            response = await ua.post(action, data=fields)
    raise AssertionError("the login did not reach the callback")


async def run_device_browser(
    verification_uri: str, user_code: str, *, login: str = "alice", max_steps: int = 20
) -> str:
    """Enter ``user_code`` at the provider's device page, log in and consent, as a person
    on another device would; return the final page's text."""
    token = IN_BROWSER.set(True)
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=30, trust_env=False) as ua:
            response = await ua.get(verification_uri)
            for _ in range(max_steps):
                if response.is_redirect:
                    response = await ua.get(
                        urljoin(str(response.url), response.headers["location"])
                    )
                    continue
                form = _post_form(response.text)
                if form is None:
                    return response.text
                action = urljoin(str(response.url), form[0])
                response = await ua.post(action, data=_form_fields(form[1], login, user_code))
    finally:
        IN_BROWSER.reset(token)
    raise AssertionError("the device login did not finish")
