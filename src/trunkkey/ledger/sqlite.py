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

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from ..errors import InvalidRequest, LedgerCorrupted, LedgerError
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_key, check_spend

T = TypeVar("T")

#: ``PRAGMA user_version`` of the current schema (files without it are migrated).
SCHEMA_VERSION = 1
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
#: Checksum of one row: BLAKE2b-128 over its fields, length-prefixed.
CHECKSUM_BYTES = 16

_DDL = (
    """CREATE TABLE spent (
    vehicle    BLOB    NOT NULL,
    token_id   BLOB    NOT NULL,
    keep_until INTEGER NOT NULL,
    checksum   BLOB    NOT NULL,
    PRIMARY KEY (vehicle, token_id)
) WITHOUT ROWID""",
    "CREATE INDEX spent_keep_until ON spent (keep_until)",
    """CREATE TABLE day_count (
    day      INTEGER NOT NULL,
    vehicle  BLOB    NOT NULL,
    grant_id BLOB    NOT NULL,
    used     INTEGER NOT NULL,
    checksum BLOB    NOT NULL,
    PRIMARY KEY (day, vehicle, grant_id)
) WITHOUT ROWID""",
    """CREATE TABLE meta (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL,
    floor    INTEGER NOT NULL,
    checksum BLOB    NOT NULL
)""",
)
#: The schema of files written before version 1 (no checksums, no counters).
_LEGACY_DDL = (
    """CREATE TABLE IF NOT EXISTS spent (
    vehicle    BLOB    NOT NULL,
    token_id   BLOB    NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (vehicle, token_id)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS spent_keep_until ON spent (keep_until)",
)

_Schema = list[tuple[str, str, str, str | None]]
_SCHEMA_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"


def _schema_of(ddl: tuple[str, ...]) -> _Schema:
    conn = sqlite3.connect(":memory:")
    try:
        for statement in ddl:
            conn.execute(statement)
        return [tuple(row) for row in conn.execute(_SCHEMA_QUERY)]
    finally:
        conn.close()


# Compared object for object, SQL text included: an extra trigger or a changed
# column could silently drop writes without failing any integrity check.
_SCHEMA = _schema_of(_DDL)
_LEGACY_SCHEMA = _schema_of(_LEGACY_DDL)

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
#: Failures to open that say nothing about the file's content: busy, locked,
#: no memory, read-only, interrupted, I/O error, full, cannot open, permission,
#: authorisation.
_NOT_THE_FILES_FAULT = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 3, 23})


def _checksum(tag: bytes, *fields: bytes | int) -> bytes:
    digest = hashlib.blake2b(digest_size=CHECKSUM_BYTES, person=b"trunkkey-ledger")
    digest.update(tag)
    for field in fields:
        raw = field if type(field) is bytes else str(field).encode()
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return digest.digest()


def spent_checksum(vehicle: bytes, token_id: bytes, keep_until: int) -> bytes:
    return _checksum(b"spent", vehicle, token_id, keep_until)


def count_checksum(day: int, vehicle: bytes, grant: bytes, used: int) -> bytes:
    return _checksum(b"day_count", day, vehicle, grant, used)


def meta_checksum(version: int, floor: int) -> bytes:
    return _checksum(b"meta", version, floor)


@dataclass(frozen=True, slots=True)
class SpendRequest:
    """A validated spend: the vehicle in UTF-8 and the UTC day of the decision."""

    vehicle: bytes
    token_id: bytes
    keep_until: int
    day: int
    limits: tuple[DailyLimit, ...]


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_int(value: object) -> bool:
    return type(value) is int


_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little- / big-endian words
_WAL_VERSION = 3007000
_WAL_HEADER = 32
_FRAME_HEADER = 24


_MASK32 = 0xFFFFFFFF


def _wal_checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), from ``(s0, s1)``."""
    words = iter(struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data))
    for a, b in zip(words, words, strict=True):
        s0 = (s0 + a + s1) & _MASK32
        s1 = (s1 + b + s0) & _MASK32
    return s0, s1


