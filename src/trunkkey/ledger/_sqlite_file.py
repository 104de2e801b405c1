"""The ledger file itself: its schema, the checksum on every row, how a file is
created whole, and the full check a file passes before it is used.

A damaged ledger may have forgotten spent tokens, so nothing here repairs:
whatever fails a check is refused with :class:`~trunkkey.errors.LedgerCorrupted`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from pathlib import Path

from ..errors import LedgerCorrupted, LedgerError

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


def is_int(value: object) -> bool:
    return type(value) is int


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def check_file(conn: sqlite3.Connection, path: Path) -> int:
    """Check the whole file; return its start floor. Migrates a pre-checksum file."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and _schema(conn) == _LEGACY_SCHEMA:
        _migrate(conn, path)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION and _meta_version(conn) == version:
        raise LedgerError(
            f"ledger {path} has schema version {version}, written by a newer "
            f"trunkkey (this one reads {SCHEMA_VERSION})"
        )
    conn.execute("BEGIN")  # one snapshot for every check
    try:
        if _schema(conn) != _SCHEMA:
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

def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Rewrite a pre-checksum ledger in the current schema, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != 0 or _schema(conn) != _LEGACY_SCHEMA:
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

def corrupted(path: Path, what: str) -> LedgerCorrupted:
    return LedgerCorrupted(
        f"ledger {path} is damaged ({what}) and is refused, so that no spent "
        f"token is forgotten; stop the verifiers and run 'trunkkey ledger recover "
        f"{path}' (see docs/operations.md, 'Recovering a damaged ledger')"
    )



def create(path: Path, *, floor: int) -> None:
    """Create a complete ledger file at ``path`` atomically, unless one appears first.

    Built beside it and linked into place whole, so a file at ``path`` is
    always a complete ledger: an empty or schema-less file there is damage,
    never a half-finished first install.
    """
    # os.urandom, as secrets.token_hex is, without loading secrets (and random,
    # base64 and OpenSSL's hmac with it) into every process that opens a ledger.
    tmp = path.with_name(f".{path.name}.new-{os.urandom(6).hex()}")
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
        fsync_dir(path.parent)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            remove_quietly(Path(f"{tmp}{suffix}"))
