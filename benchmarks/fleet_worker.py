"""A benchmark fleet process: waits for "go", runs N concurrent get_access_token() calls and
prints {"last_done": wall time of the last caller served, "tokens": [...], "errors": [...]}."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from vandamme_oauth import (
    AuthStorage,
    FileSystemAuthStorage,
    ProviderConfig,
    RedisAuthStorage,
    TokenManager,
)


async def run(config: dict[str, Any]) -> dict[str, Any]:
    provider = ProviderConfig.from_dict(config["provider"])
    storage: AuthStorage
    if config["backend"] == "file":
        storage = FileSystemAuthStorage(config["home"], provider.name)
    else:
        storage = RedisAuthStorage.from_url(config["url"], key=config["key"])
    last_done = 0.0

    async def caller(manager: TokenManager) -> str:
        nonlocal last_done
        token = await manager.get_access_token()
        last_done = max(last_done, time.time())
        return token

    async with TokenManager(provider, storage) as manager:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        results = await asyncio.gather(
            *(caller(manager) for _ in range(config["callers"])), return_exceptions=True
        )
    if isinstance(storage, RedisAuthStorage):
        await storage.aclose()
    return {
        "last_done": last_done,
        "tokens": sorted({r for r in results if isinstance(r, str)}),
        "errors": [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
