"""One watcher per home: every file login of a folder is watched by one task per event loop;
a change wakes only the login whose file changed, renames at once, in-place rewrites within
the rolling slice, and the task ends with its last watcher. Real files in tmp_path; the tests
wait on the watcher's scan count, never on time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import types
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.storage.test_contract import LOGIN
from tests.support.managers import login, manager, watch_adoptions
from vandamme_oauth import FileSystemAuthStorage
from vandamme_oauth.storage import _home_watch
from vandamme_oauth.storage._home_watch import RACY, home_watcher, scan

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.conftest import FakeClock

INTERVAL = 0.005


def watcher_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("vandamme-oauth home watcher") and not t.done()
    ]


class Woken:
    """Consumes ``changes()`` of several logins and records which woke."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.event = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def watch(self, storage: FileSystemAuthStorage) -> None:
        async def consume() -> None:
            async for _ in storage.changes(interval=INTERVAL):
                self.names.append(storage.name)
                self.event.set()

        self.tasks.append(asyncio.create_task(consume()))

    async def until(self, name: str) -> None:
        while name not in self.names:
            self.event.clear()
            await self.event.wait()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.wait(self.tasks)


async def scans(folder: Path, count: int) -> None:
    """Wait until the folder's watcher has ended ``count`` more scans."""
    watcher = home_watcher(folder, INTERVAL)
    target = watcher.scans + count
    while watcher.scans < target:
        await watcher.scanned.wait()


@contextlib.asynccontextmanager
async def logins(folder: Path, names: list[str]) -> AsyncIterator[Woken]:
    """``names`` stored in ``folder``, each watched; yields once every watcher is in place."""
    woken = Woken()
    for name in names:
        await FileSystemAuthStorage(folder, name).write_auth(LOGIN)
    for name in names:
        woken.watch(FileSystemAuthStorage(folder, name))
    watcher = home_watcher(folder, INTERVAL)
    while watcher.watched < len(names):  # the first registration starts the scans
        await watcher.scanned.wait()
    try:
        yield woken
    finally:
        await woken.stop()


async def test_one_task_watches_a_home_and_wakes_only_the_changed_login(tmp_path: Path) -> None:
    """Three logins, one task; another program replacing b's file wakes b only, and a and c
    stay asleep through later scans."""
    async with logins(tmp_path, ["a", "b", "c"]) as woken:
        assert len(watcher_tasks()) == 1
        await FileSystemAuthStorage(tmp_path, "b").write_auth(LOGIN.replace(access_token="B2"))
        await woken.until("b")
        await scans(tmp_path, 3)
        assert woken.names == ["b"]


async def test_two_quick_renames_are_both_seen(tmp_path: Path) -> None:
    """A second replacement right after the first (the folder's mtime may not move between
    them on a coarse filesystem clock) wakes the login again."""
    async with logins(tmp_path, ["a"]) as woken:
        storage = FileSystemAuthStorage(tmp_path, "a")
        await storage.write_auth(LOGIN.replace(access_token="A2"))
        await woken.until("a")
        await storage.write_auth(LOGIN.replace(access_token="A3", refresh_token="R3"))
        while woken.names.count("a") < 2:
            woken.event.clear()
            await woken.event.wait()


