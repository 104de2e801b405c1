# ruff: noqa: PLC0415  -- optional clients (redis, psycopg) imported only when asked for
"""Open any trunkkey ledger by name, against the servers tools/start-services.sh started.

Shared by the harnesses, the tests and the benchmarks, so they all build the
ledgers the same way. ``namespace`` keeps runs apart on a shared server: it
becomes the Redis key prefix or the PostgreSQL table name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from trunkkey.ledger.base import Ledger
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger

KINDS = ("memory", "sqlite", "sqlite_group", "redis", "postgres")
SERVER_ENV = {
    "redis": "TRUNKKEY_REDIS_URL",
    "postgres": "TRUNKKEY_POSTGRES_DSN",
}
REPLICA_ENV = {
    "redis": "TRUNKKEY_REDIS_REPLICA_URL",
    "postgres": "TRUNKKEY_POSTGRES_REPLICA_DSN",
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
}


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
    raise ValueError(f"unknown ledger kind {kind!r}; choose from {', '.join(KINDS)}")


def drop_namespace(kind: str, namespace: str, url: str | None = None) -> None:
    """Remove what a run left on a shared server (its keys or its table)."""
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
