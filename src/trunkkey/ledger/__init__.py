"""Replay ledgers: the record that makes every token single-use.

``MemoryLedger`` and ``SqliteLedger`` (the embedded default) need nothing
beyond the core dependencies. ``RedisLedger``, ``RedisClusterLedger`` and
``PostgresLedger`` import their client libraries only when constructed
(extras ``trunkkey[redis]`` and ``trunkkey[postgres]``), and so do their asyncio
forms ``AsyncRedisLedger``, ``AsyncRedisClusterLedger`` and ``AsyncPostgresLedger``
(for ``AsyncVerifier``).

Each backend's module is imported when its name is first used (PEP 562): the
verifier needs only the protocol in ``base``, and a car with a SQLite ledger
never loads the server backends (their deadlines, sockets and threads).
"""

import typing as _typing

from .._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from .base import AsyncLedger as AsyncLedger
    from .base import DailyLimit as DailyLimit
    from .base import Ledger as Ledger
    from .base import SpendOutcome as SpendOutcome
    from .memory import MemoryLedger as MemoryLedger
    from .postgres import PostgresLedger as PostgresLedger
    from .postgres_async import AsyncPostgresLedger as AsyncPostgresLedger
    from .redis import RedisLedger as RedisLedger
    from .redis_async import AsyncRedisLedger as AsyncRedisLedger
    from .redis_cluster import RedisClusterLedger as RedisClusterLedger
    from .redis_cluster_async import AsyncRedisClusterLedger as AsyncRedisClusterLedger
    from .sqlite import SqliteLedger as SqliteLedger
    from .sqlite_group import GroupCommitSqliteLedger as GroupCommitSqliteLedger

#: Where each public name is defined: the module imported on its first use.
_DEFINED_IN: dict[str, str] = {
    "AsyncLedger": "base",
    "DailyLimit": "base",
    "Ledger": "base",
    "SpendOutcome": "base",
    "MemoryLedger": "memory",
    "PostgresLedger": "postgres",
    "AsyncPostgresLedger": "postgres_async",
    "RedisLedger": "redis",
    "AsyncRedisLedger": "redis_async",
    "RedisClusterLedger": "redis_cluster",
    "AsyncRedisClusterLedger": "redis_cluster_async",
    "SqliteLedger": "sqlite",
    "GroupCommitSqliteLedger": "sqlite_group",
}

#: The backends ``import trunkkey.ledger`` used to load as a side effect, so
#: that ``trunkkey.ledger.sqlite`` still works after a bare import.
_SUBMODULES = frozenset({"base", "memory", "postgres", "redis", "sqlite", "sqlite_group"})


__getattr__, __dir__ = _lazy_names(globals(), _DEFINED_IN, _SUBMODULES)


__all__ = [
    "AsyncLedger",
    "AsyncPostgresLedger",
    "AsyncRedisClusterLedger",
    "AsyncRedisLedger",
    "DailyLimit",
    "GroupCommitSqliteLedger",
    "Ledger",
    "MemoryLedger",
    "PostgresLedger",
    "RedisClusterLedger",
    "RedisLedger",
    "SpendOutcome",
    "SqliteLedger",
]
