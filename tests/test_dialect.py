"""Dialects: the standard one, the registry fed by the ``vandamme_oauth.dialects`` entry
points (a test package's dialect included), and what the core asks of a dialect."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from tests.support import acme_dialect
from tests.test_protocol import GENERIC, NOW
from vandamme_oauth import (
    AuthData,
    Dialect,
    ProviderConfig,
    ReauthenticationRequired,
    TokenEndpointError,
    ValidationError,
    dialect_named,
)
from vandamme_oauth._token_response import parse_token_response

if TYPE_CHECKING:
    from pathlib import Path


def install_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str) -> None:
    """A distribution on sys.path whose entry points are ``lines`` (group
    vandamme_oauth.dialects), as `pip install` of a third-party dialect leaves it."""
    info = tmp_path / "acme_oauth-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-oauth\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[vandamme_oauth.dialects]\n{lines}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dialect:
    """The ACME dialect, found by name through its entry point."""
    install_entry_points(tmp_path, monkeypatch, "acme = tests.support.acme_dialect:DIALECT")
    return dialect_named("acme")


def test_a_third_party_dialect_is_found_by_its_entry_point(acme: Dialect) -> None:
    """One module and one entry-point line: the registry finds it by name, once."""
    assert acme is acme_dialect.DIALECT
    assert dialect_named("acme") is acme


def test_a_saved_profile_brings_its_dialect_back(acme: Dialect) -> None:
    """A profile stores the dialect's name; loading it finds the same dialect."""
    provider = GENERIC.replace(dialect=acme)
    saved = json.loads(json.dumps(provider.to_dict()))
    assert saved["dialect"] == "acme"
    assert ProviderConfig.from_dict(saved) == provider
    assert ProviderConfig.from_dict(saved).dialect is acme
    assert GENERIC.to_dict()["dialect"] == "standard"
    legacy = {k: v for k, v in GENERIC.to_dict().items() if k != "dialect"}
    assert ProviderConfig.from_dict(legacy).dialect is dialect_named("standard")


def test_the_dialects_refresh_codes_mean_log_in_again(acme: Dialect) -> None:
    """A code the dialect names is a dead refresh token for its provider only."""
    body = b'{"error": "token_revoked"}'
    with pytest.raises(ReauthenticationRequired):
        parse_token_response(
            400, body, provider=GENERIC.replace(dialect=acme), now=NOW, grant="refresh_token"
        )
    with pytest.raises(TokenEndpointError) as caught:
        parse_token_response(400, body, provider=GENERIC, now=NOW, grant="refresh_token")
    assert not isinstance(caught.value, ReauthenticationRequired)


def test_the_dialects_headers_and_the_standard_ones(acme: Dialect) -> None:
    """The standard dialect sends a bearer token; ACME adds its account header."""
    auth = AuthData(access_token="AT", account_id="acct-1")
    assert dialect_named("standard").api_headers(auth) == {"Authorization": "Bearer AT"}
    assert acme.api_headers(auth) == {"Authorization": "Bearer AT", "Acme-Account": "acct-1"}
    assert acme.device_variant() is None
    with pytest.raises(ValidationError, match="the acme dialect has no preset"):
        acme.preset()


def test_the_standard_login_command_names_issuer_client_scopes_and_name() -> None:
    """The command that logs in again, shell-quoted; --name only when it is not derived."""
    dialect = dialect_named("standard")
    provider = GENERIC.replace(scopes=("openid", "read write"))
    assert dialect.login_command(provider) == (
        f"vandamme-oauth login --issuer {GENERIC.issuer} --client-id {GENERIC.client_id} "
        f"--scope openid --scope 'read write' --name {GENERIC.name}"
    )


def test_an_unknown_dialect_is_one_line_naming_what_to_install() -> None:
    """No package provides it: a ValidationError saying so."""
    with pytest.raises(ValidationError) as caught:
        dialect_named("nobody-ships-this")
    assert str(caught.value) == (
        "no provider dialect named 'nobody-ships-this' is installed (entry points of "
        "'vandamme_oauth.dialects'): install the package that provides it"
    )
    with pytest.raises(ValidationError, match="nobody-ships-this"):
        ProviderConfig.from_dict({**GENERIC.to_dict(), "dialect": "nobody-ships-this"})


def test_an_entry_point_that_is_not_a_dialect_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point naming something else, or a dialect of another name, is refused."""
    install_entry_points(
        tmp_path,
        monkeypatch,
        "broken = tests.support.acme_dialect:NOT_A_DIALECT\n"
        "misnamed = tests.support.acme_dialect:AcmeDialect",
    )
    with pytest.raises(ValidationError, match="is not a Dialect named 'broken'"):
        dialect_named("broken")
    with pytest.raises(ValidationError, match="is not a Dialect named 'misnamed'"):
        dialect_named("misnamed")


def test_a_provider_needs_a_dialect_object() -> None:
    """A dialect's name where the object belongs is refused."""
    with pytest.raises(ValidationError, match="dialect must be a Dialect, not str"):
        GENERIC.replace(dialect="acme")


def test_an_entry_point_may_name_the_dialects_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point naming a Dialect subclass gives an instance of it."""
    install_entry_points(
        tmp_path, monkeypatch, "acme-class = tests.support.acme_dialect:AcmeByClass"
    )
    dialect = dialect_named("acme-class")
    assert type(dialect) is acme_dialect.AcmeByClass
    assert dialect.permanent_refresh_errors == {"token_revoked"}


def test_a_found_dialect_is_not_looked_up_again(
    acme: Dialect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry keeps what it found: no second scan of the installed packages."""
    import importlib.metadata

    def no_scan(**_: object) -> list[object]:
        raise AssertionError("entry points scanned again")

    monkeypatch.setattr(importlib.metadata, "entry_points", no_scan)
    assert dialect_named("acme") is acme


def test_only_the_dialects_group_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point of that name in another group (a console script) is no dialect."""
    info = tmp_path / "other-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: other\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[console_scripts]\nacme-script = tests.support.acme_dialect:DIALECT\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValidationError, match="no provider dialect named 'acme-script'"):
        dialect_named("acme-script")
