"""RedisAuthStorage on a real three-node Redis Cluster: one slot per login, notifications
and fencing (the storm across processes is in tests/integration/test_fleet.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio.cluster import RedisCluster

from tests.storage.test_contract import LOGIN, relogin_and_logout_reach_a_manager
from tests.storage.test_redis import (
    fencing_keeps_a_relogin,
    waiter_is_woken_by_the_release,
    watcher_rhythm,
)
from tests.storage.test_redis_sharing import (
    leaving_a_channel_unsubscribes_it,
    lost_data_wakes_every_listener,
)
from vandamme_oauth import RedisAuthStorage
from vandamme_oauth.storage import _redis as redis_storage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from harness.redis_server import RedisCluster as Cluster


@pytest.fixture
async def hosts(redis_cluster: Cluster) -> AsyncIterator[tuple[RedisAuthStorage, RedisAuthStorage]]:
    """Two hosts, each with its own cluster client, sharing one login."""
    key = f"cluster:{uuid.uuid4().hex}"
    clients = [redis_cluster.client(), redis_cluster.client()]
    yield RedisAuthStorage(clients[0], key=key), RedisAuthStorage(clients[1], key=key)
    for client in clients:
        await client.aclose()


async def test_every_key_of_a_login_lives_on_one_slot(
    hosts: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """Data and lock hash to one slot, so the Lua scripts run on a cluster at all."""
    a, _ = hosts
    client = a._client
    assert isinstance(client, RedisCluster)
    assert client.keyslot(a.data_key) == client.keyslot(a.lock_key)
    await a.write_auth(LOGIN)
    async with a.lock():
        assert await a.read_auth() == LOGIN
        await a.write_auth(LOGIN.replace(access_token="AT2"))
    assert (await a.read_auth()) == LOGIN.replace(access_token="AT2")


async def test_fencing_works_on_a_cluster(
    hosts: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """A login written by another host while we hold the lock is kept."""
    await fencing_keeps_a_relogin(*hosts)


async def test_a_relogin_on_another_host_reaches_a_manager_through_the_cluster(
    hosts: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """Notifications cross the cluster: host B's re-login and logout reach host A."""
    await relogin_and_logout_reach_a_manager(*hosts)


async def test_changes_travel_as_sharded_messages_and_wake_lock_waiters(
    hosts: tuple[RedisAuthStorage, RedisAuthStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster the login's channel is a sharded channel on its own slot: a sharded
    subscriber sees the write, and with the fallback poll stretched to a minute a lock
    waiter on another host is still woken by the release."""
    monkeypatch.setattr(redis_storage, "_WAKE_FALLBACK", 60.0)
    a, b = hosts
    assert a._sharded
    await a.read_auth()  # the cluster client learns the slot map on its first command
    listener: Any = a._client.pubsub()
    await listener.ssubscribe(a.channel)
    try:
        await a.write_auth(LOGIN)
        async with asyncio.timeout(10):  # a hang guard
            while (message := await listener.get_sharded_message(timeout=1)) is None or (
                message["type"] != "smessage"
            ):
                pass
        assert message["data"] == b"write"
    finally:
        await listener.aclose()
    await waiter_is_woken_by_the_release(a, b)


async def test_the_watcher_keeps_its_rhythm_on_sharded_channels(
    hosts: tuple[RedisAuthStorage, RedisAuthStorage],
) -> None:
    """The same rhythm as on one server (see `watcher_rhythm`), with sharded messages."""
    a, b = hosts
    await a.read_auth()  # the cluster client learns the slot map on its first command
    client = b._client
    assert isinstance(client, RedisCluster)

    async def kill_pubsub() -> None:
        await client.execute_command(
            "CLIENT KILL", "TYPE", "pubsub", target_nodes=RedisCluster.ALL_NODES
        )

    await watcher_rhythm(a, b, kill_pubsub)


async def shard_subscribers(client: RedisCluster, channel: str) -> int:
    """Subscribers of the sharded ``channel`` on the node that owns its slot."""
    node = client.get_node_from_key(channel)
    reply = await client.execute_command("PUBSUB SHARDNUMSUB", channel, target_nodes=node)
    ((_, count),) = reply if isinstance(reply[0], tuple) else [tuple(reply)]
    return int(count)


async def test_a_sharded_channel_left_by_its_last_listener_is_unsubscribed(
    redis_cluster: Cluster,
) -> None:
    """See `leaving_a_channel_unsubscribes_it`: on a cluster, with SSUBSCRIBE/SUNSUBSCRIBE."""
    client, other = redis_cluster.client(), redis_cluster.client()
    await client.ping()  # the clients learn the slot map on their first command
    await other.ping()
    try:
        await leaving_a_channel_unsubscribes_it(
            client, lambda channel: shard_subscribers(other, channel), other.ping
        )
    finally:
        await client.aclose()
        await other.aclose()


async def test_lost_data_wakes_every_listener_on_a_cluster(
    redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """See `lost_data_wakes_every_listener`: the reader of sharded messages sweeps too."""
    client, other = redis_cluster.client(), redis_cluster.client()
    await client.ping()
    try:
        await lost_data_wakes_every_listener(client, other, monkeypatch)
    finally:
        await client.aclose()
        await other.aclose()