@pytest.fixture
def small_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two files a scan when the folder did not change, and a folder mtime trusted at once."""
    monkeypatch.setattr(_home_watch, "SLICE", 2)
    monkeypatch.setattr(_home_watch, "RACY", -10.0)


@pytest.mark.usefixtures("small_slice")
async def test_an_in_place_rewrite_is_found_by_the_rolling_slice(tmp_path: Path) -> None:
    """More logins than the slice, and a program rewriting one file in place (the folder
    does not change): the rolling slice reaches it, and only it wakes."""
    names = ["a", "b", "c", "d", "e"]
    async with logins(tmp_path, names) as woken:
        await scans(tmp_path, 1)
        path = FileSystemAuthStorage(tmp_path, "d").path
        folder_before = (tmp_path.stat().st_mtime_ns, tmp_path.stat().st_ino)
        with path.open("r+b") as file:  # in place: same inode, new content and size
            file.write(path.read_bytes().replace(b"}", b', "x": 1}', 1))
            file.truncate()
        assert (tmp_path.stat().st_mtime_ns, tmp_path.stat().st_ino) == folder_before
        await woken.until("d")
        await scans(tmp_path, 3)
        assert woken.names == ["d"]


@pytest.mark.usefixtures("small_slice")
async def test_a_replaced_file_beyond_the_slice_is_seen_at_the_next_scan(tmp_path: Path) -> None:
    """A rename changes the folder, so every watched file is looked at in the next scan,
    however many there are."""
    names = ["a", "b", "c", "d", "e"]
    async with logins(tmp_path, names) as woken:
        await scans(tmp_path, 1)
        watcher = home_watcher(tmp_path, INTERVAL)
        before = watcher.scans
        await FileSystemAuthStorage(tmp_path, "e").write_auth(LOGIN.replace(access_token="E2"))
        await woken.until("e")
        assert watcher.scans - before <= 2  # the scan under way, at most, then the next
        assert woken.names == ["e"]


async def test_the_task_ends_with_its_last_watcher(tmp_path: Path) -> None:
    """When every login stops watching, the task is gone and the folder forgotten; a new
    watcher starts a new one."""
    async with logins(tmp_path, ["a", "b"]):
        (task,) = watcher_tasks()
    await asyncio.wait({task})
    assert task.cancelled()
    assert not watcher_tasks()
    assert (tmp_path, INTERVAL) not in _home_watch._WATCHERS[asyncio.get_running_loop()]
    async with logins(tmp_path, ["a"]):
        assert len(watcher_tasks()) == 1


async def test_many_managers_of_one_home_share_one_watcher(
    tmp_path: Path, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    """Twenty managers on twenty logins of one home: one watcher task; a re-login of one
    by another program is adopted by its manager, and no other manager looks at storage."""
    names = [f"user{i}" for i in range(20)]
    for name in names:
        await FileSystemAuthStorage(tmp_path, name).write_auth(login(clock))
    managers = [
        manager(FileSystemAuthStorage(tmp_path, n), clock, http, watch_interval=INTERVAL)
        for n in names
    ]
    adoptions = [watch_adoptions(m) for m in managers]
    async with contextlib.AsyncExitStack() as stack:
        for m in managers:
            await stack.enter_async_context(m)
            assert await m.get_access_token() == "AT0"
        watcher = home_watcher(tmp_path, INTERVAL)
        while watcher.watched < len(names):
            await watcher.scanned.wait()
        assert len(watcher_tasks()) == 1
        relogin = login(clock, token="NEW").replace(refresh_token="RNEW")
        await FileSystemAuthStorage(tmp_path, "user7").write_auth(relogin)
        await adoptions[7].wait()
        assert await managers[7].get_access_token() == "NEW"
        await scans(tmp_path, 3)
        assert [i for i, event in enumerate(adoptions) if event.is_set()] == [7]
    assert not watcher_tasks()


# -- what one scan looks at (the function the worker thread runs) -------------------------------


def folder_of(tmp_path: Path, names: str) -> tuple[Path, list[Path]]:
    """A folder holding one file per letter of ``names``, last changed 10 s ago."""
    folder = tmp_path / "home"
    folder.mkdir()
    files = []
    for name in names:
        (folder / name).write_text(name)
        files.append(folder / name)
    past = (folder.stat().st_mtime_ns - 10 * 10**9,) * 2
    os.utime(folder, ns=past)
    return folder, files


def test_an_unchanged_folder_gets_a_rolling_slice_of_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slice of 2, five files: a first scan (no folder stat before) looks at all five;
    then, the folder unchanged, two a scan, in order, wrapping around, so that every file
    is looked at within three scans."""
    monkeypatch.setattr(_home_watch, "SLICE", 2)
    folder, (a, b, c, d, e) = folder_of(tmp_path, "abcde")
    watched = [a, b, c, d, e]
    before, stats, cursor = scan(folder, watched, None, 0)
    assert (list(stats), cursor) == (watched, 0)
    assert stats[a] == _home_watch.stat_of(a)
    looked = []
    for _ in range(4):
        now, stats, cursor = scan(folder, watched, before, cursor)
        assert now == before
        looked.append((list(stats), cursor))
    assert looked == [([a, b], 2), ([c, d], 4), ([e, a], 6), ([b, c], 3)]


