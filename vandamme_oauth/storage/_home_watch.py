"""One watcher per folder of logins: every file login in one home, in one event loop, is
watched by one task, whatever the number of logins.

Each interval the task makes one trip to a worker thread. There it reads the folder's own
``stat`` (a rename into the folder, which is how this library and most programs replace a
file, changes the folder's mtime) and ``stat``s the watched files only when the folder
changed, or while its mtime is too recent to be trusted (two renames within one tick of a
coarse filesystem clock leave the same mtime: the "racy" window, as git calls it), plus a
rolling slice of at most `SLICE` watched files, which catches a program that rewrites a
file in place (the Codex CLI does). A change wakes only the logins whose file changed.

At 10,000 logins an interval costs one folder ``stat`` and 256 file ``stat``s; a rename is
seen within one interval, an in-place rewrite within ``ceil(logins / 256)`` intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import weakref
from typing import TYPE_CHECKING

import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from pathlib import Path

__all__ = ["SLICE", "HomeWatcher", "home_watcher"]

#: Watched files ``stat``ed each interval when the folder did not change.
SLICE = 256
#: Seconds a folder mtime must be older than now before it is trusted to catch the next
#: rename (filesystem clocks tick in up to 10 ms on Linux, 2 s on FAT).
RACY = 2.0

Stat = tuple[int, int, int] | None


def stat_of(path: str | os.PathLike[str]) -> Stat:
    """What changes when a file is replaced, rewritten or removed: inode, mtime, size."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _folder_stat(folder: Path) -> tuple[Stat, int]:
    try:
        st = os.stat(folder)
    except OSError:
        return None, 0
    return (st.st_ino, st.st_mtime_ns, st.st_nlink), st.st_mtime_ns


def scan(
    folder: Path, watched: list[Path], folder_before: Stat, cursor: int
) -> tuple[Stat, dict[Path, Stat], int]:
    """In a worker thread: the folder's stat, the stats of the files to look at this
    interval, and the next rolling cursor."""
    folder_now, mtime_ns = _folder_stat(folder)
    racy = time.time_ns() - mtime_ns < RACY * 1e9
    if folder_now != folder_before or racy or len(watched) <= SLICE:
        chosen: Iterable[Path] = watched
        cursor = 0
    else:
        cursor %= len(watched)
        chosen = watched[cursor : cursor + SLICE]
        if len(chosen) < SLICE:
            chosen = [*chosen, *watched[: SLICE - len(chosen)]]
        cursor += SLICE
    return folder_now, {path: stat_of(path) for path in chosen}, cursor


class HomeWatcher:
    """The files of one folder watched by one task; see the module's docstring."""

    def __init__(self, folder: Path, interval: float) -> None:
        self.folder = folder
        self.interval = interval
        self._interests: dict[Path, set[asyncio.Event]] = {}
        self._stats: dict[Path, Stat] = {}
        self._task: asyncio.Task[None] | None = None
        #: How many scans ended (tests wait on it instead of sleeping).
        self.scans = 0
        self.scanned = asyncio.Event()

    @property
    def watched(self) -> int:
        """How many files have at least one watcher."""
        return len(self._interests)

    @contextlib.asynccontextmanager
    async def watching(self, path: Path) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``path`` changes, for as long as the block runs."""
        event = asyncio.Event()
        interested = self._interests.get(path)
        if interested is None:
            # The baseline: a change from here on wakes the block.
            baseline = await anyio.to_thread.run_sync(stat_of, path)
            interested = self._interests.get(path)  # another block may have come meanwhile
            if interested is None:
                interested = self._interests[path] = set()
                self._stats[path] = baseline
        interested.add(event)
        if self._task is None:
            _remember(self)
            self._task = asyncio.create_task(
                self._run(), name=f"vandamme-oauth home watcher {self.folder}"
            )
        try:
            yield event
        finally:
            interested.discard(event)
            if not interested and self._interests.get(path) is interested:
                del self._interests[path]
                self._stats.pop(path, None)
            if not self._interests and self._task is not None:
                self._task.cancel()
                self._task = None
                _forget(self)

    async def _run(self) -> None:
        folder: Stat = None
        cursor = 0
        while True:
            await asyncio.sleep(self.interval)
            watched = list(self._interests)
            folder, stats, cursor = await anyio.to_thread.run_sync(
                scan, self.folder, watched, folder, cursor
            )
            for path, current in stats.items():
                if path not in self._interests or self._stats.get(path) == current:
                    continue  # no longer watched, or unchanged
                self._stats[path] = current
                for event in self._interests[path]:
                    event.set()
            self.scans += 1
            scanned, self.scanned = self.scanned, asyncio.Event()
            scanned.set()


_WATCHERS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Path, float], HomeWatcher]
] = weakref.WeakKeyDictionary()


def home_watcher(folder: Path, interval: float) -> HomeWatcher:
    """The watcher of ``folder`` at ``interval`` in the running event loop."""
    watchers = _WATCHERS.setdefault(asyncio.get_running_loop(), {})
    key = (folder, interval)
    found = watchers.get(key)
    if found is None:
        found = watchers[key] = HomeWatcher(folder, interval)
    return found


def _remember(watcher: HomeWatcher) -> None:
    watchers = _WATCHERS.setdefault(asyncio.get_running_loop(), {})
    watchers.setdefault((watcher.folder, watcher.interval), watcher)


def _forget(watcher: HomeWatcher) -> None:
    with contextlib.suppress(RuntimeError):
        watchers = _WATCHERS.get(asyncio.get_running_loop(), {})
        if watchers.get((watcher.folder, watcher.interval)) is watcher:
            del watchers[watcher.folder, watcher.interval]
