"""Headless detection from the environment (SSH, containers, WSL, no display)."""

from __future__ import annotations

import pytest

from vandamme_oauth._headless import headless_reason


@pytest.mark.parametrize(
    ("env", "platform", "files", "reads", "expected"),
    [
        ({"SSH_CONNECTION": "1 2 3 4", "DISPLAY": ":0"}, "linux", set(), {}, "an SSH session"),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", set(), {}, "an SSH session"),
        ({"DISPLAY": ":0"}, "linux", {"/.dockerenv"}, {}, "a container"),
        ({"DISPLAY": ":0", "container": "podman"}, "linux", set(), {}, "a container"),
        (
            {"DISPLAY": ":0"},
            "linux",
            set(),
            {"/proc/1/cgroup": "0::/kubepods/besteffort/pod1"},
            "a container",
        ),
        (
            {"DISPLAY": ":0"},
            "linux",
            set(),
            {"/proc/sys/kernel/osrelease": "5.15.90.1-microsoft-standard-WSL2"},
            "WSL",
        ),
        ({}, "linux", set(), {}, "a Linux session without a graphical display"),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", set(), {}, None),
        ({"DISPLAY": ":0"}, "linux", set(), {"/proc/1/cgroup": "0::/init.scope"}, None),
        ({}, "darwin", set(), {}, None),
        ({}, "win32", set(), {}, None),
    ],
)
def test_headless_reason(
    env: dict[str, str],
    platform: str,
    files: set[str],
    reads: dict[str, str],
    expected: str | None,
) -> None:
    """Each situation is recognised; a desktop session is not headless."""
    assert (
        headless_reason(
            env, platform=platform, exists=files.__contains__, read=lambda p: reads.get(p, "")
        )
        == expected
    )
