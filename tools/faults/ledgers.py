# ruff: noqa: PLC0415  -- optional clients (redis, psycopg) imported only when asked for
"""Open any trunkkey ledger by name, against the servers tools/start-services.sh started.

Shared by the harnesses, the tests and the benchmarks, so they all build the
ledgers the same way. ``namespace`` keeps runs apart on a shared server: it
becomes the Redis key prefix or the PostgreSQL table name.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trunkkey.ledger.base import AsyncLedger, Ledger, SpendOutcome
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger

KINDS = ("memory", "sqlite", "sqlite_group", "redis", "postgres")
#: The asyncio ledgers on the same servers, opened behind :class:`SyncOverAsync`
#: so that every contract, race and fault test of a ``Ledger`` runs on them too.
ASYNC_KINDS = ("redis_async", "postgres_async")
#: The asyncio ledger on the Redis Cluster (``TRUNKKEY_REDIS_CLUSTER_URL``):
#: held to the ledger contract and the verifier tests, but not to the
#: single-server fault tests (a proxy in front of one node, a read-only replica).
CLUSTER_ASYNC_KINDS = ("redis_cluster_async",)
SERVER_ENV = {
    "redis": "TRUNKKEY_REDIS_URL",
    "postgres": "TRUNKKEY_POSTGRES_DSN",
    "redis_async": "TRUNKKEY_REDIS_URL",
    "postgres_async": "TRUNKKEY_POSTGRES_DSN",
    "redis_cluster": "TRUNKKEY_REDIS_CLUSTER_URL",
    "redis_cluster_async": "TRUNKKEY_REDIS_CLUSTER_URL",
}
REPLICA_ENV = {
    "redis": "TRUNKKEY_REDIS_REPLICA_URL",
    "postgres": "TRUNKKEY_POSTGRES_REPLICA_DSN",
    "redis_async": "TRUNKKEY_REDIS_REPLICA_URL",
    "postgres_async": "TRUNKKEY_POSTGRES_REPLICA_DSN",
}
#: The replicated topologies (tools/faults/replicated.py starts throwaway ones):
#: raced and benchmarked by name, but not part of every ledger's test matrix.
REPLICATED_ENV = {
    "postgres_pair": "TRUNKKEY_POSTGRES_PAIR_DSN",
    "redis_cluster": "TRUNKKEY_REDIS_CLUSTER_URL",
}
#: Addresses where nothing listens: a server that is down, for fail-closed tests.
DEAD = {
    "redis": "redis://127.0.0.1:1/0",
    "postgres": "postgresql://postgres@127.0.0.1:1/trunkkey",
    "redis_async": "redis://127.0.0.1:1/0",
    "postgres_async": "postgresql://postgres@127.0.0.1:1/trunkkey",
}


def server_of(kind: str) -> str:
    """The server a kind of ledger stores on: ``redis_async`` shares ``redis``'s keys,
    ``redis_cluster_async`` ``redis_cluster``'s."""
    return kind.removesuffix("_async")


