"""CodexAuthStorage: share the Codex CLI's ChatGPT login (``$CODEX_HOME/auth.json``) in place.

The Codex CLI keeps ``{"OPENAI_API_KEY": ..., "tokens": {"id_token", "access_token",
"refresh_token", "account_id"}, "last_refresh": RFC 3339}`` (newer versions add keys). This
backend reads and writes that file in place, keeping every key it does not know, with the
same atomic 0600 writes and the same cross-process lock (``auth.json.lock``) as
[`FileSystemAuthStorage`][vandamme_oauth.FileSystemAuthStorage], so several of our processes
refresh it once. The expiry is read from the access token's ``exp``.

``OPENAI_API_KEY`` is the login's ``api_key`` (both ways), and the claim paths are
ChatGPT's (`vandamme_oauth.providers.chatgpt`). A file that holds only ``OPENAI_API_KEY``
(a Codex API-key login) is valid and holds no ChatGPT login: reading it gives None, writing
a login into it keeps the key, and logging out removes the tokens but keeps the key (the file is
deleted only when it has none).

Caveat: the Codex CLI itself does not take our lock. When it refreshes at the same moment, the
server rejects the loser's refresh token; the manager then re-reads this file and adopts the
winner's tokens before giving up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._exceptions import InvalidJWTError, ValidationError
from .._jwt_claims import claim_at, decode_claims, looks_like_jwt
from .._login import AuthData, _from_rfc3339, _to_rfc3339
from .._times import check_instant
from ..providers import chatgpt
from ._filesystem import FileSystemAuthStorage

__all__ = ["CodexAuthStorage", "default_codex_home"]


def default_codex_home() -> Path:
    """``$CODEX_HOME``, else ``~/.codex``."""
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()


def _claims(token: object) -> dict[str, Any]:
    if not isinstance(token, str) or not looks_like_jwt(token):
        return {}
    try:
        return decode_claims(token)
    except InvalidJWTError:
        return {}


class CodexAuthStorage(FileSystemAuthStorage):
    """An [`AuthStorage`][vandamme_oauth.AuthStorage] over the Codex CLI's ``auth.json``.

    Args:
        codex_home: The Codex home folder (default ``$CODEX_HOME`` or ``~/.codex``).
        lock_timeout: Seconds ``lock()`` waits for another process before raising.
    """

    def __init__(
        self, codex_home: str | os.PathLike[str] | None = None, *, lock_timeout: float = 60.0
    ) -> None:
        home = Path(codex_home).expanduser() if codex_home is not None else default_codex_home()
        super().__init__(home, "auth", lock_timeout=lock_timeout)

    def __repr__(self) -> str:
        return f"CodexAuthStorage(path={str(self.path)!r})"

    def _decode(self, raw: bytes) -> AuthData | None:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValidationError("a Codex auth.json must be a JSON object")
        tokens = doc.get("tokens")
        if tokens is None and isinstance(doc.get("OPENAI_API_KEY"), str):
            return None  # an API-key login: valid, but no ChatGPT login to use
        if not isinstance(tokens, dict):
            raise ValidationError("the Codex auth.json has no ChatGPT login ('tokens' is empty)")
        access_token = tokens.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValidationError("the Codex auth.json has no access token")
        refresh_token = tokens.get("refresh_token")
        id_token = tokens.get("id_token")
        id_claims, access_claims = _claims(id_token), _claims(access_token)
        account_id = tokens.get("account_id") or claim_at(id_claims, chatgpt.ACCOUNT_ID_CLAIM)
        email = next(
            (v for p in chatgpt.EMAIL_CLAIMS if isinstance(v := claim_at(id_claims, p), str)), None
        )
        exp = access_claims.get("exp")
        last_refresh = _from_rfc3339(doc.get("last_refresh"), "last_refresh")
        api_key = doc.get("OPENAI_API_KEY")
        typed: dict[str, str] = {}
        for name, path in chatgpt.CLAIM_PATHS:
            value = claim_at(id_claims, path)
            if name not in typed and isinstance(value, str) and value:
                typed[name] = value
        return AuthData(
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            id_token=id_token if isinstance(id_token, str) else None,
            account_id=account_id if isinstance(account_id, str) else None,
            email=email,
            expires_at=check_instant(exp),
            last_refresh=last_refresh if last_refresh is not None else 0.0,
            api_key=api_key if isinstance(api_key, str) and api_key else None,
            **typed,
        )

    def _clear_sync(self) -> None:
        """Remove the ChatGPT login. An API key in the file stays (the file with it)."""
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("OPENAI_API_KEY"), str):
            doc.update(tokens=None, last_refresh=None)
            self._replace_with(json.dumps(doc, indent=2).encode("utf-8") + b"\n")
            return
        super()._clear_sync()

    def _encode(self, data: AuthData, previous: bytes | None) -> bytes:
        doc: dict[str, Any] = json.loads(previous) if previous else {"OPENAI_API_KEY": None}
        tokens = dict(doc.get("tokens") or {})
        tokens.update(
            id_token=data.id_token,
            access_token=data.access_token,
            refresh_token=data.refresh_token,
            account_id=data.account_id,
        )
        doc["tokens"] = tokens
        doc["last_refresh"] = _to_rfc3339(data.last_refresh)
        if data.api_key:  # a key obtained with the login; one already in the file stays
            doc["OPENAI_API_KEY"] = data.api_key
        return json.dumps(doc, indent=2).encode("utf-8") + b"\n"
