"""Replay ledgers: the record that makes every token single-use."""

from .base import Ledger as Ledger
from .memory import MemoryLedger as MemoryLedger
from .sqlite import SqliteLedger as SqliteLedger
