"""What the SQLite ledger promises beyond the common contract: its durability settings."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from support import VEHICLE
from trunkkey import LedgerError
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger

# synchronous=FULL is 2: every commit fsyncs the WAL before COMMIT returns.
SYNCHRONOUS_FULL = 2


def test_wal_and_full_synchronous(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    conn = ledger._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == SYNCHRONOUS_FULL
    ledger.close()


def test_a_commit_is_in_the_file_before_consume_returns(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    assert ledger.consume(VEHICLE, b"seen-by-others", 2**40)
    # A separate connection (another process, in effect) sees it at once.
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM spent").fetchone()[0] == 1
    other.close()
    ledger.close()


def test_locked_database_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    SqliteLedger(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our timeout
    ledger = SqliteLedger(path, busy_timeout_ms=50)
    with pytest.raises(LedgerError):
        ledger.consume(VEHICLE, b"blocked", 2**40)
    holder.execute("ROLLBACK")
    holder.close()
    assert ledger.consume(VEHICLE, b"blocked", 2**40) is True  # nothing was recorded before
    ledger.close()


def test_not_a_database_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not a SQLite database file" * 100)
    with pytest.raises(LedgerError):
        SqliteLedger(path)


def test_missing_directory_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(LedgerError):
        SqliteLedger(tmp_path / "no" / "such" / "dir" / "l.db")


class TestGroupCommit:
    """Several consumes per fsync; none acknowledged before its commit; none twice."""

    def test_concurrent_consumes_share_commits(self, tmp_path: Path) -> None:
        path = tmp_path / "g.db"
        ledger = GroupCommitSqliteLedger(path)
        results: dict[int, bool] = {}

        def work(start: int) -> None:
            for i in range(start, 400, 8):
                results[i] = ledger.consume(VEHICLE, i.to_bytes(4, "big"), 2**40)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == dict.fromkeys(range(400), True)
        assert ledger.batched == 400
        assert ledger.batches < 400, "8 threads at once must share some commits"
        ledger.close()
        # Every acknowledged consume is in the file, seen by a fresh connection.
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM spent").fetchone()[0] == 400
        other.close()

    def test_same_token_in_one_batch_wins_once(self, tmp_path: Path) -> None:
        ledger = GroupCommitSqliteLedger(tmp_path / "g.db")
        start = threading.Barrier(12)
        wins: list[bool] = []

        def work() -> None:
            start.wait()
            wins.append(ledger.consume(VEHICLE, b"contested", 2**40))

        threads = [threading.Thread(target=work) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 11 + [True]
        ledger.close()

    def test_failed_batch_acknowledges_nothing(self, tmp_path: Path) -> None:
        path = tmp_path / "g.db"
        ledger = GroupCommitSqliteLedger(path, busy_timeout_ms=50)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(LedgerError):
            ledger.consume(VEHICLE, b"not-recorded", 2**40)
        holder.execute("ROLLBACK")
        holder.close()
        assert ledger.count() == 0
        assert ledger.consume(VEHICLE, b"not-recorded", 2**40) is True
        ledger.close()

    def test_closed_raises_and_close_is_idempotent(self, tmp_path: Path) -> None:
        ledger = GroupCommitSqliteLedger(tmp_path / "g.db")
        ledger.close()
        ledger.close()
        with pytest.raises(LedgerError):
            ledger.consume(VEHICLE, b"late", 2**40)
