"""Drive a command in a pseudo-terminal, as a user at a keyboard would (stdlib pty only)."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
from collections.abc import Mapping, Sequence


class Terminal:
    """A child process on a pty: read what it shows, type lines into it."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        self._master, slave = pty.openpty()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=dict(env or os.environ),
            close_fds=True,
            start_new_session=True,
        )
        os.close(slave)
        self.screen = ""
        self._changed = asyncio.Event()
        self._eof = False
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            self._eof = True
            asyncio.get_running_loop().remove_reader(self._master)
        self.screen += data.decode(errors="replace").replace("\r\n", "\n")
        self._changed.set()

    async def expect(self, pattern: str, *, timeout: float = 60) -> re.Match[str]:
        """Wait until the screen shows ``pattern`` (a regex); return the match."""
        async with asyncio.timeout(timeout):
            while True:
                match = re.search(pattern, self.screen)
                if match:
                    return match
                if self._eof:
                    raise AssertionError(f"{pattern!r} never shown; screen:\n{self.screen}")
                self._changed.clear()
                await self._changed.wait()

    def sendline(self, text: str) -> None:
        """Type ``text`` and press Enter."""
        os.write(self._master, text.encode() + b"\n")

    async def wait(self, *, timeout: float = 60) -> int:
        """Wait for the process to exit (reading its last output) and return its code."""
        async with asyncio.timeout(timeout):
            while not self._eof:
                self._changed.clear()
                await self._changed.wait()
            return await asyncio.to_thread(self.process.wait)

    def close(self) -> None:
        """Kill the process if needed and release the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self._eof:
            asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
