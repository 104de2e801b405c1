# ruff: noqa: PLC0415  -- optional clients (redis, psycopg) imported only when asked for
"""Open any trunkkey ledger by name, against the servers tools/start-services.sh started.

Shared by the harnesses, the tests and the benchmarks, so they all build the
ledgers the same way. ``namespace`` keeps runs apart on a shared server: it
becomes the Redis key prefix or the PostgreSQL table name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    if kind in ("redis", "redis_cluster"):
        import redis

        # A cluster client scans every primary and splits DEL by slot.
        client = (redis.Redis if kind == "redis" else redis.RedisCluster).from_url(url)
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
