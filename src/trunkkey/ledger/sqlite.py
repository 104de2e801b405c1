"""The embedded default ledger: one SQLite file, durable across crashes and power cuts.

Durability: the database runs in WAL mode with ``synchronous=FULL``. In WAL
mode, FULL makes every commit fsync the write-ahead log before ``COMMIT``
returns, so once :meth:`SqliteLedger.consume` returns ``True`` the record
survives a killed process *and* a power cut (given a disk that honours
fsync). ``synchronous=NORMAL`` would survive a killed process but could lose
the last commits on power loss — and a lost record is a token that opens
twice — so trunkkey does not use it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from ..errors import LedgerError
from .base import DailyLimit, SpendOutcome, check_key, check_spend

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spent (
    vehicle    BLOB    NOT NULL,
    token_id   BLOB    NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (vehicle, token_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_keep_until ON spent (keep_until);
"""


class SqliteLedger:
    """Spent tokens in a SQLite database file.

    Safe for many threads (one connection, serialised by a lock) and for many
    processes on the same file (SQLite's own locking; each process opens its
    own ``SqliteLedger``).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._tmp_lock = threading.Lock()
        try:
            conn = sqlite3.connect(
                self._path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(f"cannot put {self._path} in WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self._path}: {exc}") from None
        self._conn: sqlite3.Connection | None = conn

    @property
    def path(self) -> Path:
        return self._path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("ledger is closed")
        return self._conn

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle = check_key(vehicle_id, token_id)
        with self._lock:
            conn = self._connection()
            try:
                # One statement, one implicit transaction: the primary key makes
                # the check and the insert a single atomic step across threads
                # and processes.
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO spent (vehicle, token_id, keep_until) VALUES (?, ?, ?)",
                    (vehicle, token_id, int(keep_until)),
                )
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger write failed: {exc}") from None
            return cursor.rowcount == 1

    def spend(self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int,
              at: int, limits: tuple[DailyLimit, ...] = ()) -> SpendOutcome:
        # TEMPORARY (replaced by the embedded-ledger work): limits kept in memory.
        _, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        with self._tmp_lock:
            counts = self.__dict__.setdefault("_counts", {})
            if any(counts.get((vehicle_id, x.grant, day), 0) >= x.limit for x in limits):
                return SpendOutcome.LIMIT_REACHED
            if not self.consume(vehicle_id, token_id, keep_until):
                return SpendOutcome.ALREADY_USED
            for x in limits:
                counts[(vehicle_id, x.grant, day)] = counts.get((vehicle_id, x.grant, day), 0) + 1
        return SpendOutcome.FIRST_USE

    def prune(self, now: int, *, limit: int | None = None) -> int:
        with self._lock:
            conn = self._connection()
            try:
                if limit is None:
                    cursor = conn.execute("DELETE FROM spent WHERE keep_until < ?", (int(now),))
                else:
                    cursor = conn.execute(
                        "DELETE FROM spent WHERE (vehicle, token_id) IN (SELECT vehicle, token_id "
                        "FROM spent WHERE keep_until < ? ORDER BY keep_until LIMIT ?)",
                        (int(now), int(limit)),
                    )
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger prune failed: {exc}") from None
            return cursor.rowcount

    def count(self) -> int:
        with self._lock:
            try:
                row = self._connection().execute("SELECT count(*) FROM spent").fetchone()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger read failed: {exc}") from None
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self._path)!r})"