def _wal_drops_commits(path: Path) -> bool:
    """Whether SQLite's recovery of ``path``'s WAL would drop a committed transaction.

    Recovery replays frames while their salts match the WAL header and their
    checksums chain, and stops silently at the first that does not: right
    for a write torn by a crash at the end, but a damaged frame in the middle
    makes it drop every later commit too. So: after the frames SQLite keeps,
    is there still a commit frame of this WAL's generation whose checksum is
    right given the frame before it? A WAL being reset by another process at
    this moment can look the same, so a finding is confirmed by a second look.
    """
    if not _wal_scan(path):
        return False
    time.sleep(0.01)  # let a WAL reset by another process finish, then look again
    return _wal_scan(path)


def _wal_scan(path: Path) -> bool:
    try:
        data = Path(f"{path}-wal").read_bytes()
    except FileNotFoundError:
        return False
    if len(data) < _WAL_HEADER + _FRAME_HEADER:
        return False
    magic, version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(
        ">8I", data[:_WAL_HEADER]
    )
    if (magic not in _WAL_MAGIC or version != _WAL_VERSION or not 512 <= page_size <= 65536
            or page_size & (page_size - 1)):
        # Without a readable header no frame can be told apart; a file that
        # holds whole frames was written by SQLite and is damaged.
        return len(data) >= _WAL_HEADER + _FRAME_HEADER + 512 and any(data)
    big_endian = magic == _WAL_MAGIC[1]
    size = _FRAME_HEADER + page_size
    frames = (len(data) - _WAL_HEADER) // size
    if frames == 0:
        return False
    if _wal_checksum(data[:24], big_endian, 0, 0) != (c1, c2):
        # SQLite ignores a WAL whose header fails its checksum, every frame of
        # it; the frames still name their generation's salts.
        kept = 0
        salt1, salt2 = struct.unpack_from(">2I", data, _WAL_HEADER + 8)
    else:
        recovered = _frames_sqlite_keeps(path, data)
        kept = (_frames_chained(data, big_endian, size, frames) if recovered is None
                else recovered)
    for index in range(kept, frames):
        offset = _WAL_HEADER + index * size
        _page, commit, f1, f2, k1, k2 = struct.unpack_from(">6I", data, offset)
        if not commit or (f1, f2) != (salt1, salt2):
            continue
        # Checked against the checksum stored in the frame before it, as if
        # the chain had held up to there.
        seed = (c1, c2) if index == 0 else struct.unpack_from(">2I", data, offset - size + 16)
        body = data[offset:offset + 8] + data[offset + _FRAME_HEADER:offset + size]
        if _wal_checksum(body, big_endian, *seed) == (k1, k2):
            return True
    return False


def _frames_chained(data: bytes, big_endian: bool, size: int, frames: int) -> int:
    """What SQLite's recovery keeps, worked out here: frames up to the last
    commit whose salts and chained checksums all hold (slower: Python)."""
    salts = struct.unpack_from(">2I", data, 16)
    seed = struct.unpack_from(">2I", data, 24)
    kept = 0
    for index in range(frames):
        offset = _WAL_HEADER + index * size
        _page, commit, f1, f2, k1, k2 = struct.unpack_from(">6I", data, offset)
        body = data[offset:offset + 8] + data[offset + _FRAME_HEADER:offset + size]
        if (f1, f2) != salts or _wal_checksum(body, big_endian, *seed) != (k1, k2):
            break
        seed = (k1, k2)
        if commit:
            kept = index + 1
    return kept


