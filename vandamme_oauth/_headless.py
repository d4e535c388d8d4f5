"""Is there a browser that can reach our loopback port? Guess from the environment.

Over SSH, in a container, on Linux without a display, or in WSL (whose Windows browser may
not reach a Linux loopback port), opening a browser here either fails or opens one that
cannot come back to us. The CLI then prints the URL and offers paste-back and the device
login instead of waiting out a timeout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["headless_reason"]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def headless_reason(
    env: Mapping[str, str] | None = None,
    *,
    platform: str = sys.platform,
    exists: Callable[[str], bool] = os.path.exists,
    read: Callable[[str], str] = _read,
) -> str | None:
    """Why a local browser probably cannot complete a loopback login, or None.

    Blocking (reads small files under /proc): call it before the event loop starts or from a
    worker thread.
    """
    env = os.environ if env is None else env
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY") or env.get("SSH_CLIENT"):
        return "an SSH session"
    if exists("/.dockerenv") or exists("/run/.containerenv") or env.get("container"):
        return "a container"
    if platform.startswith("linux"):
        if "microsoft" in read("/proc/sys/kernel/osrelease").lower():
            return "WSL"
        cgroup = read("/proc/1/cgroup")
        if any(word in cgroup for word in ("docker", "kubepods", "containerd", "lxc")):
            return "a container"
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            return "a Linux session without a graphical display"
    return None
