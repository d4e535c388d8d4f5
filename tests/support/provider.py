"""Start and talk to the real OpenID provider (npm ``oidc-provider``) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "provider"
CLIENT_ID = "vandamme-test"
#: The confidential clients' secret (with characters that form-encoding must escape).
CLIENT_SECRET = "vandamme-test-secret: not/so+secret"


@dataclass(frozen=True)
class RunningProvider:
    """A running test provider: its issuer and its test-only endpoints."""

    issuer: str
    client_id: str
    process: subprocess.Popen[bytes]
    client_secret: str = CLIENT_SECRET

    def confidential_client_id(self, method: str) -> str:
        """The id of the confidential client using ``client_secret_basic`` or ``_post``."""
        return f"{self.client_id}-{method.removeprefix('client_secret_')}"

    def stats(self) -> dict[str, int]:
        """Counts of successful grants and revocations seen by the provider."""
        response = httpx.get(f"{self.issuer}/__test__/stats", timeout=10)
        response.raise_for_status()
        data: dict[str, int] = response.json()
        return data

    def wait_for(self, counter: str, after: int) -> int:
        """Block until ``stats()[counter]`` exceeds ``after`` (a long poll); return it."""
        response = httpx.get(
            f"{self.issuer}/__test__/wait", params={"counter": counter, "after": after}, timeout=60
        )
        response.raise_for_status()
        value: int = response.json()[counter]
        return value

    def set_token_latency(self, ms: int, *, after_processing_ms: int = 0) -> None:
        """Delay token requests by ``ms`` before they are processed, and their answers by
        ``after_processing_ms`` once processed."""
        response = httpx.post(
            f"{self.issuer}/__test__/config",
            json={"token_latency_ms": ms, "token_response_delay_ms": after_processing_ms},
            timeout=10,
        )
        response.raise_for_status()


@contextmanager
def run_provider(
    *, access_token_ttl: int = 600, env: Mapping[str, str] | None = None
) -> Iterator[RunningProvider]:
    """Run ``tests/provider/server.mjs`` until the block ends, with ``env`` added to its
    environment (see the script's header); fail loudly if it cannot start."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is required for the integration tests (node not on PATH)")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"oidc-provider is not installed: run 'npm ci' in {PROVIDER_DIR} "
            "(the README's test command does this)"
        )
    process = subprocess.Popen(
        [node, "server.mjs"],
        cwd=PROVIDER_DIR,
        env={
            **os.environ,
            "ACCESS_TOKEN_TTL": str(access_token_ttl),
            "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": CLIENT_SECRET,
            "NODE_NO_WARNINGS": "1",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,  # unbuffered, so select() and readline() agree
    )
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=60):
            raise RuntimeError("the test OpenID provider did not start within 60 s")
        line = process.stdout.readline()
        selector.close()
        if not line:
            raise RuntimeError(f"the test OpenID provider exited with code {process.wait()}")
        issuer = json.loads(line)["issuer"]
        yield RunningProvider(issuer=issuer, client_id=CLIENT_ID, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
