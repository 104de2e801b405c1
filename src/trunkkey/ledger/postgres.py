"""A replay ledger shared by a fleet of verifiers, on PostgreSQL.

A spend without limits is one ``INSERT ... ON CONFLICT DO NOTHING`` in its
own (autocommit) transaction: the primary key makes check-and-set one atomic
step across every connection. A spend with daily limits is one transaction:
the token's insert first (so "already used" beats "limit reached"), then each
counter's ``INSERT ... ON CONFLICT DO UPDATE SET n = n + 1 WHERE n < limit``,
in a fixed order (so two spends never wait on each other's counters in a
cycle); a full counter rolls everything back. Either way the answer is given
only after PostgreSQL committed.

Durability: every session of the ledger runs with ``synchronous_commit=on``
(or the stronger ``remote_apply`` if that is what it inherits), which flushes
the WAL before a commit returns. The ledger refuses a server, role, database
or DSN that would give its sessions anything weaker (``off``, ``local``,
``remote_write``), and a server with ``fsync=off`` or ``full_page_writes=off``,
with an error naming the setting and the fix; it checks again on every new
connection, so a setting weakened later is refused at the next reconnect
(the checks live in ``_pg_settings``).

Failover: the DSN may name several hosts (``postgresql://h1:5432,h2:5432/db``);
libpq tries them in order and, with ``target_session_attrs=read-write`` (the
ledger's default for a DSN of several hosts that says nothing about it),
connects only to the one that is the primary.
``require_synchronous_standby=True`` also refuses a primary without a
synchronous standby connected, so every acknowledged spend is on
two servers and a standby promoted after the primary's loss holds them all.
While no primary answers, every call raises (deny); the first call after a
standby's promotion connects to it.

Bounded: every call has one deadline, ``timeout_s`` from its start, covering
the wait for a pooled connection, connecting (and the settings check) and the
statements; a call still blocked at its deadline has its socket shut down
and raises. Fail closed: a lost connection, a timeout, a read-only server (a
hot standby, or ``default_transaction_read_only``; SQLSTATE 25006) or any
other error raises :class:`~trunkkey.errors.LedgerError`, so the verifier
denies with ``ledger_unavailable``. A connection that failed is thrown away;
the next call opens a fresh one.

``psycopg`` (psycopg 3, the ``trunkkey[postgres]`` extra) is imported only when
a ``PostgresLedger`` is made, so ``import trunkkey`` never needs it.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InvalidRequest, LedgerError
from ..observe import describe_error
from ._deadline import WATCHDOG, remaining
from ._pg_settings import check_session
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_prune, check_spend

DEFAULT_TABLE = "trunkkey_spent"
#: One call's whole budget: pool wait, connect, statements.
DEFAULT_TIMEOUT_S = 2.0
#: Rows deleted per prune transaction: bounded, so pruning never holds locks long.
DEFAULT_PRUNE_BATCH = 5000
#: At most 52 characters, so the names derived from it (``_keep_until``,
#: ``_daily_day``) stay within PostgreSQL's 63 and are never truncated into another's.
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,51}")
_T = TypeVar("_T")


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


def check_options(table: str, timeout_s: float, pool_size: int, prune_batch: int) -> None:
    """Validate a PostgreSQL ledger's options (shared with the async ledger)."""
    if type(table) is not str or not _TABLE_NAME.fullmatch(table):
        raise InvalidRequest("table must be a lower-case SQL identifier of at most 52 bytes")
    if not (0 < timeout_s <= 60):
        raise InvalidRequest("timeout_s must be in (0, 60]")
    if type(pool_size) is not int or pool_size < 1:
        raise InvalidRequest("pool_size must be a positive int")
    if type(prune_batch) is not int or prune_batch < 1:
        raise InvalidRequest("prune_batch must be a positive int")


def describe(dsn: str) -> str:
    """Where the ledger is, never with a password: what follows the last '@' of
    a URL, or the host/port/dbname words of a key=value DSN."""
    if "://" in dsn:
        return dsn.rsplit("@", maxsplit=1)[-1]
    words = [w for w in dsn.split() if w.split("=")[0] in {"host", "port", "dbname"}]
    return " ".join(words)


