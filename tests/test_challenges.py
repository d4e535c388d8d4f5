"""WWW-Authenticate parsing (RFC 9110 section 11.6.1, RFC 6750, RFC 9728): header shapes seen
in the wild, and a round trip of generated challenges through the grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vandamme_oauth._challenges import Challenge, bearer_challenge, parse_challenges
from vandamme_oauth._exceptions import ValidationError

MCP = (
    'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", '
    'scope="files:read files:write"'
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer", [Challenge("bearer")]),
        ('Bearer realm="example"', [Challenge("bearer", {"realm": "example"})]),
        (
            MCP,
            [
                Challenge(
                    "bearer",
                    {
                        "resource_metadata": (
                            "https://mcp.example.com/.well-known/oauth-protected-resource"
                        ),
                        "scope": "files:read files:write",
                    },
                )
            ],
        ),
        (  # RFC 6750 section 3's example, scheme in another case, spaces around "="
            'bEaReR realm = "example", error="invalid_token", '
            'error_description="The access token expired"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "example",
                        "error": "invalid_token",
                        "error_description": "The access token expired",
                    },
                )
            ],
        ),
        (  # several challenges in one value, a token68 among them
            'Basic YWxhZGRpbjpvcGVuc2VzYW1l==, Bearer error=insufficient_scope, scope="a b"',
            [
                Challenge("basic", token68="YWxhZGRpbjpvcGVuc2VzYW1l=="),
                Challenge("bearer", {"error": "insufficient_scope", "scope": "a b"}),
            ],
        ),
        (  # RFC 9110's own example: empty list elements and a param named like a scheme
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
        ),
        (
            ', ,Bearer realm="a,b" , , DPoP algs="ES256 PS256"',
            [
                Challenge("bearer", {"realm": "a,b"}),
                Challenge("dpop", {"algs": "ES256 PS256"}),
            ],
        ),
        ('Bearer REALM="x", Realm="y"', [Challenge("bearer", {"realm": "x"})]),
    ],
)
def test_header_shapes(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_several_header_lines_are_one_list() -> None:
    lines = ['Basic realm="x"', 'Bearer resource_metadata="https://r.example/m"']
    challenge = bearer_challenge(lines)
    assert challenge is not None
    assert challenge.params["resource_metadata"] == "https://r.example/m"
    assert bearer_challenge('Basic realm="x"') is None


def test_scope_is_a_tuple_of_scopes() -> None:
    challenge = bearer_challenge(MCP)
    assert challenge is not None
    assert challenge.scope == ("files:read", "files:write")
    assert Challenge("bearer").scope == ()


@pytest.mark.parametrize(
    ("header", "says", "at"),
    [
        ('Bearer realm="open', "an unterminated quoted string", 14),
        ('Bearer realm="a\\', "an unterminated quoted string", 14),  # a lone final escape
        ('Bearer realm="a\\"', "an unterminated quoted string", 14),  # the quote is escaped
        ('Bearer error="x", scope=', "a token68 or parameters were expected after 'scope'", 24),
        ('Bearer realm="a" scope="b"', "a comma was expected", 18),
        ("Bearer realm=@", "a value was expected for 'realm'", 14),
        ("=x", "an auth-scheme was expected", 1),
        ("Bearer @@", "a token68 or parameters were expected after 'Bearer'", 8),
    ],
)
def test_malformed_headers_are_a_clear_error(header: str, says: str, at: int) -> None:
    """One line: what was expected, at which character (counted from 1), of which header."""
    with pytest.raises(ValidationError) as caught:
        parse_challenges(header)
    assert str(caught.value) == (
        f"malformed WWW-Authenticate header: {says} at character {at} of {header!r}"
    )


def test_a_long_malformed_header_is_quoted_up_to_200_characters() -> None:
    header = 'Bearer realm="' + "x" * 300
    with pytest.raises(ValidationError) as caught:
        parse_challenges(header)
    assert str(caught.value).endswith(f"of {header[:200]!r}")


def test_a_value_of_capital_xs_is_a_value() -> None:
    assert parse_challenges("Bearer realm=XX") == [Challenge("bearer", {"realm": "XX"})]


def test_a_token68_then_a_comma_then_another_challenge() -> None:
    assert parse_challenges("Basic abc== , Bearer x=y") == [
        Challenge("basic", token68="abc=="),
        Challenge("bearer", {"x": "y"}),
    ]
    assert parse_challenges("Negotiate abc=\t,Bearer") == [
        Challenge("negotiate", token68="abc="),
        Challenge("bearer"),
    ]


tokens = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def challenges(draw: st.DrawFn) -> tuple[str, Challenge]:
    scheme = draw(tokens)
    names = draw(st.lists(tokens, max_size=4, unique_by=str.lower))
    params = {name: draw(values) for name in names}
    text = scheme
    if params:
        text += " " + ", ".join(f"{name}={_quote(value)}" for name, value in params.items())
    return text, Challenge(scheme.lower(), {n.lower(): v for n, v in params.items()})


@given(st.lists(challenges(), min_size=1, max_size=4))
def test_generated_challenges_round_trip(drawn: list[tuple[str, Challenge]]) -> None:
    """Any list of challenges written by the grammar (quoted values with quotes, backslashes
    and commas in them) reads back as written."""
    header = ", ".join(text for text, _ in drawn)
    assert parse_challenges(header) == [challenge for _, challenge in drawn]
