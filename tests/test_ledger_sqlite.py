"""What the SQLite ledgers promise beyond the common contract.

Their durability settings; a damaged file refused on open rather than used
(it may have forgotten spent tokens); the operator's recovery, which never
reopens a spent token; schema migration; a full disk that does not jam the
ledger for good; and one bound on every call's wait, however many threads.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import NOW, VEHICLE
from trunkkey import InvalidRequest, LedgerError
from trunkkey.cli import main as cli_main
from trunkkey.errors import LedgerCorrupted
from trunkkey.ledger import _sqlite_wal as sqlite_wal
from trunkkey.ledger import sqlite as sqlite_module
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.ledger.sqlite import (
    JOURNAL_SIZE_LIMIT,
    RESTART_MARGIN,
    SCHEMA_VERSION,
    SqliteLedger,
    spent_checksum,
)
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger
from trunkkey.verifier import MAX_ALLOWED_SKEW

FIRST, USED, FULL, EARLY = (
    SpendOutcome.FIRST_USE, SpendOutcome.ALREADY_USED, SpendOutcome.LIMIT_REACHED,
    SpendOutcome.ISSUED_BEFORE_LEDGER,
)
GRANT = bytes(range(32))
KEEP = NOW + 10**6

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


def test_a_ledger_named_without_a_directory_is_made_in_the_working_one_and_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trunkkey.ledger import _sqlite_file

    synced: list[str] = []
    real = _sqlite_file.fsync_dir

    def recording(directory: str) -> None:
        synced.append(os.fspath(directory))
        real(directory)

    monkeypatch.setattr(_sqlite_file, "fsync_dir", recording)
    monkeypatch.chdir(tmp_path)
    ledger = SqliteLedger("car.db")
    assert spend(ledger, b"t1") is FIRST
    ledger.close()
    # The new file's name is durable only once its directory is synced.
    assert "." in synced
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("car.db")] == []


def test_a_file_sqlite_will_not_run_in_wal_mode_is_refused_naming_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a file system without shared memory, where SQLite falls back to a
    # rollback journal: every commit there would lose the WAL's guarantees.
    path = tmp_path / "car.db"
    SqliteLedger(path).close()

    class NoWal(sqlite3.Connection):
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql == "PRAGMA journal_mode":
                return super().execute("SELECT 'delete'")
            return super().execute(sql, *args)

    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, factory=NoWal, **k))
    with pytest.raises(LedgerError, match=r"^cannot use .*car\.db in WAL mode \(got delete\)$"):
        SqliteLedger(path)


def test_a_healthy_ledger_leaves_its_wal_to_sqlites_own_checkpoints(tmp_path: Path) -> None:
    # Emptying the WAL before a write is for a disk that filled up; doing it on
    # every first write would cost each opening of a healthy ledger a checkpoint.
    path = tmp_path / "car.db"
    first = SqliteLedger(path)
    for n in range(5):
        assert spend(first, b"early-%d" % n) is FIRST
    before = os.path.getsize(f"{path}-wal")
    second = SqliteLedger(path)
    assert spend(second, b"later") is FIRST
    assert os.path.getsize(f"{path}-wal") >= before
    second.close()
    first.close()


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


def spend(ledger: SqliteLedger, token: bytes, *limits: DailyLimit, issued_at: int = NOW,
          at: int = NOW) -> SpendOutcome:
    return ledger.spend(VEHICLE, token, KEEP, issued_at=issued_at, at=at, limits=limits)


class TestGroupCommitOrder:
    """Inside one batch, requests are decided in arrival order, each seeing the last."""

    def test_two_spends_in_one_batch_under_a_limit_of_one_cannot_both_win(
        self, tmp_path: Path
    ) -> None:
        ledger = GroupCommitSqliteLedger(tmp_path / "g.db")
        outcomes: dict[bytes, SpendOutcome] = {}

        def present(token: bytes, *limits: DailyLimit) -> threading.Thread:
            thread = threading.Thread(
                target=lambda: outcomes.__setitem__(token, spend(ledger, token, *limits))
            )
            thread.start()
            return thread

        # Hold the writer inside its first batch so that the next two
        # requests queue up behind it and share the second batch.
        ledger._lock.acquire()
        blocker = present(b"blocker")
        _until(lambda: ledger._queue.qsize() == 0)
        first = present(b"first", DailyLimit(GRANT, 1))
        _until(lambda: ledger._queue.qsize() == 1)
        second = present(b"second", DailyLimit(GRANT, 1))
        _until(lambda: ledger._queue.qsize() == 2)
        ledger._lock.release()
        for thread in (blocker, first, second):
            thread.join(timeout=30)
        assert outcomes == {b"blocker": FIRST, b"first": FIRST, b"second": FULL}
        assert (ledger.batches, ledger.batched) == (2, 3)
        ledger.close()

    def test_a_request_whose_caller_gave_up_is_never_written(self, tmp_path: Path) -> None:
        ledger = GroupCommitSqliteLedger(tmp_path / "g.db", busy_timeout_ms=200)
        ledger._lock.acquire()  # the writer cannot start a transaction
        errors: list[str] = []

        def present(token: bytes) -> None:
            try:
                spend(ledger, token)
            except LedgerError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=present, args=(bytes([i]),)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        ledger._lock.release()
        assert len(errors) == 4
        assert [spend(ledger, bytes([i])) for i in range(4)] == [FIRST] * 4
        ledger.close()


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread's progress (bounded; not a clock in the test's logic)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the other thread made no progress"
        time.sleep(0.001)


# -- a damaged file is refused, never used ----------------------------------------------


@dataclass(frozen=True)
class Pristine:
    """A closed ledger file (no WAL left), the tokens spent in it, and its content."""

    data: bytes
    tokens: list[bytes]
    dump: list[str]

    @property
    def pages(self) -> int:
        return len(self.data) // 4096


def _tokens(n: int) -> list[bytes]:
    return [b"TOKEN-%04d-" % i + bytes([0xA5] * 6) for i in range(n)]


def _raw_dump(path: Path) -> list[str] | None:
    """The file's content as SQL, read by plain SQLite on a copy; None if unreadable."""
    copy = path.with_name(path.name + ".dump")
    shutil.copyfile(path, copy)
    try:
        conn = sqlite3.connect(copy)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, TypeError):  # what the dump code meets in damage
        return None
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{copy}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    path = tmp_path_factory.mktemp("pristine") / "ledger.db"
    tokens = _tokens(60)
    ledger = SqliteLedger(path)
    for token in tokens:
        assert spend(ledger, token, DailyLimit(GRANT, 1000)) is FIRST
    ledger.close()
    assert not Path(f"{path}-wal").exists(), "closing folds the WAL into the file"
    dump = _raw_dump(path)
    assert dump is not None
    return Pristine(path.read_bytes(), tokens, dump)


