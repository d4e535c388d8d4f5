"""A deterministic detector of blocking work on the event loop.

``OffLoopGuard`` wraps functions that block (file I/O, loading a CA bundle) and records every
call made on the event loop's thread from inside the ``vandamme_oauth`` package. No timing is
involved: a call is an offence by where it runs, not by how long it takes.
"""

from __future__ import annotations

import os
import pathlib
import ssl
import threading
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

# (owner, attribute) pairs that block: file system calls and CA-bundle loading.
BLOCKING: list[tuple[Any, str]] = [
    (os, "open"),
    (os, "replace"),
    (os, "fsync"),
    (os, "unlink"),
    (pathlib.Path, "read_bytes"),
    (pathlib.Path, "read_text"),
    (pathlib.Path, "write_text"),
    (pathlib.Path, "mkdir"),
    (pathlib.Path, "unlink"),
    (ssl.SSLContext, "load_verify_locations"),
]
_PACKAGE = os.sep + "vandamme_oauth" + os.sep


class OffLoopGuard:
    """Records blocking calls made on the loop thread by the package."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop_thread = threading.get_ident()
        self.offences: list[str] = []
        self.calls = 0
        for owner, name in BLOCKING:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))

    def _wrap(self, function: Callable[..., Any], name: str) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.loop_thread:
                ours = [
                    f"{frame.filename}:{frame.lineno}"
                    for frame in traceback.extract_stack()[:-1]
                    if _PACKAGE in frame.filename
                ]
                if ours:
                    self.offences.append(f"{name} on the event loop, from {ours[-1]}")
            else:
                self.calls += 1
            return function(*args, **kwargs)

        return guarded