def _frames_sqlite_keeps(path: Path, wal: bytes) -> int | None:
    """How many frames of ``wal`` SQLite's own recovery accepts, found on a throwaway copy.

    The copy is recovered and checkpointed, never the ledger itself: a
    recovery of the real file followed by closing it would fold the kept
    frames in and delete the WAL, and with it the evidence of the rest.
    """
    # In RAM where there is a RAM file system: a crashed ledger opens that much sooner.
    ram = "/dev/shm"  # noqa: S108 -- a private directory is made inside it
    scratch = ram if os.path.isdir(ram) and os.access(ram, os.W_OK) else None
    try:
        with tempfile.TemporaryDirectory(prefix="trunkkey-wal-check-", dir=scratch) as tmp:
            copy = Path(tmp) / "ledger.db"
            shutil.copyfile(path, copy)
            Path(f"{copy}-wal").write_bytes(wal)
            conn = sqlite3.connect(copy, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = OFF")
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
            return max(0, int(row[1]))  # -1: the copy is not in WAL mode at all
    except OSError:
        return None  # no room for a copy: the caller works it out itself
    except (sqlite3.Error, ValueError, TypeError):
        # The database itself is unreadable (the checks after this refuse
        # it anyway): assume SQLite keeps nothing.
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
        self._path = Path(path)
        self._bound = busy_timeout_ms / 1000
        self._lock = threading.Lock()
        self._checkpoint_due = False
        self._moved_aside: tuple[Path, ...] = ()
        self._conn: sqlite3.Connection | None = None
        try:
            if not os.path.lexists(self._path):
                _create(self._path, floor=0)
            # Every ledger file is in WAL mode (header bytes 18 and 19 are 2).
            # Read as anything else SQLite would ignore the WAL, and switching
            # back to WAL would reset it, committed spends and all.
            with open(self._path, "rb") as file:
                header = file.read(20)
            if header[18:20] != b"\x02\x02":
                raise self._corrupted("its header does not say WAL mode")
            # Before SQLite reads the WAL: its recovery would silently stop at
            # a damaged frame, and closing would fold the rest away for good.
            if _wal_drops_commits(self._path):
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
            self._floor = self._verify(conn, deadline)
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
        if type(now) is not int or not (0 <= now < 2**40 - RESTART_MARGIN):
            raise InvalidRequest("now must be an int of Unix seconds")
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
            _fsync_dir(target.parent)
            _create(target, floor=now + RESTART_MARGIN)
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
        uri = "file:" + quote(str(self._path.absolute())) + "?mode=rw"
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

    def _verify(self, conn: sqlite3.Connection, deadline: float) -> int:
        """Check the whole file; return its start floor. Migrates a pre-checksum file."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0 and self._schema(conn) == _LEGACY_SCHEMA:
            self._migrate(conn)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION and self._meta_version(conn) == version:
            raise LedgerError(
                f"ledger {self._path} has schema version {version}, written by a newer "
                f"trunkkey (this one reads {SCHEMA_VERSION})"
            )
        conn.execute("BEGIN")  # one snapshot for every check
        try:
            if self._schema(conn) != _SCHEMA:
                raise self._corrupted("its tables are not a trunkkey ledger's")
            if version != SCHEMA_VERSION:
                raise self._corrupted(f"schema version {version} is not {SCHEMA_VERSION}")
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise self._corrupted(f"integrity_check: {problems[0]}")
            meta = conn.execute(
                "SELECT typeof(version) || typeof(floor) || typeof(checksum), version, floor, "
                "checksum FROM meta"
            ).fetchall()
            if len(meta) != 1:
                raise self._corrupted(f"{len(meta)} meta rows, not 1")
            types, meta_version, floor, checksum = meta[0]
            if not (
                types == "integerintegerblob" and checksum == meta_checksum(meta_version, floor)
            ):
                raise self._corrupted("the meta row fails its checksum")
            if meta_version != version:
                raise self._corrupted(f"meta says version {meta_version}, the header {version}")
            # SQLite's type of each value is checked too: a token id turned
            # into TEXT would hold the same bytes yet never match a lookup.
            for types, vehicle, token_id, keep_until, checksum in conn.execute(
                "SELECT typeof(vehicle) || typeof(token_id) || typeof(keep_until) "
                "|| typeof(checksum), vehicle, token_id, keep_until, checksum FROM spent"
            ):
                if not (
                    types == "blobblobintegerblob"
                    and checksum == spent_checksum(vehicle, token_id, keep_until)
                ):
                    raise self._corrupted("a spent token's entry fails its checksum")
            for types, day, vehicle, grant, used, checksum in conn.execute(
                "SELECT typeof(day) || typeof(vehicle) || typeof(grant_id) || typeof(used) "
                "|| typeof(checksum), day, vehicle, grant_id, used, checksum FROM day_count"
            ):
                if not (
                    types == "integerblobblobintegerblob"
                    and checksum == count_checksum(day, vehicle, grant, used)
                ):
                    raise self._corrupted("a daily-limit counter fails its checksum")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if self._wal_bytes() > 2 * JOURNAL_SIZE_LIMIT:
            # Grown past what checkpoints allow (a full disk, a long reader):
            # give the space back now if no one else is reading.
            with contextlib.suppress(sqlite3.Error, LedgerError):
                _set_busy(conn, deadline)
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(floor)

    @staticmethod
    def _meta_version(conn: sqlite3.Connection) -> object:
        """The version the meta row claims (every version keeps that row), if readable."""
        try:
            row = conn.execute("SELECT version FROM meta").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else row[0]

    @staticmethod
    def _schema(conn: sqlite3.Connection) -> _Schema:
        return [tuple(row) for row in conn.execute(_SCHEMA_QUERY)]

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Rewrite a pre-checksum ledger in the current schema, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version != 0 or self._schema(conn) != _LEGACY_SCHEMA:
                conn.execute("ROLLBACK")  # another process migrated it meanwhile
                return
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise self._corrupted(f"integrity_check: {problems[0]}")
            rows = conn.execute("SELECT vehicle, token_id, keep_until FROM spent").fetchall()
            for vehicle, token_id, keep_until in rows:
                if not (type(vehicle) is bytes and type(token_id) is bytes
                        and _is_int(keep_until)):
                    raise self._corrupted("a spent token's entry has the wrong types")
            conn.execute("DROP INDEX spent_keep_until")
            conn.execute("ALTER TABLE spent RENAME TO spent_v0")
            for statement in _DDL:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO spent (vehicle, token_id, keep_until, checksum) VALUES (?, ?, ?, ?)",
                ((v, t, k, spent_checksum(v, t, k)) for v, t, k in rows),
            )
            conn.execute("DROP TABLE spent_v0")
            # It was never lost: it keeps refusing nothing by issue time.
            conn.execute(
                "INSERT INTO meta (id, version, floor, checksum) VALUES (1, ?, 0, ?)",
                (SCHEMA_VERSION, meta_checksum(SCHEMA_VERSION, 0)),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _corrupted(self, what: str) -> LedgerCorrupted:
        return LedgerCorrupted(
            f"ledger {self._path} is damaged ({what}) and is refused, so that no spent "
            f"token is forgotten; stop the verifiers and run 'trunkkey ledger recover "
            f"{self._path}' (see docs/operations.md, 'Recovering a damaged ledger')"
        )

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
        return self._path

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
            if not (_is_int(row[0]) and row[1] == spent_checksum(vehicle, token_id, row[0])):
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
                if not (_is_int(used) and found[1] == count_checksum(day, vehicle, item.grant,
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
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        self._connection()  # a closed ledger raises, whatever the answer would be
        if issued_at < self._floor:
            return SpendOutcome.ISSUED_BEFORE_LEDGER
        request = SpendRequest(vehicle, token_id, keep_until, day, limits)
        return self._call(lambda conn: self._decide(conn, request), what="write", write=True)

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
        now = int(now)
        stale_day = now // DAY_SECONDS - 1

        def work(conn: sqlite3.Connection) -> int:
            if limit is None:
                cursor = conn.execute("DELETE FROM spent WHERE keep_until < ?", (now,))
            else:
                cursor = conn.execute(
                    "DELETE FROM spent WHERE (vehicle, token_id) IN (SELECT vehicle, token_id "
                    "FROM spent WHERE keep_until < ? ORDER BY keep_until LIMIT ?)",
                    (now, int(limit)),
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


def _create(path: Path, *, floor: int) -> None:
    """Create a complete ledger file at ``path`` atomically, unless one appears first.

    Built beside it and linked into place whole, so a file at ``path`` is
    always a complete ledger: an empty or schema-less file there is damage,
    never a half-finished first install.
    """
    tmp = path.with_name(f".{path.name}.new-{secrets.token_hex(6)}")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # stored in the file's header
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _DDL:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (id, version, floor, checksum) VALUES (1, ?, ?, ?)",
                (SCHEMA_VERSION, floor, meta_checksum(SCHEMA_VERSION, floor)),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()  # the last connection: the WAL is folded in and removed
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if a ledger appeared meanwhile: that one is used
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: rename, unless one appeared.
            if not os.path.lexists(path):
                os.rename(tmp, path)
        _fsync_dir(path.parent)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            _remove_quietly(Path(f"{tmp}{suffix}"))