def failure(where: str, what: str, exc: BaseException) -> LedgerError:
    """The error a failed call raises: its SQLSTATE and the driver's message, sanitised."""
    return LedgerError(
        f"postgres ledger at {where}: {what} failed"
        f" ({getattr(exc, 'sqlstate', None) or 'no sqlstate'}): {describe_error(exc)}"
    )


#: The statements rendered to text once a connection can render them.
RENDERED = ("_insert", "_bump", "_delete_batch", "_delete_days", "_count")


def statements(sql: Any, table: str) -> dict[str, Any]:
    """Every statement of the ledger, by attribute name (shared with the async ledger)."""
    ident, daily = sql.Identifier(table), sql.Identifier(table + "_daily")
    return {
        "_insert": sql.SQL(
            "INSERT INTO {} (vehicle, token_id, keep_until) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING"
        ).format(ident),
        # RETURNING gives no row when the WHERE keeps the full counter as it is.
        "_bump": sql.SQL(
            "INSERT INTO {d} AS c (vehicle, grant_id, day, n) VALUES (%s, %s, %s, 1) "
            "ON CONFLICT (vehicle, grant_id, day) DO UPDATE SET n = c.n + 1 "
            "WHERE c.n < %s RETURNING c.n"
        ).format(d=daily),
        "_delete_batch": sql.SQL(
            "DELETE FROM {t} WHERE (vehicle, token_id) IN (SELECT vehicle, token_id FROM {t} "
            "WHERE keep_until < %s ORDER BY keep_until LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(t=ident),
        "_delete_days": sql.SQL(
            "DELETE FROM {d} WHERE (vehicle, grant_id, day) IN (SELECT vehicle, grant_id, day "
            "FROM {d} WHERE day < %s LIMIT %s FOR UPDATE SKIP LOCKED)"
        ).format(d=daily),
        "_count": sql.SQL("SELECT count(*) FROM {}").format(ident),
        # Only what is missing is created: a standby (read-only) whose schema
        # came from the primary then opens fine and refuses each spend.
        "_exists": "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
        "_create": sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " vehicle bytea NOT NULL, token_id bytea NOT NULL, keep_until bigint NOT NULL,"
            " PRIMARY KEY (vehicle, token_id));"
            "CREATE INDEX IF NOT EXISTS {i} ON {t} (keep_until);"
            "CREATE TABLE IF NOT EXISTS {d} ("
            " vehicle bytea NOT NULL, grant_id bytea NOT NULL, day integer NOT NULL,"
            " n integer NOT NULL, PRIMARY KEY (vehicle, grant_id, day));"
            "CREATE INDEX IF NOT EXISTS {di} ON {d} (day)"
        ).format(
            t=ident, i=sql.Identifier(table + "_keep_until"),
            d=daily, di=sql.Identifier(table + "_daily_day"),
        ),
    }


def connect_options(dsn: str, timeout_s: float, conninfo: Any) -> dict[str, Any]:
    """libpq options of every ledger connection (shared with the async ledger)."""
    ms = int(timeout_s * 1000)
    # The caller's own options (a DSN may carry some) come after ours, so
    # they are kept; what they set for synchronous_commit is checked on connect.
    params = conninfo.conninfo_to_dict(dsn)
    given = params.get("options") or ""
    # Several hosts: libpq's own failover, to whichever one is the primary.
    # One host is taken as it is: a standby then opens and refuses each spend.
    hosts = str(params.get("host") or params.get("hostaddr") or "").count(",") + 1
    failover = {} if hosts == 1 or "target_session_attrs" in params else {
        "target_session_attrs": "read-write"
    }
    return {
        **failover,
        "autocommit": True,
        # Bounds the connecting thread; the caller stops waiting at its deadline.
        "connect_timeout": max(2, math.ceil(timeout_s)),
        # Server-side bounds, a little inside the call's deadline, so a
        # statement that waits on a lock usually ends cleanly (keeping its
        # connection) before the deadline has to cut the socket.
        "options": f"-c statement_timeout={ms * 9 // 10} -c lock_timeout={ms * 9 // 10} "
        f"-c idle_in_transaction_session_timeout={ms * 5} {given}".strip(),
        "tcp_user_timeout": ms,
        "keepalives": 1,
        "keepalives_idle": max(1, round(timeout_s)),
        "keepalives_interval": 1,
        "keepalives_count": 2,
    }


