"""The ledger file itself: its schema, the checksum on every row, how a file is
created whole, and the full check a file passes before it is used.

A damaged ledger may have forgotten spent tokens, so nothing here repairs:
whatever fails a check is refused with :class:`~trunkkey.errors.LedgerCorrupted`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3

from .._sodium import blake2b
from ..errors import LedgerCorrupted, LedgerError

#: A ledger's path as callers give it. Paths stay plain strings on the way to a
#: decision: pathlib (and the urllib.parse and ipaddress it imports) is loaded
#: only to create or move a file, never to open one.
StrPath = str | os.PathLike[str]
#: Bytes a SQLite URI's path may hold as they are (urllib.parse.quote's, with "/").
_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")

#: ``PRAGMA user_version`` of the current schema (files without it are migrated).
SCHEMA_VERSION = 1
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

#: The optional journal (the car's access log, trunkkey.vehicle.accesslog): its
#: entries commit in the same transaction as the spend that opens the car.
#: ``journal_base`` holds how many entries were pruned and the caller's
#: summary of them (the Merkle frontier), so the file stays bounded.
JOURNAL_DDL = (
    """CREATE TABLE journal (
    seq      INTEGER PRIMARY KEY,
    entry    BLOB    NOT NULL,
    checksum BLOB    NOT NULL
)""",
    """CREATE TABLE journal_base (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    size     INTEGER NOT NULL,
    frontier BLOB    NOT NULL,
    checksum BLOB    NOT NULL
)""",
)

_Schema = list[tuple[str, str, str, str | None]]
_SCHEMA_QUERY = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"


# Compared object for object, SQL text included: an extra trigger or a changed
# column could silently drop writes without failing any integrity check. Each
# expected schema is what SQLite itself records for the DDL, built in memory
# when first compared, not at import: a car opening its current ledger needs
# only the current schema's, and building it costs a database per schema.
@functools.cache
def _schema_of(ddl: tuple[str, ...]) -> _Schema:
    conn = sqlite3.connect(":memory:")
    try:
        for statement in ddl:
            conn.execute(statement)
        return [tuple(row) for row in conn.execute(_SCHEMA_QUERY)]
    finally:
        conn.close()


def _current() -> _Schema:
    return _schema_of(_DDL)


def _legacy() -> _Schema:
    return _schema_of(_LEGACY_DDL)


def _journalled() -> _Schema:
    return _schema_of(_DDL + JOURNAL_DDL)



def _checksum(tag: bytes, *fields: bytes | int) -> bytes:
    parts = [tag]
    for field in fields:
        raw = field if type(field) is bytes else str(field).encode()
        parts += (len(raw).to_bytes(4, "big"), raw)
    return blake2b(b"".join(parts), CHECKSUM_BYTES, b"trunkkey-ledger")


def spent_checksum(vehicle: bytes, token_id: bytes, keep_until: int) -> bytes:
    return _checksum(b"spent", vehicle, token_id, keep_until)


def count_checksum(day: int, vehicle: bytes, grant: bytes, used: int) -> bytes:
    return _checksum(b"day_count", day, vehicle, grant, used)


def meta_checksum(version: int, floor: int) -> bytes:
    return _checksum(b"meta", version, floor)


def journal_checksum(seq: int, entry: bytes) -> bytes:
    return _checksum(b"journal", seq, entry)


def journal_base_checksum(size: int, frontier: bytes) -> bytes:
    return _checksum(b"journal_base", size, frontier)


def has_journal(conn: sqlite3.Connection) -> bool:
    return _schema(conn) == _journalled()


def _check_journal(conn: sqlite3.Connection, path: StrPath) -> None:
    """Every journal row's checksum, and no hole between the pruned base and the last."""
    base = conn.execute(
        "SELECT typeof(size) || typeof(frontier) || typeof(checksum), size, frontier, checksum "
        "FROM journal_base"
    ).fetchall()
    if len(base) != 1:
        raise corrupted(path, f"{len(base)} journal base rows, not 1")
    types, size, frontier, checksum = base[0]
    if not (types == "integerblobblob" and checksum == journal_base_checksum(size, frontier)):
        raise corrupted(path, "the journal base fails its checksum")
    expected = size
    for types, seq, entry, checksum in conn.execute(
        "SELECT typeof(entry) || typeof(checksum), seq, entry, checksum FROM journal "
        "ORDER BY seq"
    ):
        if seq != expected:
            raise corrupted(path, f"journal entry {expected} is missing")
        if not (types == "blobblob" and checksum == journal_checksum(seq, entry)):
            raise corrupted(path, f"journal entry {seq} fails its checksum")
        expected += 1


