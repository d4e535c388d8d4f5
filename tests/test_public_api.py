"""The public API is exactly what __init__ exports, sorted, and importable."""

from __future__ import annotations

import subprocess
import sys

import vandamme_oauth

CONTRACT = [
    "AuthData",
    "AuthStorage",
    "FileSystemAuthStorage",
    "InMemoryAuthStorage",
    "NotAuthenticatedError",
    "OAuthError",
    "OAuthFlow",
    "ProviderConfig",
    "ReauthenticationRequired",
    "TokenManager",
]


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and lists every public name the package defines."""
    assert vandamme_oauth.__all__ == sorted(vandamme_oauth.__all__)
    lazy = {"RedisAuthStorage"}  # optional extra, resolved by the module's __getattr__
    helpers = {"annotations", "storage", "integrations", "providers", "Any", "TYPE_CHECKING"}
    public = {n for n in vars(vandamme_oauth) if not n.startswith("_")} - helpers
    assert public | lazy == set(vandamme_oauth.__all__)
    for name in lazy:
        assert getattr(vandamme_oauth, name).__name__ == name


def test_contract_names_import() -> None:
    """Every name of the design contract is exported."""
    for name in CONTRACT:
        assert name in vandamme_oauth.__all__
        assert getattr(vandamme_oauth, name).__module__.startswith("vandamme_oauth")


def test_version() -> None:
    """__version__ comes from the installed metadata."""
    assert vandamme_oauth.__version__.count(".") >= 2


def test_import_does_not_load_aiohttp() -> None:
    """Importing the package leaves aiohttp unloaded (only a login needs it)."""
    code = "import sys, vandamme_oauth; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_library_logs_nothing_unless_the_program_asks() -> None:
    """A warning from the library reaches no last-resort handler: a program (or our CLI)
    that reports the problem itself says it once; with logging configured it is there."""
    import subprocess
    import sys

    code = (
        "import logging, vandamme_oauth\n"
        "logging.getLogger('vandamme_oauth.storage._keyring').warning('keyring unusable')\n"
        "logging.basicConfig()\n"
        "logging.getLogger('vandamme_oauth.x').warning('now configured')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stderr == "WARNING:vandamme_oauth.x:now configured\n"


def test_retries_print_nothing_unless_the_program_asks(unused_tcp_port: int) -> None:
    """A discovery retried (through stamina) against a host that refuses connections, in
    a program that configures no logging: only the program's own line reaches stderr, not
    stamina's retry warning. With logging configured, that warning is there."""
    import subprocess
    import sys

    code = (
        "import asyncio, logging, sys, vandamme_oauth\n"
        "async def main():\n"
        "    try:\n"
        f"        await vandamme_oauth.ProviderConfig.discover("
        f"'http://127.0.0.1:{unused_tcp_port}', client_id='c')\n"
        "    except vandamme_oauth.DiscoveryError:\n"
        "        print('discovery failed', file=sys.stderr)\n"
        "asyncio.run(main())\n"
        "if sys.argv[1:] == ['configured']:\n"
        "    logging.basicConfig()\n"
        "    asyncio.run(main())\n"
    )
    quiet, configured = (
        subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        for args in ([], ["configured"])
    )
    assert quiet.stderr == "discovery failed\n"
    assert "WARNING:stamina:stamina.retry_scheduled" in configured.stderr