class _Connecting:
    """One connection attempt in a thread of its own, so the caller can stop waiting.

    libpq's ``connect_timeout`` is whole seconds (at least 2), too coarse for a
    call's remaining budget. A caller that gives up abandons the attempt; a
    connection that arrives afterwards is closed, and the attempt itself ends
    within ``connect_timeout``.
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._conn: Any = None
        self._error: BaseException | None = None
        self._abandoned = False
        threading.Thread(
            target=self._attempt, args=(connect,), name="trunkkey-pg-connect", daemon=True
        ).start()

    def _attempt(self, connect: Callable[[], Any]) -> None:
        try:
            conn = connect()
        except BaseException as exc:  # noqa: BLE001 -- handed to the waiting caller
            with self._lock:
                self._error = exc
        else:
            with self._lock:
                late = self._abandoned
                if not late:
                    self._conn = conn
            if late:
                conn.close()
        finally:
            self._done.set()

    def result(self, timeout: float) -> Any:
        self._done.wait(timeout)
        with self._lock:
            if self._conn is None and self._error is None:
                self._abandoned = True
                raise TimeoutError("connecting took longer than the call's deadline")
        if self._error is not None:
            raise self._error
        return self._conn


class PostgresLedger:
    """Spent tokens as rows of one PostgreSQL table, daily counters in a second one.

    Thread-safe: up to ``pool_size`` connections, each used by one thread at a
    time. Each process makes its own ledger. The tables ``table`` and
    ``table + "_daily"`` (and their indexes) are created if absent.

    ``require_synchronous_standby=True`` refuses (at start and on every
    reconnect) a primary that does not report a synchronous standby:
    ``synchronous_standby_names`` set and a ``pg_stat_replication`` row with
    ``sync_state`` ``sync`` or ``quorum`` (the role needs ``pg_monitor``).

    ``accept_torn_pages_on_power_loss=True`` accepts a server with
    ``full_page_writes=off``: only sound where the storage cannot tear a page
    (e.g. ZFS); elsewhere a power cut can corrupt pages the WAL cannot repair,
    spent tokens included.
    """

    # The statements (see ``statements``): composed, then text once rendered.
    _insert: Any
    _bump: Any
    _delete_batch: Any
    _delete_days: Any
    _count: Any
    _exists: Any
    _create: Any

    def __init__(
        self,
        dsn: str,
        *,
        table: str = DEFAULT_TABLE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        pool_size: int = 4,
        prune_batch: int = DEFAULT_PRUNE_BATCH,
        accept_torn_pages_on_power_loss: bool = False,
        require_synchronous_standby: bool = False,
    ) -> None:
        check_options(table, timeout_s, pool_size, prune_batch)
        self._pg = _psycopg()
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._prune_batch = prune_batch
        self._table = table
        self._accept_torn_pages = bool(accept_torn_pages_on_power_loss)
        self._require_standby = bool(require_synchronous_standby)
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._closed = False
        self._synchronous_commit: str | None = None
        self._where = self._describe(dsn)
        for name, statement in statements(self._pg.sql, table).items():
            setattr(self, name, statement)
        self._ensure_schema()

    @staticmethod
    def _describe(dsn: str) -> str:
        return describe(dsn)

    @property
    def synchronous_commit(self) -> str | None:
        """What the ledger's sessions run with: ``on``, or ``remote_apply`` if inherited."""
        return self._synchronous_commit

    def _open(self) -> Any:
        return self._pg.connect(
            self._dsn, **connect_options(self._dsn, self._timeout_s, self._pg.conninfo)
        )

    def _prepare(self, conn: Any) -> None:
        """Refuse settings that lose acknowledged commits; pin synchronous_commit."""
        self._synchronous_commit = check_session(
            conn, self._where, accept_torn_pages=self._accept_torn_pages,
            require_synchronous_standby=self._require_standby,
        )

    def _run(self, what: str, job: Callable[[Any], _T]) -> _T:
        """Run ``job(connection)`` on a pooled connection, all within one deadline."""
        deadline = time.monotonic() + self._timeout_s
        if self._closed:
            raise LedgerError("ledger is closed")
        if not self._slots.acquire(timeout=remaining(deadline)):
            raise LedgerError(
                f"postgres ledger at {self._where}: {what} failed: no connection free "
                f"within {self._timeout_s} s"
            )
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
                fresh = False
            except queue.Empty:
                conn = _Connecting(self._open).result(remaining(deadline))
                fresh = True
            WATCHDOG.arm(conn, deadline, conn.fileno)
            try:
                if fresh:
                    self._prepare(conn)
                result = job(conn)
            finally:
                cut = WATCHDOG.disarm(conn)
            if cut:  # the answer came, but the socket is gone: do not pool it
                conn.close()
                conn = None
        except LedgerError:
            if conn is not None:
                conn.close()
            raise
        except Exception as exc:  # noqa: BLE001 -- every failure must deny, none may escape raw
            if conn is not None:
                conn.close()  # a failed connection is never reused
            raise failure(self._where, what, exc) from None
        else:
            if conn is not None:
                self._idle.put(conn)
                if self._is_closed():  # closed meanwhile: close() already drained the pool
                    self._drain()
            return result
        finally:
            self._slots.release()

    def _ensure_schema(self) -> None:
        def job(conn: Any) -> None:
            # Render the hot statements to text once, not on every call.
            for name in RENDERED:
                statement = getattr(self, name)
                if not isinstance(statement, str):
                    setattr(self, name, statement.as_string(conn))
            found = conn.execute(self._exists, (self._table, self._table + "_daily")).fetchone()[0]
            if not found:
                with conn.transaction():
                    conn.execute(self._create)

        self._run("schema setup", job)

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
        """One transaction: the token, then each limit's counter; see the module docstring.

        A server ledger is never started afresh after a loss (it refuses the
        settings that would lose spends), so ``issued_at`` is never refused.
        """
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        if not limits:
            return self._spend_once(vehicle, token_id, keep_until)
        # A fixed order: two spends under the same grants lock their counters
        # in the same order, so they never deadlock.
        ordered = sorted(limits, key=lambda item: item.grant)
        rollback = self._pg.Rollback

        def job(conn: Any) -> SpendOutcome:
            # Rollback leaves the block quietly, the token's row undone with it
            # (hence the variable: a type checker cannot see the block may end so).
            outcome = SpendOutcome.LIMIT_REACHED
            with conn.transaction():
                if conn.execute(self._insert, (vehicle, token_id, keep_until)).rowcount != 1:
                    return SpendOutcome.ALREADY_USED
                for item in ordered:
                    bumped = conn.execute(self._bump, (vehicle, item.grant, day, item.limit))
                    if bumped.fetchone() is None:
                        raise rollback()
                outcome = SpendOutcome.FIRST_USE
            return outcome  # noqa: RET504

        return self._run("spend", job)

    def _spend_once(self, vehicle: bytes, token_id: bytes, keep_until: int) -> SpendOutcome:
        def job(conn: Any) -> SpendOutcome:
            inserted = conn.execute(self._insert, (vehicle, token_id, keep_until)).rowcount == 1
            return SpendOutcome.FIRST_USE if inserted else SpendOutcome.ALREADY_USED

        return self._run("consume", job)

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle, _ = check_spend(vehicle_id, token_id, keep_until, 0, 0, ())
        return self._spend_once(vehicle, token_id, keep_until) is SpendOutcome.FIRST_USE

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Delete expired rows, ``prune_batch`` per transaction, at most ``limit``.

        Then the daily counters of days before yesterday (UTC), as many again at
        most; they are not in the returned count, which is of spent tokens.
        """
        check_prune(now, limit)
        removed = self._delete_in_batches(self._delete_batch, now, limit)
        self._delete_in_batches(self._delete_days, now // DAY_SECONDS - 1, limit)
        return removed

    def _delete_in_batches(self, statement: Any, before: int, limit: int | None) -> int:
        removed = 0
        while limit is None or removed < limit:
            batch = self._prune_batch if limit is None else min(self._prune_batch, limit - removed)

            def job(conn: Any, batch: int = batch) -> int:
                return int(conn.execute(statement, (before, batch)).rowcount)

            done = self._run("prune", job)
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
        self._drain()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresLedger({self._where!r}, table={self._table!r})"

