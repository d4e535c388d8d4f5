"""Protected resources as pure functions: the resource identifier's one spelling, where its
metadata and its authorization server's metadata are looked for, the mix-up check of RFC 9728
section 3.3, and the scopes a login asks for."""

from __future__ import annotations

import pytest

from vandamme_oauth._exceptions import DiscoveryError, ValidationError
from vandamme_oauth._resource import (
    ResourceMetadata,
    authorization_server_metadata_urls,
    canonical_resource,
    choose_scopes,
    parse_resource_metadata,
    resource_metadata_urls,
)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("https://mcp.example.com/", "https://mcp.example.com"),
        ("HTTPS://MCP.Example.COM:443/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:8443/mcp/", "https://mcp.example.com:8443/mcp/"),
        ("http://127.0.0.1:80/x?tenant=a", "http://127.0.0.1/x?tenant=a"),
        ("http://[::1]:9000/mcp", "http://[::1]:9000/mcp"),
    ],
)
def test_a_resource_has_one_spelling(url: str, canonical: str) -> None:
    assert canonical_resource(url) == canonical


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mcp.example.com", r"absolute http\(s\) URL"),
        ("ftp://mcp.example.com", r"absolute http\(s\) URL"),
        ("https://mcp.example.com/#frag", "no fragment"),
        ("https://mcp.example.com/#", "no fragment"),
    ],
)
def test_what_is_not_a_resource_identifier_is_refused(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        canonical_resource(url)


def test_resource_metadata_is_looked_for_where_the_challenge_says_then_at_well_known_uris() -> None:
    hint = "https://mcp.example.com/meta"
    assert resource_metadata_urls("https://mcp.example.com/public/mcp", hint) == [
        hint,
        "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert resource_metadata_urls("https://mcp.example.com/") == [
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    ]
    assert resource_metadata_urls("https://mcp.example.com/mcp/") == [  # no trailing slash
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert resource_metadata_urls("https://mcp.example.com/MCPX")[0] == (
        "https://mcp.example.com/.well-known/oauth-protected-resource/MCPX"
    )


def test_authorization_server_metadata_urls_follow_the_mcp_order() -> None:
    assert authorization_server_metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://auth.example.com") == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
    ]
    assert authorization_server_metadata_urls("https://auth.example.com/X")[0] == (
        "https://auth.example.com/.well-known/oauth-authorization-server/X"
    )
    assert authorization_server_metadata_urls("https://auth.example.com/tenant1/") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]


def test_metadata_of_the_resource_asked_for_is_read() -> None:
    metadata = parse_resource_metadata(
        "https://mcp.example.com/mcp",
        {
            "resource": "https://MCP.example.com:443/mcp",
            "authorization_servers": ["https://auth.example.com", "http://127.0.0.1:9/as"],
            "scopes_supported": ["files:read", "files:write"],
            "resource_name": "Files",
            "bearer_methods_supported": ["header"],
        },
    )
    assert metadata == ResourceMetadata(
        resource="https://mcp.example.com/mcp",
        authorization_servers=("https://auth.example.com", "http://127.0.0.1:9/as"),
        scopes_supported=("files:read", "files:write"),
        resource_name="Files",
    )


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (["not", "an", "object"], "is not a JSON object"),
        (
            {"resource": "https://evil.example/mcp", "authorization_servers": ["https://a.x"]},
            "names resource 'https://evil.example/mcp' (RFC 9728 section 3.3)",
        ),
        (
            {"resource": "https://mcp.example.com/other", "authorization_servers": ["https://a"]},
            "names resource 'https://mcp.example.com/other'",
        ),
        ({"authorization_servers": ["https://a.x"]}, "names resource None"),
        ({"resource": "not a url", "authorization_servers": ["https://a"]}, "names resource"),
        ({"resource": "https://mcp.example.com/mcp"}, "names no authorization server"),
        (
            {"resource": "https://mcp.example.com/mcp", "authorization_servers": "https://a"},
            "has a bad authorization_servers",
        ),
        (
            {"resource": "https://mcp.example.com/mcp", "authorization_servers": ["http://a.x"]},
            "authorization server must use https",
        ),
        (
            {
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://a.x"],
                "scopes_supported": [1],
            },
            "has a bad scopes_supported",
        ),
    ],
)
def test_metadata_of_another_resource_or_without_a_server_is_refused(
    document: object, says: str
) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_resource_metadata("https://mcp.example.com/mcp", document)
    assert says in str(caught.value)


@pytest.mark.parametrize("key", ["authorization_servers", "scopes_supported"])
def test_a_bad_list_names_the_resource_and_the_key(key: str) -> None:
    document = {"resource": "https://MCP.example.com/mcp", "authorization_servers": ["https://a"]}
    with pytest.raises(DiscoveryError) as caught:
        parse_resource_metadata("https://mcp.example.com/mcp", {**document, key: ["ok", 2]})
    assert str(caught.value) == (
        f"the protected-resource metadata of https://mcp.example.com/mcp has a bad {key}"
    )


def test_a_resource_name_that_is_not_text_is_left_out() -> None:
    metadata = parse_resource_metadata(
        "https://mcp.example.com/mcp",
        {
            "resource": "https://mcp.example.com/mcp",
            "authorization_servers": ["https://a.example"],
            "resource_name": ["Files"],
        },
    )
    assert metadata.resource_name is None


META = ResourceMetadata("https://r.example", ("https://a.example",), ("read", "write"))


@pytest.mark.parametrize(
    ("challenged", "server_scopes", "chosen"),
    [
        (("tools:call",), None, ("tools:call",)),
        (("tools:call",), ("openid", "offline_access"), ("tools:call", "offline_access")),
        ((), None, ("read", "write")),
        ((), ("offline_access",), ("read", "write", "offline_access")),
        (("read", "offline_access"), ("offline_access",), ("read", "offline_access")),
    ],
)
def test_scopes_come_from_the_challenge_else_the_resource(
    challenged: tuple[str, ...], server_scopes: tuple[str, ...] | None, chosen: tuple[str, ...]
) -> None:
    assert choose_scopes(challenged, META, server_scopes) == chosen


def test_no_scope_anywhere_asks_for_none() -> None:
    bare = ResourceMetadata("https://r.example", ("https://a.example",))
    assert choose_scopes((), bare, ("offline_access",)) == ()
