"""The public API is exactly what __init__ exports, sorted, and importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vandamme_oauth
from tests.support.interpreters import python_without

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
    lazy = set(vandamme_oauth._LAZY)  # loaded on first use by the module's __getattr__
    helpers = {"annotations", "storage", "integrations", "providers", "Any", "TYPE_CHECKING"}
    public = {n for n in vars(vandamme_oauth) if not n.startswith("_")} - helpers
    assert public | lazy == set(vandamme_oauth.__all__)
    for name in sorted(lazy):
        assert getattr(vandamme_oauth, name).__name__ == name
    assert sorted(vandamme_oauth.__all__) == [n for n in dir(vandamme_oauth) if n in lazy | public]


def test_contract_names_import() -> None:
    """Every name of the design contract is exported."""
    for name in CONTRACT:
        assert name in vandamme_oauth.__all__
        assert getattr(vandamme_oauth, name).__module__.startswith("vandamme_oauth")


def test_version() -> None:
    """__version__ comes from the installed metadata."""
    assert vandamme_oauth.__version__.count(".") >= 2


def test_import_loads_only_what_the_hot_path_needs() -> None:
    """Importing the manager and the file storage leaves aiohttp, the logins, the other
    backends and every provider dialect unloaded: they load on first use."""
    code = (
        "import sys\nfrom vandamme_oauth import FileSystemAuthStorage, TokenManager\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "vandamme_oauth._token_manager" in loaded
    unneeded = {
        "aiohttp",
        "itsdangerous",
        "redis",
        "vandamme_oauth._flow",
        "vandamme_oauth._device",
        "vandamme_oauth._profiles",
        "vandamme_oauth.integrations._web_login",
        "vandamme_oauth.storage._codex",
        "vandamme_oauth.storage._keyring",
        "vandamme_oauth.providers.chatgpt",
        "importlib.metadata",
    }
    assert sorted(unneeded & loaded) == []


def test_a_star_import_works_without_the_redis_extra(tmp_path: Path) -> None:
    """``from vandamme_oauth import *`` in an interpreter without redis imports every other
    public name; asking for RedisAuthStorage there says which install fixes it."""
    code = (
        "from vandamme_oauth import *"
        "\nimport sys, vandamme_oauth"
        "\nassert 'redis' not in sys.modules"
        "\nprint(' '.join(n for n in vandamme_oauth.__all__ if n in globals()))"
        "\ntry:\n    from vandamme_oauth import RedisAuthStorage"
        "\nexcept ImportError as exc:\n    print(exc)"
    )
    command = [*python_without(tmp_path, "redis"), code]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    names, error = result.stdout.splitlines()
    assert names.split() == [n for n in vandamme_oauth.__all__ if n != "RedisAuthStorage"]
    assert error == "RedisAuthStorage needs the redis extra: pip install 'vandamme-oauth[redis]'"


def test_a_star_import_with_the_redis_extra_includes_it() -> None:
    """With redis installed, a star import brings RedisAuthStorage too."""
    namespace: dict[str, object] = {}
    exec("from vandamme_oauth import *", namespace)  # noqa: S102 - the star import under test
    assert sorted(n for n in namespace if not n.startswith("_")) == vandamme_oauth.__all__
    assert "RedisAuthStorage" in vandamme_oauth.__all__


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


def test_a_bare_import_loads_only_the_exceptions() -> None:
    """``import vandamme_oauth`` loads the exception tree and nothing else of ours; the
    subpackages are there on first use."""
    code = (
        "import sys, vandamme_oauth\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('vandamme_oauth'))))\n"
        "print(vandamme_oauth.storage.FileSystemAuthStorage.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, name = out.stdout.splitlines()
    assert loaded.split() == ["vandamme_oauth", "vandamme_oauth._exceptions"]
    assert name == "FileSystemAuthStorage"
