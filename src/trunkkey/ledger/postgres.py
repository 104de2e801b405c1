"""A replay ledger shared by a fleet of verifiers, on PostgreSQL.

Each consume is one ``INSERT ... ON CONFLICT DO NOTHING`` in its own
(autocommit) transaction: the primary key makes check-and-set one atomic step
across every connection, and the insert is acknowledged only after PostgreSQL
has committed it (``synchronous_commit`` as the server sets it; ``on`` by
default, which flushes the WAL before the commit returns).

Fail closed: a lost connection, a timeout, a read-only server (a hot standby,
or ``default_transaction_read_only``; SQLSTATE 25006) or any other error
raises :class:`~trunkkey.errors.LedgerError`, so the verifier denies with
``ledger_unavailable``. A connection that failed is thrown away; the next call
opens a fresh one.

``psycopg`` (psycopg 3, the ``trunkkey[postgres]`` extra) is imported only when
a ``PostgresLedger`` is made, so ``import trunkkey`` never needs it.
"""

from __future__ import annotations

import queue
import re
import socket
import threading
import time
from typing import Any

from ..errors import InvalidRequest, LedgerError
from .base import check_key

DEFAULT_TABLE = "trunkkey_spent"
#: Client-side connect timeout and server-side statement/lock timeouts.
DEFAULT_TIMEOUT_S = 2.0
#: Rows deleted per prune transaction: bounded, so pruning never holds locks long.
DEFAULT_PRUNE_BATCH = 5000
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class _Watchdog:
    """Severs connections whose call outlived its deadline.

    ``statement_timeout`` is enforced by the server, so it cannot help when the
    server or the network hangs with the request already acknowledged by TCP;
    without a client-side bound the verifier would wait forever instead of
    denying. One daemon thread checks the deadlines and shuts the socket down,
    which makes the blocked call fail at once (and the connection is dropped).
    """

    def __init__(self, period_s: float) -> None:
        self._period = period_s
        self._deadlines: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, conn: Any, seconds: float) -> None:
        with self._lock:
            self._deadlines[id(conn)] = (time.monotonic() + seconds, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="trunkkey-pg-watchdog", daemon=True
                )
                self._thread.start()

    def disarm(self, conn: Any) -> None:
        with self._lock:
            self._deadlines.pop(id(conn), None)

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            now = time.monotonic()
            with self._lock:
                late = [c for deadline, c in self._deadlines.values() if deadline <= now]
            for conn in late:
                self._sever(conn)

    @staticmethod
    def _sever(conn: Any) -> None:
        try:
            # shutdown() on a duplicate descriptor acts on the shared socket and
            # wakes the thread blocked on it; closing the duplicate leaves the
            # original descriptor for psycopg to close.
            with socket.socket(fileno=socket.dup(conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _psycopg() -> Any:
    try:
        # Imported here, not at the top: psycopg is an optional extra.
        import psycopg  # noqa: PLC0415
        import psycopg.conninfo  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        raise LedgerError(
            "PostgresLedger needs psycopg 3: pip install 'trunkkey[postgres]'"
        ) from None
    return psycopg


class PostgresLedger:
    """Spent tokens as rows of one PostgreSQL table.

    Thread-safe: up to ``pool_size`` connections, each used by one thread at a
    time. Each process makes its own ledger. The table (and its index on
    ``keep_until``) is created if absent.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        pool_size: int = 4,
        prune_batch: int = DEFAULT_PRUNE_BATCH,
    ) -> None:
        if type(table) is not str or not _TABLE_NAME.fullmatch(table):
            raise InvalidRequest("table must be a lower-case SQL identifier")
        if not (0 < timeout_s <= 60):
            raise InvalidRequest("timeout_s must be in (0, 60]")
        if type(pool_size) is not int or pool_size < 1:
            raise InvalidRequest("pool_size must be a positive int")
        if type(prune_batch) is not int or prune_batch < 1:
            raise InvalidRequest("prune_batch must be a positive int")
        self._pg = _psycopg()
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._prune_batch = prune_batch
        self._table = table
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._closed = False
        self._where = self._describe(dsn)
        self._watchdog = _Watchdog(period_s=min(0.05, timeout_s / 4))
        sql = self._pg.sql
        ident = sql.Identifier(table)
        self._insert = sql.SQL(
            "INSERT INTO {} (vehicle, token_id, keep_until) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING"
        ).format(ident)
        self._delete_batch = sql.SQL(
            "DELETE FROM {t} WHERE (vehicle, token_id) IN (SELECT vehicle, token_id FROM {t} "
            "WHERE keep_until < %s ORDER BY keep_until LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(t=ident)
        self._count = sql.SQL("SELECT count(*) FROM {}").format(ident)
        self._ensure_schema()

    @staticmethod
    def _describe(dsn: str) -> str:
        # Never echo a password: keep only what follows the last '@' of a URL,
        # or the host/port/dbname words of a key=value DSN.
        if "://" in dsn:
            return dsn.rsplit("@", maxsplit=1)[-1]
        words = [w for w in dsn.split() if w.split("=")[0] in {"host", "port", "dbname"}]
        return " ".join(words)

    def _connect(self) -> Any:
        ms = int(self._timeout_s * 1000)
        # The caller's own options (a DSN may carry some) come after ours, so
        # they are kept, and a setting given there wins.
        given = self._pg.conninfo.conninfo_to_dict(self._dsn).get("options") or ""
        return self._pg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=max(1, round(self._timeout_s)),
            # Server-side bounds on any one statement, plus a TCP bound on
            # unacknowledged data, so a dead network fails within the timeout.
            options=f"-c statement_timeout={ms} -c lock_timeout={ms} "
            f"-c idle_in_transaction_session_timeout={ms * 5} {given}".strip(),
            tcp_user_timeout=ms,
            keepalives=1,
            keepalives_idle=max(1, round(self._timeout_s)),
            keepalives_interval=1,
            keepalives_count=2,
        )

    def _run(self, what: str, job: Any) -> Any:
        """Run ``job(connection)`` on a pooled connection; wrap every failure."""
        if self._closed:
            raise LedgerError("ledger is closed")
        if not self._slots.acquire(timeout=self._timeout_s):
            raise LedgerError("no ledger connection free in time")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            # Server timeouts fire first; this client bound is for a hung peer.
            self._watchdog.arm(conn, self._timeout_s + 0.5)
            try:
                result = job(conn)
            finally:
                self._watchdog.disarm(conn)
        except Exception as exc:  # noqa: BLE001 -- every failure must deny, none may escape raw
            if conn is not None:
                conn.close()  # a failed connection is never reused
            raise LedgerError(
                f"postgres ledger at {self._where}: {what} failed: {type(exc).__name__}"
                f" ({getattr(exc, 'sqlstate', None) or 'no sqlstate'})"
            ) from None
        else:
            self._idle.put(conn)
            if self._is_closed():  # closed meanwhile: close() already drained the pool
                self._drain()
            return result
        finally:
            self._slots.release()

    def _ensure_schema(self) -> None:
        sql = self._pg.sql
        ident = sql.Identifier(self._table)
        create = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " vehicle bytea NOT NULL, token_id bytea NOT NULL, keep_until bigint NOT NULL,"
            " PRIMARY KEY (vehicle, token_id));"
            "CREATE INDEX IF NOT EXISTS {i} ON {t} (keep_until)"
        ).format(t=ident, i=sql.Identifier(self._table + "_keep_until"))

        def job(conn: Any) -> None:
            # Render the hot statements to text once, not on every call.
            self._insert = self._insert.as_string(conn)
            self._delete_batch = self._delete_batch.as_string(conn)
            self._count = self._count.as_string(conn)
            # Only create what is missing: a standby (read-only) whose schema
            # came from the primary then opens fine and refuses each consume.
            found = conn.execute("SELECT to_regclass(%s)", (self._table,)).fetchone()[0]
            if found is None:
                with conn.transaction():
                    conn.execute(create)

        self._run("schema setup", job)

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle = check_key(vehicle_id, token_id)
        if type(keep_until) is not int:
            raise InvalidRequest("keep_until must be an int (Unix seconds)")

        def job(conn: Any) -> bool:
            cursor = conn.execute(self._insert, (vehicle, token_id, keep_until))
            return bool(cursor.rowcount == 1)

        return bool(self._run("consume", job))

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Delete expired rows, ``prune_batch`` per transaction, at most ``limit``."""
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidRequest("limit must be a non-negative int or None")
        removed = 0
        while limit is None or removed < limit:
            batch = self._prune_batch if limit is None else min(self._prune_batch, limit - removed)

            def job(conn: Any, batch: int = batch) -> int:
                return int(conn.execute(self._delete_batch, (int(now), batch)).rowcount)

            done = int(self._run("prune", job))
            removed += done
            if done < batch:
                break
        return removed

    def count(self) -> int:
        return int(self._run("count", lambda conn: conn.execute(self._count).fetchone()[0]))

    def _is_closed(self) -> bool:
        return self._closed

    def _drain(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._watchdog.stop()
        self._drain()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresLedger({self._where!r}, table={self._table!r})"
