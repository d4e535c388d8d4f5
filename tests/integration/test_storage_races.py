"""Storage races, against the real provider and real processes: a logout during another
process's refresh stays a logout (and the refresh's new token is revoked), another program's
login or deletion wins over a refresh in flight, and another program's half-written file is
waited for, never moved aside."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from keyrings.alt.file import PlaintextKeyring

from tests.integration.conftest import scripted_login
from tests.integration.test_cli import _spawn_cli
from vandamme_oauth import (
    AuthData,
    AuthStorage,
    CodexAuthStorage,
    FileSystemAuthStorage,
    KeyringAuthStorage,
    NotAuthenticatedError,
    ReauthenticationRequired,
    StorageError,
    TokenClient,
    TokenManager,
)
from vandamme_oauth.storage._base import log_out

if TYPE_CHECKING:
    from vandamme_oauth import ProviderConfig

pytestmark = [pytest.mark.asyncio, pytest.mark.integration]


class HeldAnswers(httpx.AsyncBaseTransport):
    """Sends each request to the real provider, then holds its answer until ``release``:
    the refresh has reached the server, its answer is on its way."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.bodies: list[bytes] = []
        self.client: httpx.AsyncClient | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.bodies.append(body)
        self.arrived.set()
        await self.release.wait()
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def done(self, manager: TokenManager) -> None:
        """Close the manager and the client it refreshed through."""
        await manager.aclose()
        if self.client is not None:
            await self.client.aclose()

    def new_refresh_token(self) -> str:
        """The refresh token of the refresh answer held (the first answer)."""
        token = json.loads(self.bodies[0])["refresh_token"]
        assert isinstance(token, str)
        return token


async def expire(storage: AuthStorage) -> None:
    """Make the stored access token expire now, in every format (the Codex file keeps no
    expiry: its login expires a fallback lifetime after its last refresh)."""
    stored = await storage.read_auth()
    assert stored is not None
    await storage.write_auth(stored.replace(expires_at=time.time() - 1, last_refresh=1.0))


async def is_revoked(provider: ProviderConfig, refresh_token: str) -> bool:
    """Whether the provider refuses ``refresh_token`` now."""
    async with TokenClient(provider) as client:
        try:
            await client.refresh(AuthData(access_token="x", refresh_token=refresh_token))
        except ReauthenticationRequired:
            return True
    return False


async def refreshing(
    provider: ProviderConfig, storage: AuthStorage, held: HeldAnswers
) -> tuple[TokenManager, asyncio.Task[AuthData]]:
    """A manager (no watcher: only its own reads) whose refresh has reached the provider
    and whose answer is held."""
    held.client = httpx.AsyncClient(transport=held)
    manager = TokenManager(provider, storage, http_client=held.client, watch_interval=None)
    task = asyncio.create_task(manager.get_auth_data())
    await asyncio.wait_for(held.arrived.wait(), 30)  # a hang guard, not a measurement
    return manager, task


async def test_a_logout_during_a_refresh_stays_a_logout(
    provider_config: ProviderConfig, tmp_path: Path
) -> None:
    """`vandamme-oauth logout` while another process's refresh answer is on its way: the
    logout waits for the refresh (the storage lock), revokes what it stored and deletes
    it; the file does not come back and the rotated refresh token is dead at the provider."""
    storage = FileSystemAuthStorage(tmp_path, provider_config.name)
    await scripted_login(provider_config, storage)
    await expire(storage)
    held = HeldAnswers()
    manager, task = await refreshing(provider_config, storage, held)
    logout = await _spawn_cli("-vv", "logout", provider_config.name, home=tmp_path)
    assert logout.stderr is not None
    while b"file lock busy; waiting" not in (line := await logout.stderr.readline()):
        assert line, "the logout ended without waiting for the lock"
    held.release.set()
    refreshed = await task  # the refresh was stored, under the lock, before the logout
    out, err = await asyncio.wait_for(logout.communicate(), 60)
    assert logout.returncode == 0, err
    assert out.decode().endswith("local tokens deleted; revoked at the provider.\n")
    assert not storage.path.exists()
    assert not storage.profile_path.exists()
    assert refreshed.refresh_token == held.new_refresh_token()
    assert await is_revoked(provider_config, held.new_refresh_token())
    with pytest.raises(NotAuthenticatedError):
        await manager.refresh()
    await held.done(manager)


