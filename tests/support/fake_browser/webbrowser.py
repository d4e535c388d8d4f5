"""Stands in for the standard library's ``webbrowser`` when the README's code blocks run in
the test suite: "opening" a URL runs the scripted user agent against it in a thread."""

from __future__ import annotations

import asyncio
import threading


def open(url: str, new: int = 0, autoraise: bool = True) -> bool:
    from tests.support.user_agent import run_browser

    threading.Thread(target=lambda: asyncio.run(run_browser(url)), daemon=True).start()
    return True