def is_int(value: object) -> bool:
    return type(value) is int


def sqlite_uri(path: StrPath, query: str) -> str:
    """``file:`` URI of ``path`` made absolute (as Path.absolute: not resolved), percent-encoded."""
    absolute = os.path.join(os.getcwd(), os.fspath(path))
    quoted = "".join(chr(b) if b in _URI_SAFE else f"%{b:02X}" for b in os.fsencode(absolute))
    return f"file:{quoted}?{query}"


def fsync_dir(directory: StrPath) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: StrPath) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def check_file(conn: sqlite3.Connection, path: StrPath) -> int:
    """Check the whole file; return its start floor. Migrates a pre-checksum file."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and _schema(conn) == _legacy():
        _migrate(conn, path)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION and _meta_version(conn) == version:
        raise LedgerError(
            f"ledger {path} has schema version {version}, written by a newer "
            f"trunkkey (this one reads {SCHEMA_VERSION})"
        )
    conn.execute("BEGIN")  # one snapshot for every check
    try:
        schema = _schema(conn)
        if schema != _current() and schema != _journalled():
            raise corrupted(path, "its tables are not a trunkkey ledger's")
        if version != SCHEMA_VERSION:
            raise corrupted(path, f"schema version {version} is not {SCHEMA_VERSION}")
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise corrupted(path, f"integrity_check: {problems[0]}")
        meta = conn.execute(
            "SELECT typeof(version) || typeof(floor) || typeof(checksum), version, floor, "
            "checksum FROM meta"
        ).fetchall()
        if len(meta) != 1:
            raise corrupted(path, f"{len(meta)} meta rows, not 1")
        types, meta_version, floor, checksum = meta[0]
        if not (
            types == "integerintegerblob" and checksum == meta_checksum(meta_version, floor)
        ):
            raise corrupted(path, "the meta row fails its checksum")
        if meta_version != version:
            raise corrupted(path, f"meta says version {meta_version}, the header {version}")
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
                raise corrupted(path, "a spent token's entry fails its checksum")
        for types, day, vehicle, grant, used, checksum in conn.execute(
            "SELECT typeof(day) || typeof(vehicle) || typeof(grant_id) || typeof(used) "
            "|| typeof(checksum), day, vehicle, grant_id, used, checksum FROM day_count"
        ):
            if not (
                types == "integerblobblobintegerblob"
                and checksum == count_checksum(day, vehicle, grant, used)
            ):
                raise corrupted(path, "a daily-limit counter fails its checksum")
        if schema != _current():  # so the journalled one, checked above
            _check_journal(conn, path)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    return int(floor)

def _meta_version(conn: sqlite3.Connection) -> object:
    """The version the meta row claims (every version keeps that row), if readable."""
    try:
        row = conn.execute("SELECT version FROM meta").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]

def _schema(conn: sqlite3.Connection) -> _Schema:
    return [tuple(row) for row in conn.execute(_SCHEMA_QUERY)]

def _migrate(conn: sqlite3.Connection, path: StrPath) -> None:
    """Rewrite a pre-checksum ledger in the current schema, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != 0 or _schema(conn) != _legacy():
            conn.execute("ROLLBACK")  # another process migrated it meanwhile
            return
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise corrupted(path, f"integrity_check: {problems[0]}")
        rows = conn.execute("SELECT vehicle, token_id, keep_until FROM spent").fetchall()
        for vehicle, token_id, keep_until in rows:
            if not (type(vehicle) is bytes and type(token_id) is bytes
                    and is_int(keep_until)):
                raise corrupted(path, "a spent token's entry has the wrong types")
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

def corrupted(path: StrPath, what: str) -> LedgerCorrupted:
    return LedgerCorrupted(
        f"ledger {path} is damaged ({what}) and is refused, so that no spent "
        f"token is forgotten; stop the verifiers and run 'trunkkey ledger recover "
        f"{path}' (see docs/operations.md, 'Recovering a damaged ledger')"
    )



def create(path: StrPath, *, floor: int) -> None:
    """Create a complete ledger file at ``path`` atomically, unless one appears first.

    Built beside it and linked into place whole, so a file at ``path`` is
    always a complete ledger: an empty or schema-less file there is damage,
    never a half-finished first install.
    """
    # os.urandom, as secrets.token_hex is, without loading secrets (and random,
    # base64 and OpenSSL's hmac with it) into every process that opens a ledger.
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.new-{os.urandom(6).hex()}")
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
        fsync_dir(head or ".")
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            remove_quietly(f"{tmp}{suffix}")
