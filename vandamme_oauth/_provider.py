"""ProviderConfig: who we talk to and how, by hand, by discovery or from a preset.

Discovery follows RFC 8414 (``/.well-known/oauth-authorization-server`` inserted before the
issuer's path) and then OpenID Connect Discovery (``/.well-known/openid-configuration``
appended). Per RFC 8414 section 3.3 the metadata's ``issuer`` must equal the issuer we asked
for, or the metadata is not used. Every endpoint must be https, except on loopback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from ._dialect import STANDARD, Dialect, dialect_named
from ._exceptions import DiscoveryError, ValidationError
from ._login import check_login_name, login_name
from ._resource import canonical_resource
from ._validation import is_loopback_host, require_endpoint_url

if TYPE_CHECKING:
    import httpx

__all__ = ["ProviderConfig", "parse_metadata"]

log = logging.getLogger(__name__)

BodyFormat = Literal["form", "json"]
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
#: Client authentication methods we speak, in the order we prefer them (RFC 6749 2.3.1).
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """An OAuth 2.0 / OpenID provider and the client we are at it. Immutable.

    Attributes:
        name: The login's name (storage file/key); letters, digits, ``.``, ``_``, ``-``.
        issuer: The authorization server's issuer identifier.
        client_id: The client's id (public clients have no secret: RFC 8252 section 8.5).
        authorization_endpoint: Where the browser is sent.
        token_endpoint: Where codes and refresh tokens are exchanged.
        scopes: Scopes requested at login.
        revocation_endpoint: RFC 7009 endpoint used by logout, if any.
        device_authorization_endpoint: RFC 8628 endpoint, if any.
        redirect_host: Host written in ``redirect_uri`` (the server always binds loopback).
        redirect_path: Path of the loopback callback.
        ports: Ports to try in order; empty means an OS-assigned ephemeral port.
        cancel_busy_port: Send ``GET /cancel`` to a busy port before moving on (Codex CLI).
        authorize_params: Extra authorization parameters placed before ``state``.
        authorize_params_after_state: Extra authorization parameters placed after ``state``.
        refresh_body: ``"form"`` (RFC 6749) or ``"json"`` (ChatGPT) for refresh requests.
        revoke_body: ``"form"`` (RFC 7009) or ``"json"`` (ChatGPT) for revocation.
        account_id_claim: Claim path in the ID token (then access token) naming the account.
        email_claims: Claim paths tried in order for the email.
        claim_paths: ``(attribute, path)`` pairs filling the login's typed claims
            (``plan_type``, ``user_id``, ``organization_id``, ``project_id``) from the ID
            token; the first path found for an attribute wins.
        fallback_lifetime: Seconds a token is trusted after ``last_refresh`` when no expiry
            is known (neither ``expires_in`` nor a JWT ``exp``).
        require_iss: Reject callbacks without ``iss`` (RFC 9207 section 2.4).
        response_mode: ``None`` (query) or ``"form_post"``.
        code_challenge_methods: What the server advertised, if known.
        client_secret: A confidential client's secret (web apps, and installed apps whose
            provider insists on one). Never in ``repr``, in `to_dict()` (saved profiles) or
            in any log or message.
        token_endpoint_auth_method: How the client authenticates at the token, revocation
            and device endpoints: ``"none"`` (a public client), ``"client_secret_basic"``
            (HTTP Basic) or ``"client_secret_post"`` (in the form).
        dialect: What the provider says beyond plain OAuth (see
            [`Dialect`][vandamme_oauth.Dialect]); saved profiles store its name.
        resource: The protected resource the tokens are for (RFC 8707), e.g. an MCP
            server's URL: sent as ``resource`` on the authorization request, the code
            exchange, every refresh and the device grant, so the token's audience is that
            resource. Kept in its canonical spelling.
    """

    name: str
    issuer: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    scopes: tuple[str, ...] = ("openid", "offline_access")
    revocation_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    redirect_host: str = "127.0.0.1"
    redirect_path: str = "/auth/callback"
    ports: tuple[int, ...] = ()
    cancel_busy_port: bool = False
    authorize_params: tuple[tuple[str, str], ...] = ()
    authorize_params_after_state: tuple[tuple[str, str], ...] = ()
    refresh_body: BodyFormat = "form"
    revoke_body: BodyFormat = "form"
    account_id_claim: tuple[str, ...] = ("sub",)
    email_claims: tuple[tuple[str, ...], ...] = (("email",),)
    claim_paths: tuple[tuple[str, tuple[str, ...]], ...] = ()
    fallback_lifetime: float = 3600.0
    require_iss: bool = False
    response_mode: Literal["form_post"] | None = None
    code_challenge_methods: tuple[str, ...] | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: AuthMethod = "none"  # noqa: S105 - a method's name
    dialect: Dialect = STANDARD
    resource: str | None = None

    def __post_init__(self) -> None:
        check_login_name(self.name)
        if self.resource is not None:
            object.__setattr__(self, "resource", canonical_resource(self.resource))
        if not isinstance(self.dialect, Dialect):
            raise ValidationError(f"dialect must be a Dialect, not {type(self.dialect).__name__}")
        if not self.client_id:
            raise ValidationError("client_id must not be empty")
        for key in ("scopes", "ports", "authorize_params", "authorize_params_after_state"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        require_endpoint_url(self.issuer, what="issuer")
        for what in ("authorization_endpoint", "token_endpoint"):
            require_endpoint_url(getattr(self, what), what=what)
        for what in ("revocation_endpoint", "device_authorization_endpoint"):
            if getattr(self, what) is not None:
                require_endpoint_url(getattr(self, what), what=what)
        if not is_loopback_host(self.redirect_host):
            raise ValidationError(
                f"redirect_host must be a loopback host (127.0.0.1, ::1 or localhost), "
                f"not {self.redirect_host!r}: the callback server only listens on loopback"
            )
        if not self.redirect_path.startswith("/"):
            raise ValidationError("redirect_path must start with '/'")
        if self.response_mode not in (None, "form_post"):
            raise ValidationError("response_mode must be None or 'form_post'")
        if self.token_endpoint_auth_method not in ("none", *AUTH_METHODS):
            raise ValidationError(
                f"token_endpoint_auth_method {self.token_endpoint_auth_method!r} is not one of "
                f"none, {', '.join(AUTH_METHODS)}"
            )
        method = self.token_endpoint_auth_method
        if (method == "none") != (not self.client_secret):
            raise ValidationError(
                "a client_secret goes with token_endpoint_auth_method client_secret_basic or "
                "client_secret_post, and only with them"
            )
        if self.code_challenge_methods is not None and "S256" not in self.code_challenge_methods:
            raise ValidationError(
                f"{self.issuer} does not support PKCE S256; refusing to log in without it"
            )

    def redirect_uri(self, port: int) -> str:
        """The ``redirect_uri`` for a callback server listening on ``port``."""
        host = f"[{self.redirect_host}]" if ":" in self.redirect_host else self.redirect_host
        return f"http://{host}:{port}{self.redirect_path}"

    def replace(self, **changes: Any) -> ProviderConfig:
        """Return a copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, without the client secret (saved profiles hold no secrets:
        give the secret again when the profile is loaded)."""
        data = asdict(replace(self, dialect=STANDARD))
        del data["client_secret"]
        data["dialect"] = self.dialect.name
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, client_secret: str | None = None
    ) -> ProviderConfig:
        """Rebuild a config saved with `to_dict()`; unknown keys are ignored. A confidential
        client's secret is not saved: give it again as ``client_secret``.

        Raises:
            ValidationError: the data does not describe a valid provider (or a confidential
                client's secret is missing, or its dialect is not installed).
        """
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key in ("authorize_params", "authorize_params_after_state", "email_claims"):
                value = tuple(tuple(v) for v in value)
            elif key == "claim_paths":
                value = tuple((str(name), tuple(path)) for name, path in value)
            elif key == "dialect":
                value = dialect_named(str(value))
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        if client_secret is not None:
            kwargs["client_secret"] = client_secret
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValidationError(f"incomplete provider configuration: {exc}") from None

    @classmethod
    def chatgpt(
        cls,
        *,
        originator: str = "codex_cli_rs",
        allowed_workspace_ids: Iterable[str] = (),
        scopes: Iterable[str] | None = None,
        name: str = "chatgpt",
    ) -> ProviderConfig:
        """The "Sign in with ChatGPT" preset: the Codex CLI's public client, byte for byte
        (a shortcut for ``dialect_named("chatgpt").preset(...)``, see
        `vandamme_oauth.providers.chatgpt.preset`).

        Args:
            originator: The ``originator`` authorization parameter.
            allowed_workspace_ids: Restrict the login to these workspaces (comma-joined).
            scopes: Scopes (default: the Codex CLI's); older clients send
                ``openid profile email offline_access``.
            name: The login's name in storage.
        """
        options: dict[str, Any] = {"scopes": scopes} if scopes is not None else {}
        return dialect_named("chatgpt").preset(
            originator=originator, allowed_workspace_ids=allowed_workspace_ids, name=name, **options
        )

    @classmethod
    async def discover(
        cls,
        issuer: str,
        *,
        client_id: str,
        scopes: Iterable[str] = ("openid", "offline_access"),
        name: str | None = None,
        response_mode: Literal["form_post"] | None = None,
        client_secret: str | None = None,
        token_endpoint_auth_method: AuthMethod | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> ProviderConfig:
        """Fetch the issuer's metadata (RFC 8414, then OpenID discovery) and build a config.

        Args:
            issuer: The issuer identifier, e.g. ``https://accounts.example.com``.
            client_id: Our public client's id at that issuer.
            scopes: Scopes to request at login.
            name: The login's name; default derived from the issuer (see `login_name()`).
            response_mode: ``"form_post"`` to receive the callback as a POST.
            client_secret: A confidential client's secret.
            token_endpoint_auth_method: How to send it (default: ``client_secret_basic``
                when the metadata lists it, else ``client_secret_post``).
            http_client: A client to use (not closed); default a fresh one.

        Raises:
            DiscoveryError: no metadata document, or it is invalid or names another issuer.
        """
        from ._discovery import fetch_metadata  # the transport layer: the one upward call

        require_endpoint_url(issuer, what="issuer")
        document = await fetch_metadata(issuer, well_known_urls(issuer), http_client=http_client)
        return parse_metadata(
            issuer,
            document,
            client_id=client_id,
            scopes=scopes,
            name=name,
            response_mode=response_mode,
            client_secret=client_secret,
            token_endpoint_auth_method=token_endpoint_auth_method,
        )


def well_known_urls(issuer: str) -> list[str]:
    """The RFC 8414 and OpenID discovery URLs for ``issuer``, in the order we try them."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    oidc = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", "")
    )
    return [rfc8414, oidc]