async def test_a_login_deleted_by_another_program_during_a_refresh_stays_deleted(
    provider_config: ProviderConfig, tmp_path: Path
) -> None:
    """Another program deletes the login file without our lock (`rm`, `codex logout`)
    while the refresh answer is on its way: the refresh is dropped, not written, its new
    refresh token revoked, and the caller told that no login is stored."""
    storage = FileSystemAuthStorage(tmp_path, provider_config.name)
    await scripted_login(provider_config, storage)
    await expire(storage)
    held = HeldAnswers()
    manager, task = await refreshing(provider_config, storage, held)
    storage.path.unlink()
    held.release.set()
    with pytest.raises(NotAuthenticatedError):
        await task
    assert not storage.path.exists()
    assert await is_revoked(provider_config, held.new_refresh_token())
    await held.done(manager)


async def test_another_programs_login_during_a_refresh_wins(
    provider_config: ProviderConfig, tmp_path: Path
) -> None:
    """Another program stores a new login (bob) while our refresh answer is on its way:
    bob's login is kept and served, ours is dropped and revoked."""
    storage = FileSystemAuthStorage(tmp_path, provider_config.name)
    await scripted_login(provider_config, storage)
    await expire(storage)
    elsewhere = FileSystemAuthStorage(tmp_path / "elsewhere", provider_config.name)
    bob = (await scripted_login(provider_config, elsewhere, login="bob")).auth
    held = HeldAnswers()
    manager, task = await refreshing(provider_config, storage, held)
    storage.path.write_bytes(elsewhere.path.read_bytes())  # not atomic, no lock
    held.release.set()
    assert await task == bob
    assert await storage.read_auth() == bob
    assert await is_revoked(provider_config, held.new_refresh_token())
    assert not await is_revoked(provider_config, bob.refresh_token or "")
    await held.done(manager)


class WatchedDecoding(FileSystemAuthStorage):
    """File storage that says (through an event) when it first met an unparsable file."""

    def __init__(self, home: Path, name: str) -> None:
        super().__init__(home, name)
        self.unparsable = threading.Event()

    def _decode(self, raw: bytes) -> AuthData | None:
        try:
            return super()._decode(raw)
        except ValueError:
            self.unparsable.set()
            raise


