"""Saved provider configurations beside the logins: ``{home}/{name}.provider.json``.

The login flows store the provider of each login they make (through the storage's
``remember_provider``), so ``status``, ``token`` and ``logout`` know the endpoints without
discovering them again. Provider files hold no secrets but are still 0600; a registration's
secrets go to the OS keyring when there is one, else into its 0600 ``{name}.registration``
file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ._exceptions import NotAuthenticatedError, StorageError, ValidationError
from ._login import login_name
from ._provider import ProviderConfig
from ._registration import Registration
from ._secrets import KeyringUnusable, delete_secrets, os_keyring, read_secrets, store_secrets
from .storage._filesystem import FileSystemAuthStorage

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable
    from pathlib import Path

__all__ = [
    "delete_provider",
    "load_provider",
    "load_registration",
    "open_login",
    "save_registration",
]


def _path(home: Path, name: str) -> Path:
    return home / f"{name}.provider.json"


def _registration_path(home: Path, name: str) -> Path:
    return home / f"{name}.registration"


#: The secrets a registration holds: in the OS keyring when there is one, else in its file.
_SECRETS = ("client_secret", "registration_access_token")


def _load_registration_sync(home: Path, name: str) -> Registration | None:
    path = _registration_path(home, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the registration file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("client_id"), str):
        raise StorageError(f"the registration file {path} holds no client_id")
    if data.get("secrets") == "keyring":
        try:
            secrets = read_secrets(name)
        except KeyringUnusable as exc:
            raise StorageError(
                f"the client secret of login {name!r} is in the OS keyring, which cannot be "
                f"read now ({exc}); unlock the keyring and run the command again"
            ) from None
        data.update({k: v for k, v in secrets.items() if k in _SECRETS})
    known = {f.name for f in dataclasses.fields(Registration)}
    fields = {k: v for k, v in data.items() if k in known}
    if isinstance(fields.get("grant_types"), list):
        fields["grant_types"] = tuple(fields["grant_types"])
    return Registration(**fields)


async def load_registration(home: Path, name: str) -> Registration | None:
    """The client registered for login ``name`` (RFC 7591), with its secrets, or None.

    Raises:
        StorageError: the file is unreadable, or its secrets are in a keyring that cannot be
            read now.
    """
    return await anyio.to_thread.run_sync(_load_registration_sync, home, name)


async def save_registration(
    home: Path,
    name: str,
    registration: Registration,
    *,
    on_fallback: Callable[[str], object] | None = None,
) -> None:
    """Keep the client registered for login ``name`` beside its profile, atomically, in a
    0600 file in the 0700 home; its secrets (client secret, management token) in the OS
    keyring when there is one (`_secrets`), else in that file; never printed by ``status``.
    A keyring that is there but fails is told to ``on_fallback`` once, and the file used."""
    secrets = {k: v for k in _SECRETS if isinstance(v := getattr(registration, k), str)}
    storage = FileSystemAuthStorage(home, name)
    path = _registration_path(home, name)

    def write() -> str | None:
        document: dict[str, Any] = dataclasses.asdict(registration)
        reason = None
        backend = os_keyring() if secrets else None
        if backend is not None:
            try:
                store_secrets(backend, name, secrets)
            except KeyringUnusable as exc:
                reason = str(exc)
            else:
                document = {**registration.to_dict(), "secrets": "keyring"}
        storage._ensure_home()
        storage._replace_with(json.dumps(document, indent=2).encode(), path)
        return reason

    reason = await anyio.to_thread.run_sync(write)
    if reason is not None and on_fallback is not None:
        on_fallback(
            f"The OS keyring is unusable ({reason}); keeping the client's secrets in {path}."
        )


def _load_sync(home: Path, name: str, client_secret: str | None) -> ProviderConfig | None:
    path = _path(home, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if name == "chatgpt":
            return ProviderConfig.chatgpt()
        return None
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read the provider file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StorageError(f"the provider file {path} is not a JSON object")
    if client_secret is None and data.get("token_endpoint_auth_method", "none") != "none":
        registration = _load_registration_sync(home, name)  # a registered secret, if any
        if registration is not None and registration.client_id == data.get("client_id"):
            client_secret = registration.client_secret
    try:
        return ProviderConfig.from_dict(data, client_secret=client_secret)
    except ValidationError as exc:
        raise StorageError(f"the provider file {path} is invalid: {exc.message}") from None


async def delete_provider(home: Path, name: str) -> str | None:
    """Forget the saved provider of login ``name`` and its registration, secrets included
    (no error if there is none). None when all is gone; else why the secrets kept in the
    OS keyring could not be deleted."""

    def delete() -> str | None:
        registration = _registration_path(home, name)
        try:
            in_keyring = json.loads(registration.read_text(encoding="utf-8")).get("secrets")
        except (OSError, ValueError, AttributeError):
            in_keyring = None
        reason = delete_secrets(name) if in_keyring == "keyring" else None
        _path(home, name).unlink(missing_ok=True)
        registration.unlink(missing_ok=True)
        return reason

    return await anyio.to_thread.run_sync(delete)


async def load_provider(
    home: Path, name: str, *, client_secret: str | None = None
) -> ProviderConfig | None:
    """The saved provider of login ``name`` (the ChatGPT preset for ``chatgpt``), or None.
    A confidential client's secret is not saved: pass it as ``client_secret``."""
    return await anyio.to_thread.run_sync(_load_sync, home, name, client_secret)


async def open_login(
    name: str | None = None,
    *,
    issuer: str | None = None,
    client_id: str | None = None,
    scopes: Iterable[str] = ("openid", "offline_access"),
    home: str | os.PathLike[str] | None = None,
    client_secret: str | None = None,
) -> tuple[ProviderConfig, FileSystemAuthStorage]:
    """The provider and storage of a login in a home folder, ready for a
    [`TokenManager`][vandamme_oauth.TokenManager].

    ``open_login("work")`` opens a login made by ``vandamme-oauth login`` (or by a flow into
    a [`FileSystemAuthStorage`][vandamme_oauth.FileSystemAuthStorage]) with its saved provider;
    ``open_login()`` is the ChatGPT login. ``open_login(issuer=..., client_id=...)`` discovers the
    provider and opens the login the CLI makes for it (named after the issuer unless ``name`` is
    given).

    Raises:
        ValidationError: ``issuer`` without ``client_id``, or the other way round.
        NotAuthenticatedError: no login by that name has a saved provider (the message
            names the command that makes one).
        DiscoveryError: the issuer's metadata could not be used.
    """
    if (issuer is None) != (client_id is None):
        raise ValidationError("issuer and client_id go together: give both or neither")
    storage_home = FileSystemAuthStorage(home).home_dir
    if issuer is not None and client_id is not None:
        name = name or login_name(issuer)
        provider = await ProviderConfig.discover(
            issuer, client_id=client_id, scopes=scopes, name=name, client_secret=client_secret
        )
        return provider, FileSystemAuthStorage(storage_home, name)
    name = name or "chatgpt"
    saved = await load_provider(storage_home, name, client_secret=client_secret)
    if saved is None:
        raise NotAuthenticatedError(
            f"no login named {name!r} in {storage_home}; log in first: vandamme-oauth login "
            f"--issuer URL --client-id ID --name {name}"
        )
    return saved, FileSystemAuthStorage(storage_home, name)