def parse_metadata(
    issuer: str,
    document: object,
    *,
    client_id: str,
    scopes: Iterable[str] = ("openid", "offline_access"),
    name: str | None = None,
    response_mode: Literal["form_post"] | None = None,
    client_secret: str | None = None,
    token_endpoint_auth_method: AuthMethod | None = None,
) -> ProviderConfig:
    """Build a [`ProviderConfig`][vandamme_oauth.ProviderConfig] from a metadata document (pure; no
    I/O).

    Raises:
        DiscoveryError: the document is not an object, names another issuer, lacks an
            endpoint, uses plain http off loopback or does not offer S256 PKCE.
    """
    if not isinstance(document, Mapping):
        raise DiscoveryError(f"the metadata of {issuer} is not a JSON object")
    if document.get("issuer") != issuer:
        raise DiscoveryError(
            f"the metadata names issuer {document.get('issuer')!r}, not {issuer!r} "
            "(RFC 8414 section 3.3): check the issuer URL, including any trailing slash"
        )

    def endpoint(key: str, *, required: bool) -> str | None:
        value = document.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise DiscoveryError(f"the metadata of {issuer} has no {key}")
        return value

    auth_method = _auth_method(
        issuer, document, client_secret=client_secret, chosen=token_endpoint_auth_method
    )
    methods = document.get("code_challenge_methods_supported")
    if methods is None:
        log.warning(
            "the provider does not advertise PKCE support; sending S256 anyway",
            extra={"issuer": issuer},
        )
    try:
        return ProviderConfig(
            name=name or login_name(issuer),
            issuer=issuer,
            client_id=client_id,
            authorization_endpoint=endpoint("authorization_endpoint", required=True) or "",
            token_endpoint=endpoint("token_endpoint", required=True) or "",
            revocation_endpoint=endpoint("revocation_endpoint", required=False),
            device_authorization_endpoint=endpoint("device_authorization_endpoint", required=False),
            scopes=tuple(scopes),
            require_iss=document.get("authorization_response_iss_parameter_supported") is True,
            response_mode=response_mode,
            code_challenge_methods=tuple(methods) if isinstance(methods, list) else None,
            client_secret=client_secret,
            token_endpoint_auth_method=auth_method,
        )
    except ValidationError as exc:
        raise DiscoveryError(f"unusable metadata from {issuer}: {exc.message}") from None


def _auth_method(
    issuer: str,
    document: Mapping[str, Any],
    *,
    client_secret: str | None,
    chosen: AuthMethod | None,
) -> AuthMethod:
    """How a client with (or without) ``client_secret`` authenticates at ``issuer``: the
    ``chosen`` method, else the first of ours the metadata lists in
    ``token_endpoint_auth_methods_supported`` (absent: ``client_secret_basic``, RFC 8414)."""
    if not client_secret:
        return chosen or "none"
    if chosen is not None:
        return chosen
    supported = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not isinstance(supported, list):
        raise DiscoveryError(f"the metadata of {issuer} has an invalid auth methods list")
    for method in AUTH_METHODS:
        if method in supported:
            return method
    raise DiscoveryError(
        f"{issuer} supports none of {', '.join(AUTH_METHODS)} for client secrets "
        f"(it lists {', '.join(map(str, supported)) or 'nothing'})"
    )
