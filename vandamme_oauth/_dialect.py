"""Provider dialects: what a provider may say beyond plain OAuth data, and where to find one.

A [`ProviderConfig`][vandamme_oauth.ProviderConfig] carries its dialect (`STANDARD`, plain RFC
behaviour, unless a preset says otherwise). The core asks the dialect, the way httpx's client
calls an ``Auth`` without knowing its scheme, and never imports one: refresh error codes that
mean "log in again" besides ``invalid_grant``, a device-code variant, the headers an API
expects, the command that logs in again, a preset.

Dialects are found by name through the entry-point group ``vandamme_oauth.dialects`` (the
ChatGPT dialect registers itself there too), so a third-party package adds one with one
module and one line in its ``pyproject.toml``::

    [project.entry-points."vandamme_oauth.dialects"]
    acme = "acme_oauth:DIALECT"

Saved profiles store the dialect's name; loading one finds the dialect again by that name.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any, ClassVar

from ._exceptions import ValidationError
from ._login import login_name

if TYPE_CHECKING:
    from ._device_codes import DeviceVariant
    from ._login import AuthData
    from ._provider import ProviderConfig

__all__ = ["ENTRY_POINT_GROUP", "STANDARD", "Dialect", "dialect_named"]

ENTRY_POINT_GROUP = "vandamme_oauth.dialects"


class Dialect:
    """The base of every dialect: plain OAuth 2.0 (RFC 6749, 8628, 6750). Subclass it and
    override what your provider says differently; a dialect is stateless and shared.

    Attributes:
        name: The dialect's name: its entry point's name and what saved profiles store.
        permanent_refresh_errors: Refresh error codes that, like ``invalid_grant`` and HTTP
            401, mean the refresh token is dead and the user must log in again.
    """

    name: ClassVar[str] = "standard"
    permanent_refresh_errors: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        return f"<{self.name} dialect>"

    def device_variant(self) -> DeviceVariant | None:
        """The provider's own device-code variant, or None for RFC 8628."""
        return None

    def api_headers(self, auth: AuthData) -> dict[str, str]:
        """The headers a request to the provider's APIs carries for ``auth`` (RFC 6750
        ``Authorization: Bearer``; a dialect may add its own)."""
        return {"Authorization": f"Bearer {auth.access_token}"}

    def login_command(self, provider: ProviderConfig) -> str:
        """The CLI command that makes a login for ``provider`` in the default home."""
        parts = ["vandamme-oauth", "login", "--issuer", provider.issuer]
        parts += ["--client-id", provider.client_id]
        parts += [arg for scope in provider.scopes for arg in ("--scope", scope)]
        if provider.name != login_name(provider.issuer):
            parts += ["--name", provider.name]
        return shlex.join(parts)

    def preset(self, **options: Any) -> ProviderConfig:
        """A ready-made provider of this dialect (``options`` are the dialect's own).

        Raises:
            ValidationError: the dialect has no preset.
        """
        raise ValidationError(f"the {self.name} dialect has no preset: configure the provider")


#: Plain OAuth: the dialect of every provider that does not name another.
STANDARD = Dialect()

_found: dict[str, Dialect] = {STANDARD.name: STANDARD}


def dialect_named(name: str) -> Dialect:
    """The dialect registered under ``name`` (``"standard"``, or an entry point of the
    ``vandamme_oauth.dialects`` group, loaded on first use).

    Raises:
        ValidationError: no installed package provides that dialect, or its entry point
            does not name a `Dialect`.
    """
    if (known := _found.get(name)) is not None:
        return known
    from importlib.metadata import entry_points  # slow to import: only a lookup needs it

    for point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        dialect = point.load()
        if isinstance(dialect, type) and issubclass(dialect, Dialect):
            dialect = dialect()
        if not isinstance(dialect, Dialect) or dialect.name != name:
            raise ValidationError(
                f"the entry point {point.value!r} for dialect {name!r} is not a Dialect "
                f"named {name!r}"
            )
        _found[name] = dialect
        return dialect
    raise ValidationError(
        f"no provider dialect named {name!r} is installed (entry points of "
        f"{ENTRY_POINT_GROUP!r}): install the package that provides it"
    )
