"""One process of a fleet: N concurrent get_access_token() calls on a shared storage.

    python -m harness.fleet_worker CONFIG_JSON

CONFIG_JSON: {"provider": {...}, "backend": "file"|"redis"|"redis-cluster", "home": ...,
"url": ..., "nodes": [[host, port], ...] (cluster), "key": ..., "callers": N}. The worker
prints "ready" once set up, waits for a line on stdin
(the start signal, so that every process starts at the same instant), runs the callers and
prints one JSON line: {"tokens": [distinct tokens], "errors": [error class names],
"last_done": wall-clock time the last caller was served} (the benchmarks use it too).
"""

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
    cluster = None
    if config["backend"] == "file":
        storage = FileSystemAuthStorage(config["home"], provider.name)
    elif config["backend"] == "redis-cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        cluster = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in config["nodes"]])
        storage = RedisAuthStorage(cluster, key=config["key"])
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
    if cluster is not None:
        await cluster.aclose()
    return {
        "tokens": sorted({r for r in results if isinstance(r, str)}),
        "errors": [type(r).__name__ for r in results if isinstance(r, BaseException)],
        "last_done": last_done,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
