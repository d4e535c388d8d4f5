"""``WWW-Authenticate`` challenges, parsed (RFC 9110 section 11.6.1; the Bearer parameters of
RFC 6750 section 3 and RFC 9728 section 5.1). Pure functions, no I/O.

Grammar::

    WWW-Authenticate = #challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )

Commas separate both challenges and the parameters of one, so a new challenge begins where
a token is followed by a space and not by ``=``. Schemes and parameter names compare
case-insensitively (both are lower-cased here); a quoted string's ``\\x`` escapes are undone.
Several header lines are one list (RFC 9110 section 5.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._exceptions import ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["Challenge", "bearer_challenge", "parse_challenges"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SPACE = re.compile(r"[ \t]*")


@dataclass(frozen=True)
class Challenge:
    """One challenge: its scheme (lower case), its parameters (names in lower case) or its
    token68."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def scope(self) -> tuple[str, ...]:
        """The ``scope`` parameter's scopes (space-separated, RFC 6750 section 3)."""
        return tuple(self.params.get("scope", "").split())


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def space(self) -> None:
        match = _SPACE.match(self.text, self.at)
        assert match is not None  # noqa: S101 - the pattern matches the empty string
        self.at = match.end()

    def done(self) -> bool:
        self.space()
        return self.at >= len(self.text)

    def peek(self, char: str) -> bool:
        self.space()
        return self.text.startswith(char, self.at)

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.at)
        if match is None:
            return None
        self.at = match.end()
        return match.group()

    def commas(self) -> None:
        while self.peek(","):
            self.at += 1

    def quoted(self) -> str:
        """A quoted string, the opening quote at ``at``."""
        out: list[str] = []
        i = self.at + 1
        while i < len(self.text):
            char = self.text[i]
            if char == "\\" and i + 1 < len(self.text):
                out.append(self.text[i + 1])
                i += 2
            elif char == '"':
                self.at = i + 1
                return "".join(out)
            else:
                out.append(char)
                i += 1
        raise self.error("an unterminated quoted string")

    def error(self, what: str) -> ValidationError:
        return ValidationError(
            f"malformed WWW-Authenticate header: {what} at character {self.at + 1} "
            f"of {self.text[:200]!r}"
        )

    def param_ahead(self) -> bool:
        """Whether a ``name=`` (an auth-param, not a new challenge) starts here."""
        self.space()
        match = _TOKEN.match(self.text, self.at)
        if match is None:
            return False
        after = _SPACE.match(self.text, match.end())
        assert after is not None  # noqa: S101 - the pattern matches the empty string
        rest = self.text[after.end() :]
        return rest.startswith("=") and not _is_token68_end(self.text, match.end())


def _is_token68_end(text: str, end: int) -> bool:
    """Whether the ``=`` after ``text[:end]`` belongs to a token68 (``abc==``, then a comma
    or the end) rather than to an auth-param (``name=value``)."""
    rest = text[end:].lstrip(" \t")
    stripped = rest.lstrip("=")
    return len(stripped) < len(rest) and (not stripped.strip() or stripped.lstrip().startswith(","))


def _challenge(scanner: _Scanner) -> Challenge:
    scheme = scanner.take(_TOKEN)
    if scheme is None:
        raise scanner.error("an auth-scheme was expected")
    params: dict[str, str] = {}
    scanner.space()
    if scanner.done() or scanner.peek(","):
        return Challenge(scheme.lower(), params)
    if not scanner.param_ahead():
        token68 = scanner.take(_TOKEN68)
        if token68 is None:
            raise scanner.error(f"a token68 or parameters were expected after {scheme!r}")
        return Challenge(scheme.lower(), params, token68)
    while scanner.param_ahead():
        name = scanner.take(_TOKEN)
        assert name is not None  # noqa: S101 - param_ahead() saw it
        scanner.space()
        scanner.at += 1  # "="
        scanner.space()
        if scanner.text.startswith('"', scanner.at):
            value = scanner.quoted()
        else:
            taken = scanner.take(_TOKEN)
            if taken is None:
                raise scanner.error(f"a value was expected for {name!r}")
            value = taken
        params.setdefault(name.lower(), value)  # the first of a repeated name counts
        scanner.space()
        if scanner.done():
            break
        if not scanner.peek(","):
            raise scanner.error("a comma was expected")
        scanner.commas()
    return Challenge(scheme.lower(), params)


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge of one or several ``WWW-Authenticate`` values, in order.

    Raises:
        ValidationError: a value does not follow the grammar (the message says where).
    """
    challenges: list[Challenge] = []
    for value in [values] if isinstance(values, str) else values:
        scanner = _Scanner(value)
        scanner.commas()
        while not scanner.done():
            challenges.append(_challenge(scanner))
            scanner.commas()
    return challenges


def bearer_challenge(values: str | Iterable[str]) -> Challenge | None:
    """The first ``Bearer`` challenge, or None."""
    return next((c for c in parse_challenges(values) if c.scheme == "bearer"), None)
