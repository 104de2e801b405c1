"""The service's own records in PostgreSQL: consents, revocation lists, spend records.

The replay ledger is the library's :class:`~trunkkey.ledger.postgres.PostgresLedger`
(its own tables); nothing here decides whether a token is spent. The spend
records only let a retried request with the same idempotency key get its
original answer back (see ``docs/service.md``, "A lost reply").
"""

from __future__ import annotations

import enum
import queue
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

_T = TypeVar("_T")
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")


class ClaimKind(enum.Enum):
    #: No record yet: this request now holds the token's spend record (pending).
    NEW = "new"
    #: This key's own earlier attempt was interrupted before its answer was recorded.
    RESUME = "resume"
    #: This key's earlier attempt was allowed: here is its answer.
    REPLAY = "replay"
    #: The key was used before for a different request.
    KEY_REUSED = "key_reused"
    #: Another key holds the token's record, still pending.
    IN_PROGRESS = "in_progress"
    #: Another key spent this token: verify without a record (it will be denied).
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Claim:
    kind: ClaimKind
    answer: str | None = None


class ServiceStore:
    """Three small tables named ``<prefix>_consents``, ``_revocations`` and ``_spends``."""

    def __init__(self, dsn: str, *, prefix: str = "tk_service", pool_size: int = 4) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ValueError("prefix must be a lower-case SQL identifier of at most 40 bytes")
        self._dsn = dsn
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue(pool_size)
        self.consents = sql.Identifier(prefix + "_consents")
        self.revocations = sql.Identifier(prefix + "_revocations")
        self.spends = sql.Identifier(prefix + "_spends")
        self._create()

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown after a failure: never reuse it
            raise
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _run(self, job: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        with self._conn() as conn:
            return job(conn)

    def _create(self) -> None:
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (digest bytea PRIMARY KEY, vehicle_id text NOT "
                "NULL, retailer text NOT NULL, grant_bytes bytea NOT NULL, not_before bigint "
                "NOT NULL, expires bigint NOT NULL, created_at bigint NOT NULL)"
            ).format(self.consents),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version bigint PRIMARY KEY, signed bytea NOT "
                "NULL)"
            ).format(self.revocations),
            # One record per token (its SHA-256), one token per idempotency key.
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (token_digest bytea PRIMARY KEY, idem_key text "
                "NOT NULL UNIQUE, fingerprint bytea NOT NULL, answer text, created_at bigint "
                "NOT NULL)"
            ).format(self.spends),
        ]

        def job(conn: psycopg.Connection[Any]) -> None:
            for statement in statements:
                conn.execute(statement)

        self._run(job)

    def drop(self) -> None:
        """Remove the three tables (tests)."""

        def job(conn: psycopg.Connection[Any]) -> None:
            for table in (self.consents, self.revocations, self.spends):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))

        self._run(job)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- consents -------------------------------------------------------------
    def record_consent(
        self, *, digest: bytes, vehicle_id: str, retailer: str, grant: bytes,
        not_before: int, expires: int, at: int,
    ) -> None:
        statement = sql.SQL(
            "INSERT INTO {} (digest, vehicle_id, retailer, grant_bytes, not_before, expires, "
            "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        ).format(self.consents)
        values = (digest, vehicle_id, retailer, grant, not_before, expires, at)
        self._run(lambda c: c.execute(statement, values))

    def consent_grants(
        self, vehicle_id: str, retailer: str, *, not_before: int, expires: int
    ) -> list[tuple[bytes, bytes]]:
        """(digest, grant) of every consent for the pair whose window holds the given
        one, newest first."""
        statement = sql.SQL(
            "SELECT digest, grant_bytes FROM {} WHERE vehicle_id = %s AND retailer = %s "
            "AND not_before <= %s AND expires >= %s ORDER BY created_at DESC, digest"
        ).format(self.consents)
        values = (vehicle_id, retailer, not_before, expires)
        rows = self._run(lambda c: c.execute(statement, values).fetchall())
        return [(bytes(row[0]), bytes(row[1])) for row in rows]

    def has_consent(self, digest: bytes) -> bool:
        statement = sql.SQL("SELECT 1 FROM {} WHERE digest = %s").format(self.consents)
        return self._run(lambda c: c.execute(statement, (digest,)).fetchone()) is not None

    # -- revocation lists -----------------------------------------------------
    def latest_revocations(self) -> bytes | None:
        statement = sql.SQL(
            "SELECT signed FROM {} ORDER BY version DESC LIMIT 1"
        ).format(self.revocations)
        row = self._run(lambda c: c.execute(statement).fetchone())
        return None if row is None else bytes(row[0])

    def revocations_newer_than(self, version: int) -> bytes | None:
        """The newest list if it is newer than ``version``, else ``None``."""
        statement = sql.SQL(
            "SELECT signed FROM {} WHERE version > %s ORDER BY version DESC LIMIT 1"
        ).format(self.revocations)
        row = self._run(lambda c: c.execute(statement, (version,)).fetchone())
        return None if row is None else bytes(row[0])

    def save_revocations(self, version: int, signed: bytes) -> bool:
        """Store list ``version``; ``False`` if another request stored that version first."""
        statement = sql.SQL(
            "INSERT INTO {} (version, signed) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ).format(self.revocations)
        return self._run(lambda c: c.execute(statement, (version, signed)).rowcount == 1)

    # -- spend records (idempotency) ------------------------------------------
    def claim(
        self, *, key: str, token_digest: bytes, fingerprint: bytes, now: int, stale_after: int
    ) -> Claim:
        """Take the token's spend record for ``key``, or say who holds it."""
        insert = sql.SQL(
            "INSERT INTO {} (token_digest, idem_key, fingerprint, answer, created_at) "
            "VALUES (%s, %s, %s, NULL, %s) ON CONFLICT DO NOTHING"
        ).format(self.spends)
        select = sql.SQL(
            "SELECT idem_key, fingerprint, answer, created_at FROM {} WHERE token_digest = %s "
            "OR idem_key = %s"
        ).format(self.spends)
        # A pending record whose holder vanished (a crash between the record and
        # its answer) may be taken over, so one dead request cannot lock a token out.
        take_over = sql.SQL(
            "UPDATE {} SET idem_key = %s, fingerprint = %s, created_at = %s WHERE "
            "token_digest = %s AND idem_key = %s AND answer IS NULL AND created_at <= %s"
        ).format(self.spends)

        def job(conn: psycopg.Connection[Any]) -> Claim:
            if conn.execute(insert, (token_digest, key, fingerprint, now)).rowcount == 1:
                return Claim(ClaimKind.NEW)
            rows = conn.execute(select, (token_digest, key)).fetchall()
            mine = [r for r in rows if r[0] == key]
            if mine:
                held_key, held_fingerprint, answer, _ = mine[0]
                if bytes(held_fingerprint) != fingerprint:
                    return Claim(ClaimKind.KEY_REUSED)
                if answer is not None:
                    return Claim(ClaimKind.REPLAY, answer)
                return Claim(ClaimKind.RESUME)
            if not rows:  # the record went away between the two statements
                return Claim(ClaimKind.IN_PROGRESS)
            held_key, _, answer, _ = rows[0]
            if answer is not None:
                return Claim(ClaimKind.OTHER)
            taken = conn.execute(
                take_over, (key, fingerprint, now, token_digest, held_key, now - stale_after)
            ).rowcount
            return Claim(ClaimKind.NEW if taken == 1 else ClaimKind.IN_PROGRESS)

        return self._run(job)

    def settle(self, *, key: str, token_digest: bytes, answer: str) -> None:
        """Record the allowed answer of the request holding the record."""
        statement = sql.SQL(
            "UPDATE {} SET answer = %s WHERE token_digest = %s AND idem_key = %s"
        ).format(self.spends)
        self._run(lambda c: c.execute(statement, (answer, token_digest, key)))

    def release(self, *, key: str, token_digest: bytes) -> None:
        """Give up a pending record: the token was not spent by this request."""
        statement = sql.SQL(
            "DELETE FROM {} WHERE token_digest = %s AND idem_key = %s AND answer IS NULL"
        ).format(self.spends)
        self._run(lambda c: c.execute(statement, (token_digest, key)))

    def prune_spends(self, before: int) -> int:
        """Delete the records taken before ``before``; how many went."""
        statement = sql.SQL("DELETE FROM {} WHERE created_at < %s").format(self.spends)
        return self._run(lambda c: c.execute(statement, (before,)).rowcount)
