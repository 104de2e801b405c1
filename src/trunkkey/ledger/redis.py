"""A replay ledger shared by a fleet of verifiers, on Redis.

One Lua script per spend, which Redis runs atomically: is the token's key
there (``ALREADY_USED``)? is any daily counter at its limit
(``LIMIT_REACHED``)? if not, ``SET`` the token's key ``PXAT`` its keep-until
and ``INCR`` every counter (each expiring after the day after its day). Of any
number of verifiers racing on one token or one limit, exactly the allowed
number win. Keys expire by themselves, so ``prune`` has nothing to do. All
keys of one vehicle share a hash tag, so a later Redis Cluster keeps them in
one slot, as one script needs.

Server settings that void single use are refused, when the ledger is made and
again on every new connection (a setting weakened later is refused at the
next reconnect), with an error naming the setting and the fix:

- an eviction policy other than ``noeviction`` under a ``maxmemory``: Redis
  would evict spent tokens (with ``volatile-*`` policies the ledger's keys
  first, being the only ones with an expiry), which then open again
  (``accept_evicted_tokens_reopening=True`` accepts it);
- ``appendonly no``: a restart or crash loses every spend since the last
  snapshot (``accept_restart_reopening_tokens=True`` accepts it).

``appendfsync`` is reported (:attr:`RedisLedger.appendfsync`): ``everysec``
can lose about the last second of spends if the *host* loses power,
``always`` none; docs/ledgers.md has the detail.

Bounded: every spend has one deadline, ``timeout_s`` from its start, covering
connecting (and the settings check), the script and the ``WAIT`` for
replicas; a call still blocked at its deadline has its socket shut down and
raises. Fail closed: a refused connection, a timeout, a ``READONLY`` replica or
any other error raises :class:`~trunkkey.errors.LedgerError`, and the
verifier denies with ``ledger_unavailable``. Retries are off on purpose: a
spend retried after a timeout may find its own first write and answer
"already used" for a token that was never opened. ``min_replicas`` makes a
spend count only once that many replicas hold it (``WAIT``); if they do not
answer in time the spend raises, which denies (the token stays spent).

``redis`` (redis-py, the ``trunkkey[redis]`` extra) is imported only when a
``RedisLedger`` is made, so ``import trunkkey`` never needs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import LedgerError
from ._deadline import WATCHDOG, remaining
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

#: One spend's whole budget: connect, script, WAIT. A car owner waits at most
#: this long for a "ledger unavailable" answer instead of forever.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_PREFIX = b"trunkkey:spent:"
_T = TypeVar("_T")


def _read_settings(conn: Any, response_error: type[Exception]) -> RedisSettings:
    """CONFIG GET on a raw connection; INFO when CONFIG is renamed or forbidden."""
    try:
        conn.send_command(*CONFIG_GET)
        reply = conn.read_response()
    except response_error:
        reply = None
    if reply is not None:
        return settings_from_config(reply)
    try:
        conn.send_command("INFO")
        text = _decode(conn.read_response()) or ""
    except response_error:
        text = ""
    return settings_from_info(text)


class RedisLedger:
    """Spent tokens and daily counters as self-expiring Redis keys.

    Keys (vehicle as UTF-8, at most 64 bytes, written in hex inside the hash
    tag, so no vehicle id can end the tag early or make two keys collide):

    - token: ``prefix + b"t{" + hex(vehicle) + b"}" + token_id``, kept until
      the end of second ``keep_until`` by the Redis server's clock — the same
      moment the other ledgers' ``prune`` may drop it — so the Redis host's
      clock must be synchronised with the verifiers';
    - counter: ``prefix + b"d{" + hex(vehicle) + b"}" + day (4 bytes) + grant``,
      kept until the end of the day after ``day``.

    Thread-safe (redis-py's connection pool); each process makes its own.
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
        check_options(prefix, timeout_s, min_replicas)
        self._prefix = prefix
        self._min_replicas = min_replicas
        self._timeout_s = timeout_s
        self._accept_eviction = bool(accept_evicted_tokens_reopening)
        self._accept_restart = bool(accept_restart_reopening_tokens)
        self._settings: RedisSettings | None = None
        self._calls = threading.local()
        self._closed = False
        self._close_lock = threading.Lock()
        # Redact credentials: the repr and errors never show the URL's password.
        self._where = url.rsplit("@", maxsplit=1)[-1]
        self._errors, self._pool, self._redis = self._client(url, timeout_s)
        # Read and judge the server's settings now: refused before the first spend.
        try:
            self._call(lambda conn, _deadline: self._command(conn, "PING"))
        except LedgerError:
            self.close()
            raise

    def _client(self, url: str, timeout_s: float) -> tuple[Any, Any, Any]:
        try:
            # Imported here, not at the top: redis-py is an optional extra.
            import redis  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ImportError:  # pragma: no cover - depends on the environment
            raise LedgerError(
                "RedisLedger needs redis-py: pip install 'trunkkey[redis]'"
            ) from None
        pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            # Every new connection: the usual handshake, then the settings check.
            redis_connect_func=self._on_connect,
        )
        return redis.exceptions, pool, redis.Redis(connection_pool=pool)

    def _on_connect(self, conn: Any) -> None:
        deadline = getattr(self._calls, "deadline", None)
        if deadline is not None:  # the handshake's round trips count against the call too
            WATCHDOG.arm(conn, deadline, lambda: conn._sock.fileno())  # noqa: PLW0108 -- read late
        try:
            conn.on_connect()
            settings = _read_settings(conn, self._errors.ResponseError)
            self._judge(settings)
        except BaseException as exc:
            WATCHDOG.disarm(conn)  # the call never gets this connection to disarm it
            if isinstance(exc, LedgerError):
                conn.disconnect()  # redis-py disconnects only on its own errors
            raise
        self._settings = settings

    def _judge(self, settings: RedisSettings) -> None:
        judge_settings(
            settings, self._where, accept_eviction=self._accept_eviction,
            accept_restart=self._accept_restart,
        )

    @property
    def server_settings(self) -> RedisSettings:
        """The settings read on the latest new connection (and judged acceptable)."""
        if self._settings is None:  # pragma: no cover - the constructor reads them
            raise LedgerError("the server's settings have not been read")
        return self._settings

    @property
    def appendfsync(self) -> str | None:
        """``always``, ``everysec`` or ``no``; ``None`` if CONFIG could not be read.

        ``everysec`` can lose about the last second of acknowledged spends if
        the Redis *host* loses power (or the kernel crashes); ``always`` loses
        none, at the cost of an fsync per write; ``no`` leaves it to the
        kernel (typically up to 30 seconds). See docs/ledgers.md.
        """
        return self.server_settings.appendfsync

    def _key(self, vehicle_id: str, token_id: bytes) -> bytes:
        return spend_script_call(self._prefix, vehicle_id, token_id, 0, 0, 0, ())[0][0]

    def _live(self) -> Any:
        if self._closed:
            raise LedgerError("ledger is closed")
        return self._redis

    def _call(self, run: Callable[[Any, float], _T]) -> _T:
        """``run(connection, deadline)`` on a pooled connection, within one deadline."""
        self._live()
        deadline = time.monotonic() + self._timeout_s
        self._calls.deadline = deadline  # for _on_connect, should this connect
        try:
            conn = self._pool.get_connection()
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any client error denies
            raise self._failure(exc) from None
        finally:
            self._calls.deadline = None
        try:
            # Read at the deadline: redis-py may have closed or replaced the socket.
            WATCHDOG.arm(conn, deadline, lambda: conn._sock.fileno())  # noqa: PLW0108
            try:
                return run(conn, deadline)
            finally:
                if WATCHDOG.disarm(conn):
                    conn.disconnect()  # its socket was shut down: never reuse it
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- READONLY, timeout, reset: all deny
            raise self._failure(exc) from None
        finally:
            self._pool.release(conn)

    @staticmethod
    def _command(conn: Any, *args: object) -> Any:
        conn.send_command(*args)
        return conn.read_response()

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
        """One script: the token, then every counter; see the module docstring.

        A Redis ledger is never started afresh after a loss (it refuses the
        settings that would lose spends, unless told to accept that), so
        ``issued_at`` is never refused.
        """
        keys, args = spend_script_call(
            self._prefix, vehicle_id, token_id, keep_until, issued_at, at, limits
        )

        def run(conn: Any, deadline: float) -> SpendOutcome:
            try:
                code = self._command(conn, "EVALSHA", _SPEND_SHA, len(keys), *keys, *args)
            except self._errors.NoScriptError:
                code = self._command(conn, "EVAL", _SPEND_LUA, len(keys), *keys, *args)
            outcome = script_outcome(code)
            if outcome is SpendOutcome.FIRST_USE and self._min_replicas:
                self._wait_for_replicas(conn, deadline)
            return outcome

        return self._call(run)

    def _wait_for_replicas(self, conn: Any, deadline: float) -> None:
        hz = self._settings.hz if self._settings is not None else _DEFAULT_HZ
        left_ms = wait_budget_ms(remaining(deadline), hz, self._min_replicas, self._timeout_s)
        try:
            acked = int(self._command(conn, "WAIT", self._min_replicas, left_ms))
        except (self._errors.ConnectionError, self._errors.TimeoutError):
            raise LedgerError(
                f"{unconfirmed(self._min_replicas, self._timeout_s)}: WAIT cut at the deadline"
            ) from None
        check_acked(acked, self._min_replicas)

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    def _failure(self, exc: Exception) -> LedgerError:
        return failure(self._where, exc)

    def prune(self, now: int, *, limit: int | None = None) -> int:
        """Nothing to do: Redis expires each token and counter by itself."""
        check_prune(now, limit)  # refused as every ledger refuses it
        self._live()
        return 0

    def count(self) -> int:
        """Spent-token keys under this prefix: a SCAN of the database, for monitoring only."""
        client = self._live()
        try:
            return sum(1 for _ in client.scan_iter(match=self._prefix + b"t{*", count=1000))
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any client error is a ledger failure
            raise self._failure(exc) from None

    def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When Redis will drop this entry (Unix ms), or ``None`` if it holds none."""
        key = self._key(vehicle_id, token_id)
        client = self._live()
        try:
            when = int(client.pexpiretime(key))
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any client error is a ledger failure
            raise self._failure(exc) from None
        return None if when < 0 else when

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._pool.disconnect()

    def __enter__(self) -> RedisLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisLedger({self._where!r}, prefix={self._prefix!r})"
