"""The Redis replay ledger for asyncio: ``RedisLedger``, awaited.

Everything that decides is shared with the synchronous ledger
(``_redis_rules``): the same Lua script (by text and SHA-1), the same keys,
the same daily counters inside the one atomic script, the same reading and
judging of the server's settings on every new connection (``maxmemory-policy``
under a ``maxmemory``, ``appendonly``; ``appendfsync`` reported), the same
``WAIT`` for ``min_replicas``. Only the talking differs: redis-py's asyncio
client (``redis.asyncio``), one connection per concurrent call from its pool.

Bounded and fail-closed like the synchronous ledger: each call has one
deadline, ``timeout_s`` from its start, covering the pool, connecting (and the
settings check), the script and the ``WAIT``. At the deadline the call raises
at once and its connection is dropped, never reused; any error (refused
connection, timeout, ``READONLY`` replica, settings refused) raises
:class:`~trunkkey.errors.LedgerError`, which :class:`~trunkkey.AsyncVerifier`
turns into ``ledger_unavailable``. Retries are off, as in the synchronous
ledger: a retried spend may find its own first write.

Make one with ``await AsyncRedisLedger.open(url)``, which reads and judges the
server's settings before the first spend; use it from one event loop (its
connections belong to the loop that opened them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import LedgerError
from ._redis_rules import (
    _DEFAULT_HZ,
    _SPEND_LUA,
    _SPEND_SHA,
    CONFIG_GET,
    RedisSettings,
    _decode,
    check_acked,
    check_options,
    failure,
    judge_settings,
    script_outcome,
    settings_from_config,
    settings_from_info,
    spend_script_call,
    unconfirmed,
    wait_budget_ms,
)
from .base import DailyLimit, SpendOutcome, check_prune
from .redis import DEFAULT_PREFIX, DEFAULT_TIMEOUT_S

_T = TypeVar("_T")


class AsyncRedisLedger:
    """Spent tokens and daily counters as self-expiring Redis keys, from asyncio.

    The keys and their lifetimes are :class:`~trunkkey.ledger.redis.RedisLedger`'s,
    so both kinds of ledger may share one server and one prefix: a token spent
    through either is spent for both.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: bytes = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        min_replicas: int = 0,
        accept_evicted_tokens_reopening: bool = False,
        accept_restart_reopening_tokens: bool = False,
    ) -> None:
        """Make the ledger without I/O; the settings are judged on the first
        connection. ``await AsyncRedisLedger.open(...)`` judges them at once."""
        check_options(prefix, timeout_s, min_replicas)
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._min_replicas = min_replicas
        self._accept_eviction = bool(accept_evicted_tokens_reopening)
        self._accept_restart = bool(accept_restart_reopening_tokens)
        self._settings: RedisSettings | None = None
        self._closed = False
        # Redact credentials: the repr and errors never show the URL's password.
        self._where = url.rsplit("@", maxsplit=1)[-1]
        try:
            # Imported here, not at the top: redis-py is an optional extra.
            import redis  # noqa: PLC0415
            import redis.asyncio  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ImportError:  # pragma: no cover - depends on the environment
            raise LedgerError(
                "AsyncRedisLedger needs redis-py: pip install 'trunkkey[redis]'"
            ) from None
        self._errors = redis.exceptions
        self._pool = redis.asyncio.ConnectionPool.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            # Every new connection: the usual handshake, then the settings check.
            redis_connect_func=self._on_connect,
        )
        self._redis = redis.asyncio.Redis(connection_pool=self._pool)

    @classmethod
    async def open(cls, url: str, **options: Any) -> AsyncRedisLedger:
        """A ledger whose server settings were read and accepted (else :class:`LedgerError`)."""
        ledger = cls(url, **options)
        try:
            await ledger._call(lambda conn, _deadline: _command(conn, "PING"))
        except LedgerError:
            await ledger.close()
            raise
        return ledger

    async def _on_connect(self, conn: Any) -> None:
        await conn.on_connect()
        response_error = self._errors.ResponseError
        try:
            reply = await _command(conn, *CONFIG_GET)
        except response_error:
            reply = None
        if reply is not None:
            settings = settings_from_config(reply)
        else:
            try:
                text = _decode(await _command(conn, "INFO")) or ""
            except response_error:
                text = ""
            settings = settings_from_info(text)
        try:
            judge_settings(
                settings, self._where, accept_eviction=self._accept_eviction,
                accept_restart=self._accept_restart,
            )
        except LedgerError:
            await conn.disconnect()  # redis-py disconnects only on its own errors
            raise
        self._settings = settings

    @property
    def server_settings(self) -> RedisSettings:
        """The settings read on the latest new connection (and judged acceptable)."""
        if self._settings is None:
            raise LedgerError("the server's settings have not been read yet")
        return self._settings

    @property
    def appendfsync(self) -> str | None:
        """As :attr:`trunkkey.ledger.redis.RedisLedger.appendfsync`."""
        return self.server_settings.appendfsync

    async def _call(self, run: Callable[[Any, float], Awaitable[_T]]) -> _T:
        """``run(connection, deadline)`` on a pooled connection, within one deadline."""
        if self._closed:
            raise LedgerError("ledger is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s

        async def attempt() -> _T:
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                return await run(conn, deadline)
            except BaseException:
                # Unknown state (a reply may still be on its way): never reuse it.
                await conn.disconnect(nowait=True)
                raise
            finally:
                await self._pool.release(conn)

        try:
            # Cancelling redis-py mid-call is quick (it drops the connection
            # without waiting), so the deadline can cancel in place; no task
            # of its own per call, as the PostgreSQL ledger needs.
            async with asyncio.timeout(self._timeout_s):
                return await attempt()
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- READONLY, timeout, reset: all deny
            raise failure(self._where, exc) from None

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
        """One script, as :meth:`trunkkey.ledger.redis.RedisLedger.spend`."""
        keys, args = spend_script_call(
            self._prefix, vehicle_id, token_id, keep_until, issued_at, at, limits
        )

        async def run(conn: Any, deadline: float) -> SpendOutcome:
            try:
                code = await _command(conn, "EVALSHA", _SPEND_SHA, len(keys), *keys, *args)
            except self._errors.NoScriptError:
                code = await _command(conn, "EVAL", _SPEND_LUA, len(keys), *keys, *args)
            outcome = script_outcome(code)
            if outcome is SpendOutcome.FIRST_USE and self._min_replicas:
                await self._wait_for_replicas(conn, deadline)
            return outcome

        return await self._call(run)

    async def _wait_for_replicas(self, conn: Any, deadline: float) -> None:
        hz = self._settings.hz if self._settings is not None else _DEFAULT_HZ
        left = deadline - asyncio.get_running_loop().time()
        left_ms = wait_budget_ms(left, hz, self._min_replicas, self._timeout_s)
        try:
            acked = int(await _command(conn, "WAIT", self._min_replicas, left_ms))
        except (self._errors.ConnectionError, self._errors.TimeoutError):
            raise LedgerError(
                f"{unconfirmed(self._min_replicas, self._timeout_s)}: WAIT cut at the deadline"
            ) from None
        check_acked(acked, self._min_replicas)

    async def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = await self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    async def prune(self, now: int, *, limit: int | None = None) -> int:
        """Nothing to do: Redis expires each token and counter by itself."""
        check_prune(now, limit)  # refused as every ledger refuses it
        if self._closed:
            raise LedgerError("ledger is closed")
        return 0

    async def count(self) -> int:
        """Spent-token keys under this prefix: a SCAN of the database, for monitoring only."""
        if self._closed:
            raise LedgerError("ledger is closed")
        try:
            found = 0
            async for _ in self._redis.scan_iter(match=self._prefix + b"t{*", count=1000):
                found += 1
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any client error is a ledger failure
            raise failure(self._where, exc) from None
        return found

    async def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When Redis will drop this entry (Unix ms), or ``None`` if it holds none."""
        key = spend_script_call(self._prefix, vehicle_id, token_id, 0, 0, 0, ())[0][0]
        when = int(await self._call(lambda conn, _deadline: _command(conn, "PEXPIRETIME", key)))
        return None if when < 0 else when

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.disconnect()

    async def __aenter__(self) -> AsyncRedisLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncRedisLedger({self._where!r}, prefix={self._prefix!r})"


async def _command(conn: Any, *args: object) -> Any:
    await conn.send_command(*args)
    return await conn.read_response()
