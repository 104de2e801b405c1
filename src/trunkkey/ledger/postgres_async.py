"""The PostgreSQL replay ledger for asyncio: ``PostgresLedger``, awaited.

Everything that decides is shared with the synchronous ledger: the same
tables and statements (``postgres.statements``), the same transaction for a
spend with daily limits (the token's insert first, then each counter in a
fixed order, a full counter rolling everything back), the same libpq options
(``postgres.connect_options``: per-statement and lock timeouts, keepalives,
failover to the primary of a DSN of several hosts), and the same refusal of
server settings that lose acknowledged commits, judged on every new
connection by the one function that judges them (``_pg_settings.judge_session``:
``synchronous_commit``, ``fsync``, ``full_page_writes``, the synchronous
standby), which then pins ``synchronous_commit`` for the session.

Connections come from psycopg's async pool (``psycopg_pool.AsyncConnectionPool``,
the ``trunkkey[postgres]`` extra). Each call has one deadline, ``timeout_s``
from its start, covering the pool wait, connecting and the statements; at the
deadline the call raises at once and its connection is closed in the
background, never reused. Any error raises :class:`~trunkkey.errors.LedgerError`
(a read-only server with SQLSTATE 25006, a lost connection, a timeout, refused
settings), which :class:`~trunkkey.AsyncVerifier` turns into
``ledger_unavailable``.

Make one with ``await AsyncPostgresLedger.open(dsn)``; use it from one event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import LedgerError
from ._async_deadline import within
from ._pg_settings import PIN, QUERY, confirm_pinned, judge_session
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_prune, check_spend
from .postgres import (
    DEFAULT_PRUNE_BATCH,
    DEFAULT_TABLE,
    DEFAULT_TIMEOUT_S,
    RENDERED,
    check_options,
    connect_options,
    describe,
    failure,
    statements,
)

#: Connections of one ledger: enough for the concurrent spends of a busy loop.
DEFAULT_POOL_SIZE = 10
_T = TypeVar("_T")


def _clients() -> tuple[Any, Any]:
    try:
        # Imported here, not at the top: psycopg and its pool are an optional extra.
        import psycopg  # noqa: PLC0415
        import psycopg.conninfo  # noqa: PLC0415
        import psycopg_pool  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        raise LedgerError(
            "AsyncPostgresLedger needs psycopg 3 and psycopg-pool: "
            "pip install 'trunkkey[postgres]'"
        ) from None
    return psycopg, psycopg_pool


class AsyncPostgresLedger:
    """Spent tokens as rows of one table, daily counters in a second, from asyncio.

    The tables are :class:`~trunkkey.ledger.postgres.PostgresLedger`'s, so both
    kinds of ledger may share them: a token spent through either is spent for both.
    """

    # The statements (see ``postgres.statements``): composed, then text once rendered.
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
        pool_size: int = DEFAULT_POOL_SIZE,
        prune_batch: int = DEFAULT_PRUNE_BATCH,
        accept_torn_pages_on_power_loss: bool = False,
        require_synchronous_standby: bool = False,
    ) -> None:
        """Make the ledger without I/O; ``await AsyncPostgresLedger.open(...)``
        makes one and opens it (connect, judge the settings, ensure the schema)."""
        check_options(table, timeout_s, pool_size, prune_batch)
        self._pg, pool_module = _clients()
        self._table = table
        self._timeout_s = timeout_s
        self._prune_batch = prune_batch
        self._accept_torn_pages = bool(accept_torn_pages_on_power_loss)
        self._require_standby = bool(require_synchronous_standby)
        self._where = describe(dsn)
        self._synchronous_commit: str | None = None
        #: Why the latest new connection was refused, to name it instead of a pool timeout.
        self._refused: LedgerError | None = None
        self._opened = self._closed = False
        for name, statement in statements(self._pg.sql, table).items():
            setattr(self, name, statement)
        self._pool = pool_module.AsyncConnectionPool(
            dsn,
            kwargs=connect_options(dsn, timeout_s, self._pg.conninfo),
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=self._configure,
            timeout=timeout_s,
            # A lost connection is retried only briefly in the background; then
            # the next call that needs one starts a fresh attempt (as the sync
            # ledger opens a fresh connection per call after a failure), so a
            # promoted standby is found at once, not after a long backoff.
            reconnect_timeout=timeout_s,
            name=f"trunkkey-{table}",
        )

    @classmethod
    async def open(cls, dsn: str, **options: Any) -> AsyncPostgresLedger:
        """An open ledger whose server was accepted (else :class:`LedgerError`)."""
        ledger = cls(dsn, **options)
        try:
            await ledger._open_pool()
            await ledger._ensure_schema()
        except BaseException:
            await ledger.close()
            raise
        return ledger

    async def _open_pool(self) -> None:
        try:
            await within(self._timeout_s, self._pool.open(wait=True, timeout=self._timeout_s))
        except Exception as exc:  # noqa: BLE001 -- every failure must deny, none may escape raw
            raise self._refused or failure(self._where, "connect", exc) from None
        self._opened = True

    @property
    def synchronous_commit(self) -> str | None:
        """What the ledger's sessions run with: ``on``, or ``remote_apply`` if inherited."""
        return self._synchronous_commit

    async def _configure(self, conn: Any) -> None:
        """Every new connection: refuse settings that lose commits; pin synchronous_commit."""
        try:
            row = await (await conn.execute(QUERY)).fetchone()
            wanted = judge_session(
                row, self._where, accept_torn_pages=self._accept_torn_pages,
                require_synchronous_standby=self._require_standby,
            )
            pinned = (await (await conn.execute(PIN, (wanted,))).fetchone())[0]
            self._synchronous_commit = confirm_pinned(pinned, wanted, self._where)
        except LedgerError as exc:
            self._refused = exc
            raise
        self._refused = None

    async def _run(self, what: str, job: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``job(connection)`` on a pooled connection, all within one deadline."""
        if self._closed:
            raise LedgerError("ledger is closed")
        if not self._opened:
            raise LedgerError("ledger is not open: make it with await AsyncPostgresLedger.open()")

        async def attempt() -> _T:
            conn = await self._pool.getconn()
            try:
                return await job(conn)
            except BaseException:
                await conn.close()  # a failed connection is never reused
                raise
            finally:
                await self._pool.putconn(conn)

        try:
            return await within(self._timeout_s, attempt())
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- every failure must deny, none may escape raw
            if isinstance(exc, self._pg.OperationalError) and self._refused is not None:
                raise self._refused from None  # no connection: name the refused setting
            raise failure(self._where, what, exc) from None

    async def _ensure_schema(self) -> None:
        async def job(conn: Any) -> None:
            # Render the hot statements to text once, not on every call.
            for name in RENDERED:
                statement = getattr(self, name)
                if not isinstance(statement, str):
                    setattr(self, name, statement.as_string(conn))
            cursor = await conn.execute(self._exists, (self._table, self._table + "_daily"))
            if not (await cursor.fetchone())[0]:
                async with conn.transaction():
                    await conn.execute(self._create)

        await self._run("schema setup", job)

    async def spend(
        self,
        vehicle_id: str,
        token_id: bytes,
        keep_until: int,
        *,
        issued_at: int,
        at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        """One transaction, as :meth:`trunkkey.ledger.postgres.PostgresLedger.spend`."""
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        if not limits:
            return await self._spend_once(vehicle, token_id, keep_until)
        # A fixed order: two spends under the same grants never deadlock.
        ordered = sorted(limits, key=lambda item: item.grant)
        rollback = self._pg.Rollback

        async def job(conn: Any) -> SpendOutcome:
            outcome = SpendOutcome.LIMIT_REACHED
            async with conn.transaction():
                inserted = await conn.execute(self._insert, (vehicle, token_id, keep_until))
                if inserted.rowcount != 1:
                    return SpendOutcome.ALREADY_USED
                for item in ordered:
                    bumped = await conn.execute(self._bump, (vehicle, item.grant, day, item.limit))
                    if await bumped.fetchone() is None:
                        raise rollback()
                outcome = SpendOutcome.FIRST_USE
            return outcome  # noqa: RET504 -- Rollback may leave the block quietly

        return await self._run("spend", job)

    async def _spend_once(self, vehicle: bytes, token_id: bytes, keep_until: int) -> SpendOutcome:
        async def job(conn: Any) -> SpendOutcome:
            cursor = await conn.execute(self._insert, (vehicle, token_id, keep_until))
            return SpendOutcome.FIRST_USE if cursor.rowcount == 1 else SpendOutcome.ALREADY_USED

        return await self._run("consume", job)

    async def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle, _ = check_spend(vehicle_id, token_id, keep_until, 0, 0, ())
        return await self._spend_once(vehicle, token_id, keep_until) is SpendOutcome.FIRST_USE

    async def prune(self, now: int, *, limit: int | None = None) -> int:
        """As :meth:`trunkkey.ledger.postgres.PostgresLedger.prune`."""
        check_prune(now, limit)
        removed = await self._delete_in_batches("_delete_batch", now, limit)
        await self._delete_in_batches("_delete_days", now // DAY_SECONDS - 1, limit)
        return removed

    async def _delete_in_batches(self, name: str, before: int, limit: int | None) -> int:
        removed = 0
        while limit is None or removed < limit:
            batch = self._prune_batch if limit is None else min(self._prune_batch, limit - removed)

            async def job(conn: Any, batch: int = batch) -> int:
                return int((await conn.execute(getattr(self, name), (before, batch))).rowcount)

            done = await self._run("prune", job)
            removed += done
            if done < batch:
                break
        return removed

    async def count(self) -> int:
        async def job(conn: Any) -> int:
            return int((await (await conn.execute(self._count)).fetchone())[0])

        return await self._run("count", job)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close(timeout=self._timeout_s)

    async def __aenter__(self) -> AsyncPostgresLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncPostgresLedger({self._where!r}, table={self._table!r})"
