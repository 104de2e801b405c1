"""Replay ledgers: the record that makes every token single-use.

``MemoryLedger`` and ``SqliteLedger`` (the embedded default) need nothing
beyond the core dependencies. ``RedisLedger``, ``RedisClusterLedger`` and
``PostgresLedger`` import their client libraries only when constructed
(extras ``trunkkey[redis]`` and ``trunkkey[postgres]``).
"""

from .base import DailyLimit as DailyLimit
from .base import Ledger as Ledger
from .base import SpendOutcome as SpendOutcome
from .memory import MemoryLedger as MemoryLedger
from .postgres import PostgresLedger as PostgresLedger
from .redis import RedisLedger as RedisLedger
from .redis_cluster import RedisClusterLedger as RedisClusterLedger
from .sqlite import SqliteLedger as SqliteLedger
from .sqlite_group import GroupCommitSqliteLedger as GroupCommitSqliteLedger

__all__ = [
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