def _refused(path: Path, tokens: list[bytes]) -> bool:
    """True if the ledger refuses to open; otherwise every token must still be spent."""
    try:
        ledger = SqliteLedger(path)
    except LedgerCorrupted as exc:
        message = str(exc)
        assert str(path) in message
        assert f"trunkkey ledger recover {path}" in message
        return True
    try:
        forgotten = [t for t in tokens if spend(ledger, t) is not USED]
        assert not forgotten, f"the ledger opened and forgot {len(forgotten)} spent tokens"
    finally:
        ledger.close()
    return False


def _damaged(tmp_path: Path, pristine: Pristine, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _flip(data: bytes, offset: int, bit: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= 1 << bit
    return bytes(changed)


class TestDamagedFilesAreRefused:
    def test_a_flipped_bit_anywhere_is_refused_or_changed_nothing(
        self, pristine: Pristine, tmp_path: Path
    ) -> None:
        # Every 37th byte across the whole file, and every byte of its header.
        offsets = sorted(set(range(0, len(pristine.data), 37)) | set(range(100)))
        refused, unchanged = 0, 0
        for n, offset in enumerate(offsets):
            path = _damaged(tmp_path, pristine, f"flip-{offset}.db",
                            _flip(pristine.data, offset, n % 8))
            dump = _raw_dump(path)
            if _refused(path, pristine.tokens):
                refused += 1
            else:
                # Opened: only where the flip changed nothing SQLite reads
                # (free space inside a page, a counter SQLite keeps for itself).
                assert dump == pristine.dump, f"a flip at byte {offset} changed the content"
                unchanged += 1
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert refused + unchanged == len(offsets)
        assert refused >= len(offsets) // 4, (refused, unchanged)

    @pytest.mark.parametrize("occurrence", [0, 1], ids=["first-copy", "second-copy"])
    def test_a_flipped_bit_in_a_stored_token_id_is_refused_though_quick_check_passes(
        self, pristine: Pristine, tmp_path: Path, occurrence: int
    ) -> None:
        # The review's case: the token's id is stored twice (table and
        # keep_until index); a bit flipped in one copy reopened that token.
        token = pristine.tokens[17]
        offsets = []
        start = 0
        while (found := pristine.data.find(token, start)) != -1:
            offsets.append(found)
            start = found + 1
        assert len(offsets) == 2
        path = _damaged(tmp_path, pristine, "token-flip.db",
                        _flip(pristine.data, offsets[occurrence] + 8, 0))
        copy = tmp_path / "quick-check.db"
        shutil.copyfile(path, copy)
        conn = sqlite3.connect(copy)
        quick = conn.execute("PRAGMA quick_check").fetchall()
        conn.close()
        if occurrence == 0:
            assert quick == [("ok",)], "the flip the review found passes quick_check"
        assert _refused(path, pristine.tokens)

    @pytest.mark.parametrize(
        "edit",
        [
            "UPDATE spent SET token_id = CAST(X'00' || token_id AS BLOB) WHERE token_id = "
            "(SELECT token_id FROM spent LIMIT 1)",
            "UPDATE spent SET token_id = CAST(token_id AS TEXT) WHERE token_id = "
            "(SELECT token_id FROM spent LIMIT 1)",
            "UPDATE spent SET keep_until = keep_until + 0.5 WHERE token_id = "
            "(SELECT token_id FROM spent LIMIT 1)",
            "UPDATE spent SET keep_until = keep_until - 1000000 WHERE token_id = "
            "(SELECT token_id FROM spent LIMIT 1)",
            "UPDATE spent SET vehicle = X'41' WHERE token_id = "
            "(SELECT token_id FROM spent LIMIT 1)",
            "UPDATE day_count SET used = used - 1",
            "UPDATE day_count SET grant_id = zeroblob(32)",
            "UPDATE meta SET floor = 1",
            "UPDATE meta SET version = 2",
            "DELETE FROM meta",
            "PRAGMA user_version = 0",
            "CREATE TRIGGER forget AFTER INSERT ON spent BEGIN DELETE FROM spent; END",
            "CREATE TABLE extra (x)",
            "DROP INDEX spent_keep_until",
        ],
        ids=["token-id", "token-id-as-text", "keep-until-real", "keep-until", "vehicle",
             "counter-lowered", "counter-grant", "floor-changed", "meta-version", "no-meta",
             "user-version", "trigger", "extra-table", "index-dropped"],
    )
    def test_a_well_formed_edit_that_breaks_a_checksum_or_the_schema_is_refused(
        self, pristine: Pristine, tmp_path: Path, edit: str
    ) -> None:
        # What integrity_check cannot see: the file is a valid SQLite database.
        path = _damaged(tmp_path, pristine, "edited.db", pristine.data)
        conn = sqlite3.connect(path)
        conn.execute(edit)
        conn.commit()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        with pytest.raises(LedgerCorrupted):
            SqliteLedger(path)

    @pytest.mark.parametrize("keep", ["empty", "1", "100", "page-1", "half", "all-but-a-page",
                                      "all-but-a-byte"])
    def test_a_truncated_file_is_refused(
        self, pristine: Pristine, tmp_path: Path, keep: str
    ) -> None:
        size = len(pristine.data)
        length = {"empty": 0, "1": 1, "100": 100, "page-1": 4096, "half": size // 2,
                  "all-but-a-page": size - 4096, "all-but-a-byte": size - 1}[keep]
        path = _damaged(tmp_path, pristine, "truncated.db", pristine.data[:length])
        assert _refused(path, pristine.tokens)

    @pytest.mark.parametrize(
        ("offset", "garbage"),
        [(0, bytes(range(100))), (0, b"SQLite format 2\x00"), (16, b"\x00\x03"),
         (20, b"\xff"), (28, b"\x00\x00\x00\x01")],
        ids=["whole-header", "magic", "page-size", "reserved-bytes", "page-count"],
    )
    def test_a_garbage_header_is_refused(
        self, pristine: Pristine, tmp_path: Path, offset: int, garbage: bytes
    ) -> None:
        data = bytearray(pristine.data)
        data[offset:offset + len(garbage)] = garbage
        path = _damaged(tmp_path, pristine, "header.db", bytes(data))
        assert _refused(path, pristine.tokens)

    def test_a_zeroed_or_scrambled_page_is_refused(
        self, pristine: Pristine, tmp_path: Path
    ) -> None:
        rng = random.Random(5)
        for page in range(pristine.pages):
            for fill in (bytes(4096), rng.randbytes(4096)):
                data = bytearray(pristine.data)
                data[page * 4096:(page + 1) * 4096] = fill
                path = _damaged(tmp_path, pristine, f"page-{page}.db", bytes(data))
                assert _refused(path, pristine.tokens), f"page {page} replaced"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

    @pytest.mark.parametrize("version", [b"\x01\x01", b"\x02\x03", b"\x03\x02"],
                             ids=["rollback-journal", "write-version-3", "read-version-3"])
    def test_a_header_that_no_longer_says_wal_is_refused_and_its_wal_kept(
        self, crashed: Crashed, tmp_path: Path, version: bytes
    ) -> None:
        # Read in rollback mode, SQLite would ignore the WAL (every spend in
        # it), and switching the file back to WAL would reset it.
        path = tmp_path / "mode.db"
        data = bytearray(crashed.db)
        data[18:20] = version
        path.write_bytes(bytes(data))
        Path(f"{path}-wal").write_bytes(crashed.wal)
        assert _refused(path, crashed.tokens)
        assert Path(f"{path}-wal").read_bytes() == crashed.wal

    def test_a_sqlite_file_that_is_no_ledger_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE notes (text)")
        conn.commit()
        conn.close()
        with pytest.raises(LedgerCorrupted, match="not a trunkkey ledger"):
            SqliteLedger(path)

    def test_a_file_from_a_newer_trunkkey_is_refused_but_not_called_damaged(
        self, pristine: Pristine, tmp_path: Path
    ) -> None:
        path = _damaged(tmp_path, pristine, "newer.db", pristine.data)
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("UPDATE meta SET version = version + 1")
        conn.commit()
        conn.close()
        with pytest.raises(LedgerError, match="newer trunkkey") as caught:
            SqliteLedger(path)
        assert not isinstance(caught.value, LedgerCorrupted)

    def test_a_locked_file_at_open_is_busy_not_damaged(
        self, pristine: Pristine, tmp_path: Path
    ) -> None:
        path = _damaged(tmp_path, pristine, "locked.db", pristine.data)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(LedgerError) as caught:
                SqliteLedger(path, busy_timeout_ms=50)
            assert not isinstance(caught.value, LedgerCorrupted)
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    def test_an_entry_damaged_while_open_is_refused_when_it_is_met(self, tmp_path: Path) -> None:
        path = tmp_path / "l.db"
        ledger = SqliteLedger(path)
        assert spend(ledger, b"tok") is FIRST
        other = sqlite3.connect(path)
        other.execute("UPDATE spent SET keep_until = 0")
        other.commit()
        other.close()
        # The conflicting row is checked before it is believed.
        with pytest.raises(LedgerCorrupted):
            spend(ledger, b"tok")
        ledger.close()

    def test_wal_frames_left_by_a_killed_process_are_kept(self, tmp_path: Path) -> None:
        path = tmp_path / "l.db"
        tokens = _tokens(5)
        _spend_then_die(path, tokens)
        assert Path(f"{path}-wal").stat().st_size > 0, "the spends are only in the WAL"
        assert not _refused(path, tokens)

    def test_a_damaged_wal_frame_with_commits_after_it_is_refused_and_left_as_found(
        self, crashed: Crashed, tmp_path: Path
    ) -> None:
        # SQLite's recovery stops silently at the first bad frame: every later
        # commit (here up to five spent tokens) would be forgotten.
        rng = random.Random(7)
        offsets = list(range(32))  # the WAL header: magic, version, page size, salts, checksum
        for frame in range(crashed.frames - 2):  # all but the last transaction's two frames
            start = 32 + frame * crashed.frame_size
            offsets += [start + field for field in (0, 4, 8, 12, 16, 20)]  # the frame header
            offsets += [start + 24 + rng.randrange(4096) for _ in range(3)]  # its page
        for n, offset in enumerate(offsets):
            path = tmp_path / f"wal-{offset}.db"
            path.write_bytes(crashed.db)
            wal = _flip(crashed.wal, offset, n % 8)
            Path(f"{path}-wal").write_bytes(wal)
            assert _refused(path, crashed.tokens), f"WAL byte {offset}"
            assert Path(f"{path}-wal").read_bytes() == wal, "SQLite never got to fold it away"
            if n % 10 == 0:
                assert _refused(path, crashed.tokens), "and it stays refused"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def test_without_room_for_a_scratch_copy_the_wal_is_checked_all_the_same(
        self, crashed: Crashed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The check asks SQLite (on a copy in the temp directory) how much of
        # the WAL it keeps; without that copy it works the chain out itself.
        monkeypatch.setattr(sqlite_wal, "_frames_sqlite_keeps", lambda path, wal: None)
        path = tmp_path / "intact.db"
        path.write_bytes(crashed.db)
        Path(f"{path}-wal").write_bytes(crashed.wal)
        assert not _refused(path, crashed.tokens)
        for frame in range(crashed.frames - 2):
            path = tmp_path / f"frame-{frame}.db"
            path.write_bytes(crashed.db)
            offset = 32 + frame * crashed.frame_size + 24 + 1000
            Path(f"{path}-wal").write_bytes(_flip(crashed.wal, offset, frame % 8))
            assert _refused(path, crashed.tokens), f"frame {frame}"

    @pytest.mark.xfail(
        strict=True,
        reason="a damaged frame of the last transaction looks like a write torn by the crash",
    )
    def test_a_damaged_frame_of_the_last_transaction_is_refused(
        self, crashed: Crashed, tmp_path: Path
    ) -> None:
        path = tmp_path / "last.db"
        path.write_bytes(crashed.db)
        last = 32 + (crashed.frames - 1) * crashed.frame_size + 24 + 100
        Path(f"{path}-wal").write_bytes(_flip(crashed.wal, last, 0))
        assert _refused(path, crashed.tokens)

    @pytest.mark.xfail(
        strict=True,
        reason="a deleted WAL leaves an older but consistent file: nothing inside it can tell "
               "(docs/operations.md: never delete or copy apart the -wal file)",
    )
    def test_a_deleted_wal_holding_committed_spends_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "l.db"
        tokens = _tokens(5)
        _spend_then_die(path, tokens)
        Path(f"{path}-wal").unlink()
        Path(f"{path}-shm").unlink(missing_ok=True)
        assert _refused(path, tokens)


@dataclass(frozen=True)
class Crashed:
    """A ledger left by a killed process: its spends are only in the WAL's frames."""

    db: bytes
    wal: bytes
    tokens: list[bytes]
    frame_size: int = 24 + 4096

    @property
    def frames(self) -> int:
        return (len(self.wal) - 32) // self.frame_size


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Crashed:
    path = tmp_path_factory.mktemp("crashed") / "ledger.db"
    tokens = _tokens(6)
    _spend_then_die(path, tokens)
    made = Crashed(path.read_bytes(), Path(f"{path}-wal").read_bytes(), tokens)
    assert made.frames == 2 * len(tokens)  # a table page and an index page per spend
    return made


def _spend_then_die(path: Path, tokens: list[bytes]) -> None:
    """Spend ``tokens`` in another process that then dies without closing the ledger."""
    SqliteLedger(path).close()
    source = Path(SqliteLedger.__module__.replace(".", "/") + ".py")
    package_root = Path(sys.modules["trunkkey"].__file__ or "").resolve().parents[1]
    assert (package_root / source).is_file()
    code = (
        "import os, sys\n"
        "from trunkkey.ledger.sqlite import SqliteLedger\n"
        "ledger = SqliteLedger(sys.argv[1])\n"
        "for t in sys.argv[2:]:\n"
        f"    assert ledger.consume('{VEHICLE}', bytes.fromhex(t), {KEEP})\n"
        "os._exit(0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(package_root))
    subprocess.run([sys.executable, "-c", code, str(path), *(t.hex() for t in tokens)],
                   check=True, env=env, timeout=60)


class TestMigration:
    LEGACY = (
        """CREATE TABLE IF NOT EXISTS spent (
    vehicle    BLOB    NOT NULL,
    token_id   BLOB    NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (vehicle, token_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spent_keep_until ON spent (keep_until);
"""
    )

    def _legacy(self, path: Path, rows: list[tuple[bytes, bytes, int]]) -> None:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(self.LEGACY)
        conn.executemany("INSERT INTO spent VALUES (?, ?, ?)", rows)
        conn.commit()
        conn.close()

    def test_a_ledger_from_before_checksums_is_migrated_with_every_token(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "old.db"
        self._legacy(path, [(VEHICLE.encode(), b"old-%d" % i, KEEP) for i in range(20)])
        ledger = SqliteLedger(path)
        assert ledger.start_floor == 0  # it was never lost
        assert ledger.count() == 20
        assert all(spend(ledger, b"old-%d" % i) is USED for i in range(20))
        assert spend(ledger, b"new", DailyLimit(GRANT, 1)) is FIRST
        ledger.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (checksum,) = conn.execute("SELECT checksum FROM spent WHERE token_id = ?",
                                   (b"old-3",)).fetchone()
        conn.close()
        assert checksum == spent_checksum(VEHICLE.encode(), b"old-3", KEEP)
        SqliteLedger(path).close()  # and the migrated file passes every check

    def test_a_legacy_ledger_failing_its_integrity_check_is_refused_and_says_so(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "old.db"
        self._legacy(path, [(VEHICLE.encode(), b"old-%d" % i, KEEP) for i in range(20)])
        data = bytearray(path.read_bytes())
        data[3 * 4096 - 1] ^= 0x01  # a token id inside the keep_until index's page
        path.write_bytes(bytes(data))
        with pytest.raises(LedgerCorrupted, match=r"\(integrity_check: row \d+ missing from index"):
            SqliteLedger(path)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # left as it was
        conn.close()

    def test_a_damaged_legacy_ledger_is_refused_not_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        self._legacy(path, [(VEHICLE.encode(), b"old", "not a time")])  # type: ignore[list-item]
        with pytest.raises(LedgerCorrupted):
            SqliteLedger(path)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0  # left as it was
        conn.close()


# -- recovery never reopens a spent token ------------------------------------------------


class TestStartAfresh:
    def test_the_damaged_files_are_moved_aside_and_older_tokens_refused(
        self, pristine: Pristine, tmp_path: Path
    ) -> None:
        path = _damaged(tmp_path, pristine, "car.db", _flip(pristine.data, 5000, 3))
        with pytest.raises(LedgerCorrupted):
            SqliteLedger(path)
        Path(f"{path}-wal").write_bytes(b"left by a crash")
        now = NOW + 7200
        ledger = SqliteLedger.start_afresh(path, now=now)
        assert ledger.start_floor == now + RESTART_MARGIN
        assert [p.name for p in ledger.moved_aside] == [
            "car.db.damaged-20270115T100000Z", "car.db.damaged-20270115T100000Z-wal",
        ]
        assert ledger.moved_aside[0].read_bytes() == _flip(pristine.data, 5000, 3)
        assert ledger.count() == 0
        # Every token spent in the lost ledger was issued before the restart:
        # none can open again.
        for token in pristine.tokens:
            assert spend(ledger, token, issued_at=NOW, at=now) is EARLY
        # Nor one issued a little later by an issuer's clock running ahead.
        assert spend(ledger, b"skewed", issued_at=now + MAX_ALLOWED_SKEW - 1, at=now) is EARLY
        issued = now + RESTART_MARGIN
        assert spend(ledger, b"new", issued_at=issued, at=issued) is FIRST
        assert spend(ledger, b"new", issued_at=issued, at=issued) is USED
        # The message names the file and the way out.
        with pytest.raises(LedgerError, match=r"^ledger \S+car\.db was started afresh after a "
                           r"loss and cannot check a token's issue time in consume\(\); "
                           r"use spend\(\)$"):
            ledger.consume(VEHICLE, b"unknown-age", KEEP)
        ledger.close()

    def test_a_floor_edited_away_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "car.db"
        SqliteLedger.start_afresh(path, now=NOW).close()
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET floor = 0")
        conn.commit()
        conn.close()
        with pytest.raises(LedgerCorrupted):
            SqliteLedger(path)

    @pytest.mark.parametrize("now", [-1, 253_402_300_800, 2**40 - RESTART_MARGIN, 2**62, True,
                                     1.5])
    def test_a_recovery_time_outside_the_ledgers_range_is_refused_and_nothing_moved(
        self, tmp_path: Path, now: object
    ) -> None:
        # The damaged copy is named by the UTC time, which ends with year 9999.
        path = tmp_path / "car.db"
        path.write_bytes(b"damaged")
        with pytest.raises(InvalidRequest, match="Unix seconds"):
            SqliteLedger.start_afresh(path, now=now)  # type: ignore[arg-type]
        assert path.read_bytes() == b"damaged"
        assert [p.name for p in tmp_path.iterdir()] == ["car.db"]

    def test_the_latest_recovery_time_in_range_is_accepted(self, tmp_path: Path) -> None:
        latest = 253_402_300_799  # 9999-12-31T23:59:59Z
        (tmp_path / "car.db").write_bytes(b"damaged")
        ledger = SqliteLedger.start_afresh(tmp_path / "car.db", now=latest)
        assert ledger.start_floor == latest + RESTART_MARGIN
        ledger.close()
        assert (tmp_path / "car.db.damaged-99991231T235959Z").read_bytes() == b"damaged"

    def test_the_margin_covers_the_largest_skew_a_verifier_allows(self) -> None:
        assert RESTART_MARGIN >= MAX_ALLOWED_SKEW

    def test_the_floor_survives_reopening(self, tmp_path: Path) -> None:
        path = tmp_path / "car.db"
        SqliteLedger.start_afresh(path, now=NOW).close()
        ledger = SqliteLedger(path)
        assert ledger.start_floor == NOW + RESTART_MARGIN
        assert spend(ledger, b"old", issued_at=NOW, at=NOW) is EARLY
        ledger.close()
        group = GroupCommitSqliteLedger(path)
        assert spend(group, b"old", issued_at=NOW, at=NOW) is EARLY
        group.close()

    def test_a_second_recovery_never_overwrites_the_first_damaged_copy(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "car.db"
        path.write_bytes(b"first damage")
        SqliteLedger.start_afresh(path, now=NOW).close()
        path.write_bytes(b"second damage")
        ledger = SqliteLedger.start_afresh(path, now=NOW)
        assert ledger.moved_aside[0].name.endswith("-2")
        ledger.close()
        copies = sorted(p.read_bytes() for p in tmp_path.glob("car.db.damaged-*"))
        assert copies == [b"first damage", b"second damage"]

    def test_a_lost_file_is_started_afresh_too(self, tmp_path: Path) -> None:
        ledger = SqliteLedger.start_afresh(tmp_path / "car.db", now=NOW)
        assert ledger.moved_aside == ()
        assert spend(ledger, b"old", issued_at=NOW - 1, at=NOW) is EARLY
        ledger.close()

    def test_a_first_install_refuses_nothing_by_issue_time(self, tmp_path: Path) -> None:
        ledger = SqliteLedger(tmp_path / "new.db")
        assert ledger.start_floor == 0
        assert spend(ledger, b"t", issued_at=0) is FIRST
        ledger.close()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], \
            "no temporary file is left behind"


class TestLedgerCommandLine:
    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = cli_main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def test_recover_moves_a_damaged_ledger_aside_and_starts_afresh(
        self, pristine: Pristine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = _damaged(tmp_path, pristine, "car.db", pristine.data[:4096])
        code, out, err = self.run(capsys, "ledger", "stats", str(path))
        assert code == 2
        assert f"trunkkey ledger recover {path}" in err
        code, out, _ = self.run(capsys, "ledger", "recover", str(path), "--at",
                                str(NOW), "--json")
        assert code == 0
        report = json.loads(out)
        assert report["start_floor"] == NOW + RESTART_MARGIN
        assert [Path(p).name for p in report["moved_aside"]] == [
            "car.db.damaged-20270115T080000Z"]
        ledger = SqliteLedger(path)
        assert spend(ledger, pristine.tokens[0], issued_at=NOW, at=NOW) is EARLY
        ledger.close()
        code, out, _ = self.run(capsys, "ledger", "stats", str(path))
        assert code == 0
        assert "refuses tokens issued before 2027-01-15" in out

    def test_recover_will_not_discard_a_healthy_ledger_unasked(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "car.db"
        ledger = SqliteLedger(path)
        assert spend(ledger, b"tok") is FIRST
        ledger.close()
        code, _, err = self.run(capsys, "ledger", "recover", str(path))
        assert code == 2
        assert "--force" in err
        again = SqliteLedger(path)
        assert spend(again, b"tok") is USED  # untouched
        again.close()
        code, _, _ = self.run(capsys, "ledger", "recover", str(path), "--force")
        assert code == 0
        assert len(list(tmp_path.glob("car.db.damaged-*"))) == 1


# -- a full disk does not jam the ledger for good ---------------------------------------


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


class TestFullDisk:
    def test_after_a_write_fails_for_space_the_wal_is_emptied_and_spends_resume(
        self, tmp_path: Path
    ) -> None:
        # Portable stand-in for a full partition: SQLite refuses to grow the
        # database past max_page_count with the same SQLITE_FULL.
        path = tmp_path / "l.db"
        ledger = SqliteLedger(path)
        assert spend(ledger, b"before") is FIRST
        conn = ledger._connection()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(LedgerError, match="full"):
            _spend_many(ledger, b"fill", 10_000)
        # The WAL is given back at once: it must not keep the partition full.
        assert _wal_bytes(path) == 0
        assert spend(ledger, b"before") is USED  # a replay is still refused, not unavailable
        ledger._connection().execute("PRAGMA max_page_count = 1073741823")  # space freed
        assert spend(ledger, b"after") is FIRST
        assert spend(ledger, b"after") is USED
        ledger.close()

    def test_on_a_two_mebibyte_partition_spends_and_prunes_never_fill_it(
        self, small_partition: Path
    ) -> None:
        # The review's case: the WAL grew until it filled a small partition
        # (SQLite's default checkpoint waits for 4 MB of WAL), and from then
        # on every write failed. With the WAL capped, a ledger whose live set
        # is bounded by pruning runs on for ever.
        path = small_partition / "l.db"
        ledger = SqliteLedger(path)
        largest_wal = 0
        for i in range(3_000):  # ~24 MB of WAL traffic through a 2 MiB partition
            assert ledger.consume(VEHICLE, i.to_bytes(8, "big"), NOW + i + 300)
            if i % 100 == 0:
                ledger.prune(NOW + i)
            largest_wal = max(largest_wal, _wal_bytes(path))
        assert largest_wal < JOURNAL_SIZE_LIMIT + 64 * 4096
        ledger.close()

    def test_when_the_partition_fills_spends_fail_closed_then_resume_once_space_is_freed(
        self, small_partition: Path
    ) -> None:
        path = small_partition / "l.db"
        ledger = SqliteLedger(path)
        assert spend(ledger, b"spent-before") is FIRST
        ballast = small_partition / "logs"
        _fill(ballast)
        errors: list[str] = []
        for i in range(2_000):  # the WAL absorbs some, then the database must grow
            try:
                spend(ledger, b"while-full-%d" % i)
            except LedgerError as exc:
                errors.append(str(exc))
                if len(errors) == 3:
                    break
        assert len(errors) == 3, "the partition never filled up"
        assert all("full" in e for e in errors), errors
        assert spend(ledger, b"spent-before") is USED
        ballast.unlink()
        assert spend(ledger, b"after-space-freed") is FIRST
        assert _wal_bytes(path) <= JOURNAL_SIZE_LIMIT
        for i in range(300):
            assert spend(ledger, b"and-on-%d" % i) is FIRST
        ledger.close()


def _spend_many(ledger: SqliteLedger, prefix: bytes, n: int) -> None:
    for i in range(n):
        spend(ledger, prefix + b"-%d" % i)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def _no_partition(why: str) -> None:
    """CI runs as root and must run the small-partition tests; elsewhere they skip, saying why."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the small-partition tests: {why}")
    pytest.skip(why)


@pytest.fixture
def small_partition(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system (tmpfs); skipped where mounting is not permitted."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        _no_partition("mounting a 2 MiB tmpfs needs root (the max_page_count test still runs)")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        _no_partition(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run([umount, "-l", str(mount_point)], check=False)


# -- every call ends within one bound ------------------------------------------------


class TestBoundedWait:
    """N threads behind a held lock each wait one bound, not N bounds."""

    BOUND_MS = 400

    @pytest.mark.parametrize("kind", ["sqlite", "sqlite_group"])
    def test_every_caller_gives_up_within_one_bound_while_another_holds_the_file(
        self, tmp_path: Path, kind: str
    ) -> None:
        path = tmp_path / "l.db"
        cls = SqliteLedger if kind == "sqlite" else GroupCommitSqliteLedger
        ledger = cls(path, busy_timeout_ms=self.BOUND_MS)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process, holding on past every bound
        start = threading.Barrier(9)
        raised: list[int] = []
        took: list[float] = []

        def call(i: int) -> None:
            start.wait()
            began = time.monotonic()
            try:
                spend(ledger, b"blocked-%d" % i)
            except LedgerError:
                raised.append(i)
            took.append(time.monotonic() - began)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        start.wait()
        began = time.monotonic()
        for t in threads:
            t.join(timeout=60)
        all_done = time.monotonic() - began
        holder.execute("ROLLBACK")
        holder.close()
        assert sorted(raised) == list(range(8))
        # One bound each, served one after another, would end the last after
        # 8 x 0.4 s = 3.2 s; a shared deadline ends them all after ~0.4 s.
        # Half the serial figure leaves room for a busy machine.
        serial = 8 * self.BOUND_MS / 1000
        assert max(took) < serial / 2, took
        assert all_done < serial / 2
        # Nothing was recorded by the calls that gave up.
        assert [spend(ledger, b"blocked-%d" % i) for i in range(8)] == [FIRST] * 8
        ledger.close()

    def test_a_thread_queued_for_the_ledger_gives_up_at_its_deadline(
        self, tmp_path: Path
    ) -> None:
        ledger = SqliteLedger(tmp_path / "l.db", busy_timeout_ms=self.BOUND_MS)
        ledger._lock.acquire()  # another thread's call that never ends
        try:
            with pytest.raises(LedgerError, match="busy"):
                spend(ledger, b"queued")
        finally:
            ledger._lock.release()
        assert spend(ledger, b"queued") is FIRST
        ledger.close()


def test_the_wait_bound_is_refused_outside_one_millisecond_to_ten_minutes(tmp_path: Path) -> None:
    message = r"^busy_timeout_ms must be an int from 1 to 600,000$"
    for bad in (0, 600_001, 1.5, True):
        with pytest.raises(InvalidRequest, match=message):
            SqliteLedger(tmp_path / "bound.db", busy_timeout_ms=bad)  # type: ignore[arg-type]
    for good in (1000, 600_000):
        SqliteLedger(tmp_path / f"bound-{good}.db", busy_timeout_ms=good).close()


# -- errors that say what failed -------------------------------------------------------


def test_every_operation_fails_closed_and_names_what_failed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    assert repr(ledger) == f"SqliteLedger({str(path)!r})"
    # Someone drops the table behind the ledger's back: every operation fails closed.
    other = sqlite3.connect(path)
    other.execute("DROP TABLE spent")
    other.commit()
    other.close()
    with pytest.raises(LedgerError, match=r"^ledger write failed: no such table: spent$"):
        ledger.consume("V", b"t", 10)
    with pytest.raises(LedgerError, match=r"^ledger write failed: no such table: spent$"):
        ledger.spend("V", b"t", 10, issued_at=1, at=1)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10, limit=5)
    with pytest.raises(LedgerError, match=r"^ledger read failed: no such table: spent$"):
        ledger.count()
    ledger.close()
    with pytest.raises(LedgerError, match=r"^ledger is closed$"):
        ledger.consume("V", b"t", 10)


def test_sqlite_ledger_refuses_what_it_cannot_make_durable(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"^cannot put :memory: in WAL mode: a ledger needs"):
        SqliteLedger(":memory:")
    with pytest.raises(LedgerError, match=r"^cannot put an empty path in WAL mode"):
        SqliteLedger("")
    assert not (Path.cwd() / ":memory:").exists()
    with pytest.raises(LedgerError, match=r"^cannot open ledger .*: unable to open database file$"):
        SqliteLedger(tmp_path / "no-such-dir" / "l.db")


def test_sqlite_waits_for_the_file_lock_only_until_the_calls_deadline(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "wait.db")
    try:
        sqlite_module._set_busy(conn, time.monotonic() + 1000)
        waited_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        conn.close()
    # Milliseconds, never past the deadline; a second of slack for a slow machine.
    assert 999_000 <= waited_ms <= 1_000_000


def test_a_new_ledger_has_moved_nothing_aside_and_cuts_its_wal_back_to_one_mebibyte(
    tmp_path: Path,
) -> None:
    ledger = SqliteLedger(tmp_path / "l.db")
    assert ledger.moved_aside == ()
    assert JOURNAL_SIZE_LIMIT == 1 << 20  # the size docs/ledgers.md promises
    conn = ledger._connection()
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 1 << 20
    ledger.close()


def test_a_wal_truncation_blocked_by_a_reader_is_retried_before_the_next_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    assert ledger.consume("V", b"a", 10) is True
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM spent").fetchone()[0] == 1
        ledger._truncate_wal(ledger._connection())
        assert ledger._checkpoint_due is True  # a reader held the log: try again later
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert ledger.consume("V", b"b", 10) is True
    assert ledger._checkpoint_due is False
    # Emptied before that write: the log holds only its frames, not the first write's too.
    assert os.stat(f"{path}-wal").st_size <= 32 + 2 * (24 + 4096)
    ledger.close()


def _wal_left_by_a_writer(tmp_path: Path, *, page_size: int) -> Path:
    """A copy of a database whose three commits are still only in its WAL."""
    live = tmp_path / "live.db"
    conn = sqlite3.connect(live, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {page_size}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t (x BLOB)")
        for i in range(3):
            conn.execute("INSERT INTO t VALUES (?)", (bytes([i]) * 100,))
        copy = tmp_path / "copy.db"
        shutil.copyfile(live, copy)
        shutil.copyfile(f"{live}-wal", f"{copy}-wal")
    finally:
        conn.close()
    return copy


def test_a_wal_of_the_smallest_page_size_is_read_not_taken_for_damage(tmp_path: Path) -> None:
    copy = _wal_left_by_a_writer(tmp_path, page_size=512)
    assert Path(f"{copy}-wal").stat().st_size > 32 + 3 * (24 + 512)
    assert sqlite_wal.wal_drops_commits(copy) is False


def test_a_last_frame_torn_by_a_crash_is_not_taken_for_damage(tmp_path: Path) -> None:
    copy = _wal_left_by_a_writer(tmp_path, page_size=512)
    wal = Path(f"{copy}-wal")
    wal.write_bytes(wal.read_bytes()[:-5])  # the last commit's frame, cut short
    assert sqlite_wal.wal_drops_commits(copy) is False


def test_a_ledger_failing_its_integrity_check_is_refused_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    for i in range(20):
        assert ledger.consume(VEHICLE, b"tok-%d" % i, KEEP) is True
    ledger.close()
    data = bytearray(path.read_bytes())
    data[3 * 4096 - 1] ^= 0x01  # a token id inside the keep_until index's page
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorrupted, match=r"\(integrity_check: row \d+ missing from index"):
        SqliteLedger(path)
