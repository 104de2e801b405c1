"""The optional journal of a SQLite ledger: an append-only list of entries in
the ledger's own file.

It exists so that a car's access log can make an opening's entry durable in
the very transaction that spends the token (:meth:`SqliteLedger.spend_journalled`):
one commit, one fsync, and no opening without its entry nor an entry for a
spend that never committed. Entries are opaque bytes to the ledger; each row
carries a checksum, and the full check on opening refuses a hole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol, TypeVar

from ..errors import InvalidRequest
from ._sqlite_file import (
    JOURNAL_DDL,
    has_journal,
    journal_base_checksum,
    journal_checksum,
)

T = TypeVar("T")


class Runner(Protocol):
    """Runs work in one transaction of the ledger, within its deadline (its ``_call``)."""

    def __call__(
        self, work: Callable[[sqlite3.Connection], T], *, what: str, write: bool,
        deadline: float | None = None,
    ) -> T: ...

MAX_JOURNAL_ENTRY_BYTES = 1024


def journal_size(conn: sqlite3.Connection) -> int:
    """How many entries were ever appended (pruned ones included)."""
    row = conn.execute("SELECT max(seq) FROM journal").fetchone()
    if row[0] is not None:
        return int(row[0]) + 1
    return int(conn.execute("SELECT size FROM journal_base").fetchone()[0])


def journal_append(conn: sqlite3.Connection, entry: bytes) -> int:
    """Append inside the caller's write transaction; return the entry's index."""
    if type(entry) is not bytes or not 0 < len(entry) <= MAX_JOURNAL_ENTRY_BYTES:
        raise InvalidRequest("a journal entry must be 1 to 1024 bytes")
    seq = journal_size(conn)
    conn.execute(
        "INSERT INTO journal (seq, entry, checksum) VALUES (?, ?, ?)",
        (seq, entry, journal_checksum(seq, entry)),
    )
    return seq


class SqliteJournal:
    """The journal of one open :class:`~trunkkey.SqliteLedger` (created on first use)."""

    def __init__(self, call: Runner) -> None:
        self._call = call
        self._call(self._create, what="write", write=True)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        if has_journal(conn):
            return
        for statement in JOURNAL_DDL:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO journal_base (id, size, frontier, checksum) VALUES (1, 0, ?, ?)",
            (b"", journal_base_checksum(0, b"")),
        )

    def append(self, entry: bytes) -> int:
        """Append ``entry`` durably (its own commit); return its index."""
        return self._call(lambda c: journal_append(c, entry), what="write", write=True)

    def size(self) -> int:
        return self._call(journal_size, what="read", write=False)

    def base(self) -> tuple[int, bytes]:
        """How many entries were pruned, and the frontier stored with them."""
        def read(conn: sqlite3.Connection) -> tuple[int, bytes]:
            size, frontier = conn.execute("SELECT size, frontier FROM journal_base").fetchone()
            return int(size), bytes(frontier)
        return self._call(read, what="read", write=False)

    def entries(self, start: int) -> list[bytes]:
        """The entries from index ``start`` on (none pruned may be asked for)."""
        def read(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute("SELECT entry FROM journal WHERE seq >= ? ORDER BY seq", (start,))
            return [bytes(row[0]) for row in rows]
        return self._call(read, what="read", write=False)

    def prune(self, upto: int, frontier: bytes) -> int:
        """Delete entries below ``upto`` and keep ``frontier`` in their place, at once."""
        def work(conn: sqlite3.Connection) -> int:
            size = int(conn.execute("SELECT size FROM journal_base").fetchone()[0])
            if not size <= upto <= journal_size(conn):
                raise InvalidRequest("prune must keep every entry not yet pruned")
            cursor = conn.execute("DELETE FROM journal WHERE seq < ?", (upto,))
            conn.execute(
                "UPDATE journal_base SET size = ?, frontier = ?, checksum = ? WHERE id = 1",
                (upto, frontier, journal_base_checksum(upto, frontier)),
            )
            return int(cursor.rowcount)
        return self._call(work, what="write", write=True)