def test_a_changed_folder_or_one_no_bigger_than_the_slice_is_looked_at_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename into the folder changes its stat: every file is looked at, and the slice
    starts again; so is a folder with no more files than the slice."""
    monkeypatch.setattr(_home_watch, "SLICE", 2)
    folder, (a, b, c) = folder_of(tmp_path, "abc")
    before, _, _ = scan(folder, [a, b, c], None, 0)
    (folder / "new").write_text("x")
    os.replace(folder / "new", folder / "d")
    os.utime(folder, ns=(folder.stat().st_mtime_ns - 10 * 10**9,) * 2)
    now, stats, cursor = scan(folder, [a, b, c], before, 1)
    assert now != before
    assert (list(stats), cursor) == ([a, b, c], 0)
    _, stats, cursor = scan(folder, [a, b], now, 1)
    assert (list(stats), cursor) == ([a, b], 0)


def test_a_folder_changed_within_the_racy_window_is_looked_at_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder mtime less than RACY seconds old may hide a second rename in the same tick:
    every file is looked at, to the last nanosecond of the window; from its end, a slice."""
    monkeypatch.setattr(_home_watch, "SLICE", 2)
    folder, watched = folder_of(tmp_path, "abcde")
    mtime = folder.stat().st_mtime_ns
    before, _, _ = scan(folder, watched, None, 0)
    window = int(RACY * 10**9)
    for age, expected in ((window - 1, watched), (window, watched[:2])):
        clock = types.SimpleNamespace(time_ns=lambda age=age: mtime + age)
        monkeypatch.setattr(_home_watch, "time", clock)
        _, stats, _ = scan(folder, watched, before, 0)
        assert list(stats) == expected, age


@pytest.mark.usefixtures("small_slice")
async def test_a_scan_of_an_unchanged_home_stats_only_the_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost of watching: once the folder is known, each interval ``stat``s SLICE files
    (2 here), not one per login, and three intervals cover five logins."""
    names = ["a", "b", "c", "d", "e"]
    seen: list[Path] = []
    stat_of = _home_watch.stat_of

    def counted(path: Path) -> _home_watch.Stat:
        seen.append(path)
        return stat_of(path)

    async with logins(tmp_path, names):
        watcher = home_watcher(tmp_path, INTERVAL)
        await scans(tmp_path, 1)  # a scan that knew the folder
        monkeypatch.setattr(_home_watch, "stat_of", counted)
        # Here no scan is under way: the next one starts after the watcher's sleep, which
        # this task ends before (woken by the scan's end, ahead of the sleep's timer).
        before = watcher.scans
        await scans(tmp_path, 3)
        assert watcher.scans == before + 3
        assert len(seen) == 6
        assert {p.stem for p in seen} == set(names)


async def test_each_home_and_interval_has_its_own_watcher(tmp_path: Path) -> None:
    """Two homes: two watchers, each waking its own logins."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert home_watcher(one, INTERVAL) is home_watcher(one, INTERVAL)
    assert home_watcher(one, INTERVAL) is not home_watcher(two, INTERVAL)
    assert home_watcher(one, INTERVAL) is not home_watcher(one, 2 * INTERVAL)
    async with logins(one, ["a"]) as woken_one, logins(two, ["a"]) as woken_two:
        assert len(watcher_tasks()) == 2
        await FileSystemAuthStorage(two, "a").write_auth(LOGIN.replace(access_token="A2"))
        await woken_two.until("a")
        await scans(one, 2)
        assert woken_one.names == []


async def test_a_watcher_that_starts_again_is_the_homes_watcher_again(tmp_path: Path) -> None:
    """A watcher whose last login left is forgotten; when a block still holding it starts
    it again (a login that got it before the last one left), it is the home's watcher
    again, so the next login joins it instead of starting a second task."""
    await FileSystemAuthStorage(tmp_path, "a").write_auth(LOGIN)
    path = FileSystemAuthStorage(tmp_path, "a").path
    watcher = home_watcher(tmp_path, INTERVAL)
    async with watcher.watching(path):
        pass
    assert (tmp_path, INTERVAL) not in _home_watch._WATCHERS[asyncio.get_running_loop()]
    async with watcher.watching(path):
        assert home_watcher(tmp_path, INTERVAL) is watcher
        async with logins(tmp_path, ["b"]):
            assert len(watcher_tasks()) == 1