class _LoopThread:
    """One event loop, in a daemon thread, for every async ledger the harnesses open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child: a loop of its own
                self._loop, self._pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(
                    target=self._loop.run_forever, name="tk-async-ledgers", daemon=True
                ).start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


_LOOP = _LoopThread()


class SyncOverAsync:
    """A synchronous ``Ledger`` whose every call awaits an async ledger's coroutine.

    The calls run on one event loop in a thread of its own, so a test written
    for ``Ledger`` exercises the async ledger's own I/O, deadlines and errors.
    """

    def __init__(self, opening: Coroutine[Any, Any, AsyncLedger]) -> None:
        self.inner: Any = _LOOP.run(opening)

    def spend(self, *args: Any, **kwargs: Any) -> SpendOutcome:
        outcome: SpendOutcome = _LOOP.run(self.inner.spend(*args, **kwargs))
        return outcome

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        return bool(_LOOP.run(self.inner.consume(vehicle_id, token_id, keep_until)))

    def prune(self, now: int, *, limit: int | None = None) -> int:
        return int(_LOOP.run(self.inner.prune(now, limit=limit)))

    def count(self) -> int:
        return int(_LOOP.run(self.inner.count()))

    def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        when: int | None = _LOOP.run(self.inner.expire_time_ms(vehicle_id, token_id))
        return when

    def close(self) -> None:
        _LOOP.run(self.inner.close())

    def __repr__(self) -> str:
        return f"SyncOverAsync({self.inner!r})"


def open_async_ledger(kind: str, *, namespace: str = "tk_harness", url: str | None = None,
                      **options: Any) -> Coroutine[Any, Any, AsyncLedger]:
    """The coroutine that opens an async ledger of ``kind`` (await it on the loop that uses it)."""
    from trunkkey.ledger.postgres_async import AsyncPostgresLedger
    from trunkkey.ledger.redis_async import AsyncRedisLedger
    from trunkkey.ledger.redis_cluster_async import AsyncRedisClusterLedger

    where = url or os.environ[SERVER_ENV[kind]]
    if kind == "redis_async":
        return AsyncRedisLedger.open(where, prefix=namespace.encode() + b":", **options)
    if kind == "postgres_async":
        return AsyncPostgresLedger.open(where, table=namespace, **options)
    if kind == "redis_cluster_async":
        return AsyncRedisClusterLedger.open(where, prefix=namespace.encode() + b":", **options)
    kinds = ASYNC_KINDS + CLUSTER_ASYNC_KINDS
    raise ValueError(f"unknown async ledger kind {kind!r}; choose from {', '.join(kinds)}")


def new_namespace() -> str:
    return "tk_" + secrets.token_hex(6)


def server_problem(kind: str) -> str | None:
    """Why the server for ``kind`` cannot be used, or ``None`` when it answers."""
    if kind not in SERVER_ENV:
        return None
    env = SERVER_ENV[kind]
    url = os.environ.get(env)
    if not url:
        return f"{env} is not set (run: eval \"$(bash tools/start-services.sh)\")"
    try:
        ledger = open_ledger(kind, namespace="tk_probe", url=url)
        ledger.count()
        ledger.close()
    except Exception as exc:  # noqa: BLE001 -- any failure means "not available"
        return f"{kind} at {env} does not answer: {exc}"
    return None


def open_ledger(
    kind: str,
    *,
    namespace: str = "tk_harness",
    path: Path | None = None,
    url: str | None = None,
) -> Ledger:
    """A ledger of ``kind``; SQLite needs ``path``, the servers read their URL from the env."""
    if kind == "memory":
        return MemoryLedger()
    if kind == "sqlite":
        if path is None:
            raise ValueError("the sqlite ledger needs a path")
        return SqliteLedger(path)
    if kind == "sqlite_group":
        if path is None:
            raise ValueError("the sqlite_group ledger needs a path")
        return GroupCommitSqliteLedger(path)
    if kind == "redis":
        return RedisLedger(
            url or os.environ[SERVER_ENV[kind]], prefix=namespace.encode() + b":"
        )
    if kind == "postgres":
        return PostgresLedger(url or os.environ[SERVER_ENV[kind]], table=namespace)
    if kind == "postgres_pair":
        return PostgresLedger(url or os.environ[REPLICATED_ENV[kind]], table=namespace)
    if kind == "redis_cluster":
        from trunkkey.ledger.redis_cluster import RedisClusterLedger

        return RedisClusterLedger(
            url or os.environ[REPLICATED_ENV[kind]], prefix=namespace.encode() + b":"
        )
    if kind in ASYNC_KINDS + CLUSTER_ASYNC_KINDS:
        return SyncOverAsync(open_async_ledger(kind, namespace=namespace, url=url))
    kinds = KINDS + ASYNC_KINDS + CLUSTER_ASYNC_KINDS
    raise ValueError(f"unknown ledger kind {kind!r}; choose from {', '.join(kinds)}")


def drop_namespace(kind: str, namespace: str, url: str | None = None) -> None:
    """Remove what a run left on a shared server (its keys or its table)."""
    kind = server_of(kind)
    if kind not in ("redis", "redis_cluster", "postgres", "postgres_pair"):
        return
    url = url or os.environ[SERVER_ENV.get(kind) or REPLICATED_ENV[kind]]
    if kind == "redis_cluster":
        primaries = ClusterPrimaries(url)
        for client in primaries.clients:
            # One DEL per key: keys of different slots cannot share one.
            pipe = client.pipeline(transaction=False)
            for key in client.scan_iter(match=namespace.encode() + b":*", count=5000):
                pipe.delete(key)
            pipe.execute()
        primaries.close()
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=namespace.encode() + b":*", count=5000))
        for start in range(0, len(keys), 5000):
            client.delete(*keys[start : start + 5000])
        client.close()
    elif kind in ("postgres", "postgres_pair"):
        import psycopg
        from psycopg import sql

        # target_session_attrs: a pair's DSN names the standby too, which cannot DROP.
        with psycopg.connect(url, autocommit=True, target_session_attrs="read-write") as conn:
            for table in (namespace, namespace + "_daily"):  # spent tokens, daily counters
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


class ClusterPrimaries:
    """A plain client of every primary of a Redis Cluster (from ``CLUSTER SLOTS``), for
    SCAN, DBSIZE and DEL on each: redis-py's cluster client leaves a socket open."""

    def __init__(self, url: str) -> None:
        import redis

        seed = redis.Redis.from_url(url)
        try:
            slots = seed.execute_command("CLUSTER", "SLOTS")
        finally:
            seed.close()
        asked = urlsplit(url).hostname or "127.0.0.1"
        addresses = {
            ((entry[2][0].decode() if isinstance(entry[2][0], bytes) else entry[2][0])
             or asked, int(entry[2][1]))
            for entry in slots
        }
        self.clients = [redis.Redis(host=h, port=p) for h, p in sorted(addresses)]

    def scan_iter(self, match: bytes, count: int) -> Iterator[bytes]:
        for client in self.clients:
            yield from client.scan_iter(match=match, count=count)

    def dbsize(self) -> int:
        return sum(int(client.dbsize()) for client in self.clients)

    def time(self) -> tuple[int, int]:
        # One machine's clock: every node on loopback shares it.
        seconds, micros = self.clients[0].time()
        return int(seconds), int(micros)

    def close(self) -> None:
        for client in self.clients:
            client.close()
