"""The embedded default ledger: one SQLite file, durable across crashes and power cuts.

Durability: the database runs in WAL mode with ``synchronous=FULL``. In WAL
mode, FULL makes every commit fsync the write-ahead log before ``COMMIT``
returns, so once :meth:`SqliteLedger.spend` answers ``FIRST_USE`` the record
survives a killed process *and* a power cut (given a disk that honours
fsync). ``synchronous=NORMAL`` would survive a killed process but could lose
the last commits on power loss — and a lost record is a token that opens
twice — so trunkkey does not use it.

Integrity: every row carries a checksum, and a file is opened only after
``PRAGMA integrity_check``, an exact schema comparison and every row's
checksum have passed. A damaged file is refused with
:class:`~trunkkey.errors.LedgerCorrupted` rather than used, since a damaged
ledger may have forgotten spent tokens; :meth:`SqliteLedger.start_afresh` is
the operator's way out, and it refuses every token issued before it.

Latency: every call ends within one bound, ``busy_timeout_ms``, plus the
time of its own transaction, however many threads and processes contend:
the wait for the thread lock and SQLite's wait for the file lock share one
deadline.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from ..errors import InvalidRequest, LedgerCorrupted, LedgerError
from ._sqlite_file import (
    CHECKSUM_BYTES,
    SCHEMA_VERSION,
    check_file,
    corrupted,
    count_checksum,
    create,
    fsync_dir,
    is_int,
    meta_checksum,
    spent_checksum,
    sqlite_uri,
)
from ._sqlite_journal import SqliteJournal, journal_append
from ._sqlite_wal import wal_drops_commits
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_key, check_prune, check_spend

if TYPE_CHECKING:
    from pathlib import Path

# Re-exported: tests, tools and operators read these from this module.
__all__ = [
    "CHECKSUM_BYTES", "JOURNAL_SIZE_LIMIT", "RESTART_MARGIN", "SCHEMA_VERSION",
    "WAL_AUTOCHECKPOINT_PAGES", "SpendRequest", "SqliteLedger", "count_checksum",
    "meta_checksum", "spent_checksum",
]

T = TypeVar("T")

#: A ledger started afresh refuses tokens issued up to this long after it began:
#: a verifier accepts a token whose issue time is up to its clock skew ahead of
#: its own clock (at most ``verifier.MAX_ALLOWED_SKEW``), so a token spent just
#: before the loss may carry an issue time that far past the restart.
RESTART_MARGIN = 300
#: Pages in the WAL before SQLite copies them into the database (1 MiB of 4 KiB pages).
WAL_AUTOCHECKPOINT_PAGES = 256
#: After a checkpoint the WAL file is cut back to this size, so a small
#: partition is not held hostage by a WAL that once grew.
JOURNAL_SIZE_LIMIT = 1 << 20
# Primary result codes (the low byte of an extended code).
_YEAR_10000 = 253_402_300_800  #: 10000-01-01T00:00:00Z in Unix seconds
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
#: Failures to open that say nothing about the file's content: busy, locked,
#: no memory, read-only, interrupted, I/O error, full, cannot open, permission,
#: authorisation.
_NOT_THE_FILES_FAULT = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 3, 23})


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


@dataclass(frozen=True, slots=True)
class SpendRequest:
    """A validated spend: the vehicle in UTF-8 and the UTC day of the decision."""

    vehicle: bytes
    token_id: bytes
    keep_until: int
    day: int
    limits: tuple[DailyLimit, ...]


class SqliteLedger:
    """Spent tokens and daily-limit counters in a SQLite database file.

    Safe for many threads (one connection, serialised by a lock) and for many
    processes on the same file (SQLite's own locking; each process opens its
    own ``SqliteLedger``). A missing file is created (a first install, which
    refuses nothing); an existing file is verified in full before use and
    refused with :class:`~trunkkey.errors.LedgerCorrupted` if anything in it
    is damaged. Every call ends, answered or raising :class:`LedgerError`,
    within ``busy_timeout_ms`` plus its own transaction's time.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        if type(busy_timeout_ms) is not int or not (1 <= busy_timeout_ms <= 600_000):
            raise InvalidRequest("busy_timeout_ms must be an int from 1 to 600,000")
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            # SQLite reads these as a database in memory (or a URI): nothing
            # durable, whatever the name suggests. Refused, never a file so named.
            raise LedgerError(
                f"cannot put {str(path) or 'an empty path'} in WAL mode: a ledger needs a file "
                "(MemoryLedger is the in-memory one)"
            )
        self._path = os.fspath(path)  # a Path only when asked for (ledger.path)
        self._bound = busy_timeout_ms / 1000
        self._lock = _thread.allocate_lock()  # threading.Lock, without threading (cold_start)
        self._checkpoint_due = False
        self._moved_aside: tuple[Path, ...] = ()
        self._conn: sqlite3.Connection | None = None
        try:
            if not os.path.lexists(self._path):
                create(self._path, floor=0)
            # Every ledger file is in WAL mode (header bytes 18 and 19 are 2).
            # Read as anything else SQLite would ignore the WAL, and switching
            # back to WAL would reset it, committed spends and all.
            with open(self._path, "rb") as file:
                header = file.read(20)
            if header[18:20] != b"\x02\x02":
                raise self._corrupted("its header does not say WAL mode")
            # Before SQLite reads the WAL: its recovery would silently stop at
            # a damaged frame, and closing would fold the rest away for good.
            if wal_drops_commits(self._path):
                raise self._corrupted(
                    "its write-ahead log is damaged before committed spends"
                )
            # The bound is on waiting for others, so it starts after our own work.
            deadline = time.monotonic() + self._bound
            conn = self._connect(deadline)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from None
        except UnicodeDecodeError:
            # SQLite quoted damaged schema text in its error message.
            raise self._corrupted("its schema is unreadable") from None
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {self._path}: {exc.strerror}") from None
        try:
            self._floor = check_file(conn, self._path)
            self._give_back_wal_space(conn, deadline)
        except sqlite3.Error as exc:
            conn.close()
            raise self._open_error(exc) from None
        except UnicodeDecodeError:
            conn.close()
            raise self._corrupted("it holds text that is not UTF-8") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # -- opening and checking -------------------------------------------------

    @classmethod
    def start_afresh(
        cls, path: str | os.PathLike[str], *, now: int, busy_timeout_ms: int = 5000
    ) -> SqliteLedger:
        """The operator's recovery from a lost or damaged ledger: a new, empty one.

        Moves the damaged file and its ``-wal`` and ``-shm`` companions aside
        (to ``PATH.damaged-<UTC time>``, kept for inspection, never deleted)
        and creates a new ledger whose start floor is ``now`` plus
        :data:`RESTART_MARGIN`: it answers ``ISSUED_BEFORE_LEDGER`` to every
        token issued before then, since it cannot know which of those were
        spent, and its :meth:`consume` raises. Stop every verifier using the
        file first; ``now`` is the current trusted time.
        """
        # Year 10000 and after has no UTC name for the damaged copy.
        if type(now) is not int or not (0 <= now < _YEAR_10000):
            raise InvalidRequest("now must be an int of Unix seconds before year 10000")
        from pathlib import Path  # noqa: PLC0415 -- a recovery, never a car's wake
        target = Path(path)
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = target.with_name(f"{target.name}.damaged-{stamp}")
        n = 1
        while any(os.path.lexists(f"{aside}{s}") for s in ("", "-wal", "-shm")):
            n += 1
            aside = target.with_name(f"{target.name}.damaged-{stamp}-{n}")
        moved: list[Path] = []
        try:
            # The main file last: until it moves, a companion left behind
            # still belongs to it.
            for suffix in ("-wal", "-shm", ""):
                source = Path(f"{target}{suffix}")
                if os.path.lexists(source):
                    os.rename(source, f"{aside}{suffix}")
                    moved.append(Path(f"{aside}{suffix}"))
            fsync_dir(target.parent)
            create(target, floor=now + RESTART_MARGIN)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot start a new ledger at {target}: {exc}") from None
        except OSError as exc:
            raise LedgerError(f"cannot start a new ledger at {target}: {exc.strerror}") from None
        ledger = cls(target, busy_timeout_ms=busy_timeout_ms)
        ledger._moved_aside = tuple(reversed(moved))
        return ledger

    def _connect(self, deadline: float) -> sqlite3.Connection:
        # mode=rw: SQLite never creates the file behind our back; an empty new
        # file would be a ledger that has forgotten everything.
        uri = sqlite_uri(self._path, "mode=rw")
        conn = sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False,
            timeout=max(0.0, deadline - time.monotonic()),
        )
        try:
            _set_busy(conn, deadline)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                raise LedgerError(f"cannot use {self._path} in WAL mode (got {mode})")
        except BaseException:
            conn.close()
            raise
        return conn

    def _give_back_wal_space(self, conn: sqlite3.Connection, deadline: float) -> None:
        if self._wal_bytes() > 2 * JOURNAL_SIZE_LIMIT:
            # Grown past what checkpoints allow (a full disk, a long reader):
            # give the space back now if no one else is reading.
            with contextlib.suppress(sqlite3.Error, LedgerError):
                _set_busy(conn, deadline)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _corrupted(self, what: str) -> LedgerCorrupted:
        return corrupted(self._path, what)

    def _open_error(self, exc: sqlite3.Error) -> LedgerError:
        # Anything but a passing condition (a lock, a permission, memory, the
        # disk itself) means the file is not what this code wrote: damaged.
        if _code(exc) in _NOT_THE_FILES_FAULT:
            return LedgerError(f"cannot open ledger {self._path}: {exc}")
        return self._corrupted(str(exc))

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except OSError:
            return 0

    # -- calls ------------------------------------------------------------------

    @property
    def path(self) -> Path:
        from pathlib import Path  # noqa: PLC0415 -- see __init__
        return Path(self._path)

    @property
    def start_floor(self) -> int:
        """Tokens issued before this time are refused (0: a ledger never lost)."""
        return self._floor

    @property
    def moved_aside(self) -> tuple[Path, ...]:
        """Files :meth:`start_afresh` moved aside to make this ledger (main file first)."""
        return self._moved_aside

    @property
    def bound_s(self) -> float:
        """Every call ends within this many seconds plus its own transaction."""
        return self._bound

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError("ledger is closed")
        return self._conn

    def _call(
        self, work: Callable[[sqlite3.Connection], T], *, what: str, write: bool,
        deadline: float | None = None,
    ) -> T:
        """Run ``work`` in one transaction, within the call's deadline."""
        if deadline is None:
            deadline = time.monotonic() + self._bound
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise LedgerError(f"ledger {what} failed: busy for {self._bound:g} s")
        try:
            conn = self._connection()
            try:
                _set_busy(conn, deadline)
                if write and self._checkpoint_due:
                    # Best effort: a read (a replay refused) needs no space at all.
                    with contextlib.suppress(sqlite3.Error):
                        self._truncate_wal(conn)
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        self._rollback(conn)
            except sqlite3.Error as exc:
                raise self._call_error(exc, what) from None
            except UnicodeDecodeError:
                raise self._corrupted("it holds text that is not UTF-8") from None
            return result
        finally:
            self._lock.release()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        # SQLite may have rolled back already (a full disk, an I/O error):
        # then ROLLBACK fails harmlessly. A connection left inside a
        # transaction would refuse every later BEGIN, so it is replaced.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._conn = self._connect(time.monotonic() + self._bound)

    def _call_error(self, exc: sqlite3.Error, what: str) -> LedgerError:
        code = _code(exc)
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return self._corrupted(str(exc))
        if code == _SQLITE_FULL:
            # A WAL that filled the disk keeps it full: no later commit could
            # grow it and no automatic checkpoint would run. Empty it now
            # (copying into database pages that already exist needs no space),
            # and again before the next write if that failed too.
            self._checkpoint_due = True
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error, LedgerError):
                    self._truncate_wal(self._conn)
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return LedgerError(f"ledger {what} failed: busy for {self._bound:g} s ({exc})")
        return LedgerError(f"ledger {what} failed: {exc}")

    def _truncate_wal(self, conn: sqlite3.Connection) -> None:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        self._checkpoint_due = bool(busy)

    def _decide(self, conn: sqlite3.Connection, request: SpendRequest) -> SpendOutcome:
        """One spend inside an open write transaction (which sees earlier spends in it)."""
        vehicle, token_id, keep_until = request.vehicle, request.token_id, request.keep_until
        day, limits = request.day, request.limits
        row = conn.execute(
            "SELECT keep_until, checksum FROM spent WHERE vehicle = ? AND token_id = ?",
            (vehicle, token_id),
        ).fetchone()
        if row is not None:
            # Believed only once checked: a damaged keep_until would be pruned early.
            if not (is_int(row[0]) and row[1] == spent_checksum(vehicle, token_id, row[0])):
                raise self._corrupted("a spent token's entry fails its checksum")
            return SpendOutcome.ALREADY_USED
        counts: list[tuple[bytes, int]] = []
        for item in limits:
            found = conn.execute(
                "SELECT used, checksum FROM day_count WHERE day = ? AND vehicle = ? "
                "AND grant_id = ?",
                (day, vehicle, item.grant),
            ).fetchone()
            used = 0
            if found is not None:
                used = found[0]
                if not (is_int(used) and found[1] == count_checksum(day, vehicle, item.grant,
                                                                     used)):
                    raise self._corrupted("a daily-limit counter fails its checksum")
            if used >= item.limit:
                return SpendOutcome.LIMIT_REACHED
            counts.append((item.grant, used + 1))
        conn.execute(
            "INSERT INTO spent (vehicle, token_id, keep_until, checksum) VALUES (?, ?, ?, ?)",
            (vehicle, token_id, keep_until, spent_checksum(vehicle, token_id, keep_until)),
        )
        for grant, used in counts:
            conn.execute(
                "INSERT OR REPLACE INTO day_count (day, vehicle, grant_id, used, checksum) "
                "VALUES (?, ?, ?, ?, ?)",
                (day, vehicle, grant, used, count_checksum(day, vehicle, grant, used)),
            )
        return SpendOutcome.FIRST_USE

    def spend(
        self,
        vehicle_id: str,
        token_id: bytes,
        keep_until: int,
        *,
        issued_at: int,
        at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        return self.spend_journalled(
            vehicle_id, token_id, keep_until, issued_at=issued_at, at=at, limits=limits,
            entry=None,
        )

    def spend_journalled(
        self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int, at: int,
        limits: tuple[DailyLimit, ...] = (), entry: bytes | None,
    ) -> SpendOutcome:
        """:meth:`spend`, and on ``FIRST_USE`` ``entry`` appended to :attr:`journal`
        in the same transaction: one commit (one fsync), so the entry is durable
        exactly when the spend is. An extension for the car's access log; the
        :class:`~trunkkey.ledger.base.Ledger` protocol does not have it."""
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        self._connection()  # a closed ledger raises, whatever the answer would be
        if issued_at < self._floor:
            return SpendOutcome.ISSUED_BEFORE_LEDGER
        request = SpendRequest(vehicle, token_id, keep_until, day, limits)

        def work(conn: sqlite3.Connection) -> SpendOutcome:
            outcome = self._decide(conn, request)
            if entry is not None and outcome is SpendOutcome.FIRST_USE:
                journal_append(conn, entry)
            return outcome

        return self._call(work, what="write", write=True)

    @property
    def journal(self) -> SqliteJournal:
        """The append-only journal kept in this ledger's file (created on first use)."""
        return SqliteJournal(self._call)

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle = check_key(vehicle_id, token_id)
        self._refuse_consume_after_loss()
        request = SpendRequest(vehicle, token_id, int(keep_until), 0, ())
        outcome = self._call(lambda conn: self._decide(conn, request), what="write", write=True)
        return outcome is SpendOutcome.FIRST_USE

    def _refuse_consume_after_loss(self) -> None:
        if self._floor:
            raise LedgerError(
                f"ledger {self._path} was started afresh after a loss and cannot check a "
                "token's issue time in consume(); use spend()"
            )

    def prune(self, now: int, *, limit: int | None = None) -> int:
        now = check_prune(now, limit)
        stale_day = now // DAY_SECONDS - 1

        def work(conn: sqlite3.Connection) -> int:
            if limit is None:
                cursor = conn.execute("DELETE FROM spent WHERE keep_until < ?", (now,))
            else:
                cursor = conn.execute(
                    "DELETE FROM spent WHERE (vehicle, token_id) IN (SELECT vehicle, token_id "
                    "FROM spent WHERE keep_until < ? ORDER BY keep_until LIMIT ?)",
                    (now, limit),
                )
            # A counter is read only for its own day and decisions are made at
            # "now", so days before yesterday can no longer be asked about.
            conn.execute("DELETE FROM day_count WHERE day < ?", (stale_day,))
            return cursor.rowcount

        return self._call(work, what="prune", write=True)

    def count(self) -> int:
        return self._call(
            lambda conn: int(conn.execute("SELECT count(*) FROM spent").fetchone()[0]),
            what="read", write=False,
        )

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


def _set_busy(conn: sqlite3.Connection, deadline: float) -> None:
    # SQLite's own wait for the file lock ends at the call's deadline too.
    remaining_ms = int((deadline - time.monotonic()) * 1000)
    if remaining_ms <= 0:
        raise LedgerError("ledger busy: the call's time ran out")
    conn.execute(f"PRAGMA busy_timeout = {remaining_ms}")


