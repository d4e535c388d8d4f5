"""A loopback token endpoint in a process of its own, for the many-logins benchmarks:
``python -m benchmarks.token_server LATENCY`` prints its port, then answers refresh grants
after LATENCY seconds. Each login's refresh token rotates (``RT-<login>-<n>``; a spent one
is refused with invalid_grant), and ``GET /stats`` reports the requests, the refused ones
and the most requests in flight at once (``POST /stats`` resets them)."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


class Stats:
    def __init__(self) -> None:
        self.requests = self.refused = self.in_flight = self.most_in_flight = 0


def make_app(latency: float) -> web.Application:
    stats = Stats()
    serial: dict[str, int] = {}

    async def token(request: web.Request) -> web.Response:
        stats.requests += 1
        stats.in_flight += 1
        stats.most_in_flight = max(stats.most_in_flight, stats.in_flight)
        try:
            form = await request.post()
            await asyncio.sleep(latency)
            refresh = str(form.get("refresh_token", ""))
            login, _, n = refresh.removeprefix("RT-").rpartition("-")
            if not n.isdigit() or serial.get(login, 0) != int(n):
                stats.refused += 1
                return web.json_response({"error": "invalid_grant"}, status=400)
            serial[login] = int(n) + 1
            return web.json_response(
                {
                    "access_token": f"AT-{login}-{int(n) + 1}",
                    "refresh_token": f"RT-{login}-{int(n) + 1}",
                    "expires_in": 600,
                }
            )
        finally:
            stats.in_flight -= 1

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": stats.requests,
                "refused": stats.refused,
                "most_in_flight": stats.most_in_flight,
            }
        )

    async def reset(request: web.Request) -> web.Response:
        stats.requests = stats.refused = stats.most_in_flight = 0
        serial.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/token", token)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/stats", reset)
    return app


async def main(latency: float) -> None:
    runner = web.AppRunner(make_app(latency), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.020))