async def test_another_programs_half_written_file_is_waited_for_not_moved_aside(
    provider_config: ProviderConfig, tmp_path: Path
) -> None:
    """Another program writes the file the way the Codex CLI may (truncate, write half,
    pause, write the rest) while our refresh answer arrives: we read it again until it is
    whole, keep its login (ours is revoked), and move nothing aside."""
    storage = WatchedDecoding(tmp_path, provider_config.name)
    await scripted_login(provider_config, storage)
    await expire(storage)
    elsewhere = FileSystemAuthStorage(tmp_path / "elsewhere", provider_config.name)
    bob = (await scripted_login(provider_config, elsewhere, login="bob")).auth
    whole = elsewhere.path.read_bytes()
    held = HeldAnswers()
    manager, task = await refreshing(provider_config, storage, held)
    half_written = threading.Event()

    def foreign_writer() -> None:
        with storage.path.open("r+b") as file:
            file.truncate(0)
            file.write(whole[: len(whole) // 2])
            file.flush()
            half_written.set()
            assert storage.unparsable.wait(30)  # our side has met the half file
            file.write(whole[len(whole) // 2 :])

    writer = asyncio.create_task(asyncio.to_thread(foreign_writer))
    await asyncio.to_thread(half_written.wait, 30)
    held.release.set()
    assert await task == bob
    await writer
    assert storage.path.read_bytes() == whole
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []
    assert await is_revoked(provider_config, held.new_refresh_token())
    await held.done(manager)


async def test_a_file_that_stays_corrupt_is_moved_aside_under_a_name_of_its_own(
    tmp_path: Path,
) -> None:
    """Two unreadable files moved aside in the same second are both kept."""
    storage = FileSystemAuthStorage(tmp_path, "p", foreign_write_grace=0)
    login = AuthData(access_token="AT", refresh_token="RT")
    for junk in (b"{first", b"{second"):
        storage.path.write_bytes(junk)
        await storage.write_auth(login)
    aside = sorted(p.read_bytes() for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert aside == [b"{first", b"{second"]
    assert await storage.read_auth() == login


async def test_an_unreadable_file_is_judged_after_the_grace_period_only(tmp_path: Path) -> None:
    """A read of a file that stays unparsable fails after foreign_write_grace (read again
    meanwhile); a file that changes all the while is not written over."""
    storage = FileSystemAuthStorage(tmp_path, "p", foreign_write_grace=0.2)
    storage.path.write_bytes(b"{")
    with pytest.raises(StorageError, match="is unreadable"):
        await storage.read_auth()
    stop, started = threading.Event(), threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            storage.path.write_bytes(b"{" * (n % 7 + 1))
            if n == 100:
                started.set()

    writer = asyncio.create_task(asyncio.to_thread(keep_writing))
    assert await asyncio.to_thread(started.wait, 30)  # the writer is busy before we write
    try:
        with pytest.raises(StorageError, match="another program is writing") as caught:
            await storage.write_auth(AuthData(access_token="AT"))
        assert str(caught.value).endswith("nothing was written: try again")
    finally:
        stop.set()
        await writer
    assert storage.path.read_bytes().startswith(b"{")  # the writer's, not ours


def backend(kind: str, home: Path, name: str) -> FileSystemAuthStorage | KeyringAuthStorage:
    """Two handles on one login, as two processes would have them."""
    if kind == "codex":
        return CodexAuthStorage(home)
    if kind == "keyring":
        keys = PlaintextKeyring()
        keys.file_path = str(home / "keyring.cfg")
        return KeyringAuthStorage(
            name, backend=keys, fallback=FileSystemAuthStorage(home / "fallback", name)
        )
    return FileSystemAuthStorage(home, name)


@pytest.mark.parametrize("kind", ["file", "codex", "keyring"])
async def test_a_logout_during_a_refresh_stays_a_logout_on_every_backend(
    provider_config: ProviderConfig, tmp_path: Path, kind: str
) -> None:
    """log_out() from another handle while the refresh answer is on its way: whatever the
    order, the refresh is stored first (under the lock) and then revoked and deleted; the
    login does not come back."""
    storage = backend(kind, tmp_path, provider_config.name)
    await scripted_login(provider_config, storage)
    await expire(storage)
    held = HeldAnswers()
    manager, task = await refreshing(provider_config, storage, held)
    other = backend(kind, tmp_path, provider_config.name)
    revoked: list[str | None] = []

    async def revoke(auth: AuthData) -> None:
        revoked.append(auth.refresh_token)
        async with TokenClient(provider_config) as client:
            await client.revoke(auth)

    logout = asyncio.create_task(log_out(other, revoke))
    held.release.set()
    await task
    assert await logout is not None
    assert revoked == [held.new_refresh_token()]  # what the refresh stored
    assert await other.read_auth() is None
    assert await storage.read_auth() is None
    assert await is_revoked(provider_config, held.new_refresh_token())
    with pytest.raises(NotAuthenticatedError):
        await manager.refresh()
    await held.done(manager)
