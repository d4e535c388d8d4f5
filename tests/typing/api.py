"""Type-checked (never run) use of the public API: mypy --strict fails if its types drift."""

from __future__ import annotations

from vandamme_oauth import (
    AuthData,
    AuthStorage,
    FileSystemAuthStorage,
    InMemoryAuthStorage,
    NotAuthenticatedError,
    OAuthError,
    OAuthFlow,
    ProviderConfig,
    ReauthenticationRequired,
    TokenManager,
)


async def login_and_use(issuer: str) -> str:
    provider: ProviderConfig = await ProviderConfig.discover(
        issuer, client_id="c", scopes=["openid"]
    )
    storage: AuthStorage = FileSystemAuthStorage(home_dir="~/.config/app", name=provider.name)
    memory: AuthStorage = InMemoryAuthStorage()
    async with OAuthFlow(provider, storage, open_browser=print) as flow:
        auth: AuthData = await flow.authenticate(timeout=300)
    await memory.write_auth(auth)
    async with TokenManager(provider, storage, refresh_margin=300) as manager:
        try:
            token: str = await manager.get_access_token()
        except (NotAuthenticatedError, ReauthenticationRequired) as exc:
            message: str = exc.message
            return message
        except OAuthError as exc:
            return exc.error or ""
        data: AuthData = await manager.get_auth_data()
        manager.report_unauthorized(token)
        expires: float | None = data.expires_at
        del expires
    async with storage.lock():
        pass
    return token
