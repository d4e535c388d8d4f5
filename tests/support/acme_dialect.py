"""A second, small provider dialect, as a third-party package would ship it: one module and
one entry-point line (``acme = "tests.support.acme_dialect:DIALECT"``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from vandamme_oauth import Dialect

if TYPE_CHECKING:
    from vandamme_oauth import AuthData


class AcmeDialect(Dialect):
    """ACME's server says ``token_revoked`` for a dead refresh token, and its APIs want the
    account in a header of their own."""

    name: ClassVar[str] = "acme"
    permanent_refresh_errors: ClassVar[frozenset[str]] = frozenset({"token_revoked"})

    def api_headers(self, auth: AuthData) -> dict[str, str]:
        return {**super().api_headers(auth), "Acme-Account": auth.account_id or ""}


DIALECT = AcmeDialect()
NOT_A_DIALECT = object()


class AcmeByClass(AcmeDialect):
    """A dialect whose entry point names its class: the registry makes the instance."""

    name: ClassVar[str] = "acme-class"
