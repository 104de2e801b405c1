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

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InvalidRequest, LedgerError
from ..observe import describe_error
from ._deadline import WATCHDOG, remaining
from .base import DAY_SECONDS, DailyLimit, SpendOutcome, check_spend

#: One spend's whole budget: connect, script, WAIT. A car owner waits at most
#: this long for a "ledger unavailable" answer instead of forever.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_PREFIX = b"trunkkey:spent:"
#: What WAIT leaves of the deadline: Redis ends a blocked WAIT only at its next
#: cron tick (every 1/hz s, 100 ms by default), plus time for the answer to travel.
_WAIT_MARGIN_S = 0.01
_DEFAULT_HZ = 10
_T = TypeVar("_T")

#: KEYS[1] the token, KEYS[2..] the counters; ARGV[1] the token's PXAT,
#: ARGV[2] the counters' PXAT, ARGV[3..] each counter's limit. Nothing is
#: written unless the answer is 1. -1 / -2: by the server's clock the token's
#: keep-until / the counters' day is already over, so Redis would drop what it
#: writes at once: refused rather than answer "first use" with no record.
_SPEND_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n >= tonumber(ARGV[i + 1]) then return 2 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[1]) <= now then return -1 end
if #KEYS > 1 and tonumber(ARGV[2]) <= now then return -2 end
redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
for i = 2, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2])
end
return 1
"""
_SPEND_SHA = hashlib.sha1(_SPEND_LUA.encode(), usedforsecurity=False).hexdigest()
_OUTCOMES = {
    1: SpendOutcome.FIRST_USE,
    0: SpendOutcome.ALREADY_USED,
    2: SpendOutcome.LIMIT_REACHED,
}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """The server settings the ledger's safety rests on, as last read (``None``: unknown)."""

    maxmemory_policy: str | None
    maxmemory: int | None
    appendonly: bool | None
    #: Unknown when read from INFO (CONFIG renamed or forbidden).
    appendfsync: str | None
    #: ``"CONFIG GET"`` or ``"INFO"``.
    read_from: str
    #: Server cron frequency: a blocked WAIT may end up to 1/hz s late.
    hz: int = _DEFAULT_HZ


def _decode(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _as_int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _read_settings(conn: Any, response_error: type[Exception]) -> RedisSettings:
    """CONFIG GET on a raw connection; INFO when CONFIG is renamed or forbidden."""
    try:
        conn.send_command(
            "CONFIG", "GET", "maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "hz"
        )
        reply = conn.read_response()
    except response_error:
        reply = None
    if reply is not None:
        # RESP2 answers a flat list of names and values, RESP3 a map.
        pairs = reply.items() if isinstance(reply, dict) else zip(*[iter(reply)] * 2, strict=True)
        items = list(pairs)
        found = {_decode(k): _decode(v) for k, v in items}
        appendonly = found.get("appendonly")
        return RedisSettings(
            maxmemory_policy=found.get("maxmemory-policy"),
            maxmemory=_as_int(found.get("maxmemory")),
            appendonly=None if appendonly is None else appendonly == "yes",
            appendfsync=found.get("appendfsync"),
            read_from="CONFIG GET",
            hz=max(1, _as_int(found.get("hz")) or _DEFAULT_HZ),
        )
    try:
        conn.send_command("INFO")
        text = _decode(conn.read_response()) or ""
    except response_error:
        text = ""
    info = dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )
    aof = info.get("aof_enabled")
    return RedisSettings(
        maxmemory_policy=info.get("maxmemory_policy"),
        maxmemory=_as_int(info.get("maxmemory")),
        appendonly=None if aof is None else aof == "1",
        appendfsync=None,
        read_from="INFO",
        hz=max(1, _as_int(info.get("hz")) or _DEFAULT_HZ),
    )


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
        if (
            type(prefix) is not bytes
            or not prefix
            or any(c in prefix for c in b"*?[]\\{}")
        ):
            raise InvalidRequest("prefix must be non-empty bytes without glob characters or braces")
        if not (0 < timeout_s <= 60):
            raise InvalidRequest("timeout_s must be in (0, 60]")
        if type(min_replicas) is not int or min_replicas < 0:
            raise InvalidRequest("min_replicas must be a non-negative int")
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
        problems = []
        policy, maxmemory = settings.maxmemory_policy, settings.maxmemory
        if not self._accept_eviction:
            if policy is None or maxmemory is None:
                problems.append(
                    f"maxmemory-policy cannot be read ({settings.read_from}): Redis may evict "
                    "spent tokens, which then open again. Fix: allow CONFIG GET or INFO to the "
                    "ledger's user, or pass accept_evicted_tokens_reopening=True"
                )
            elif maxmemory != 0 and policy != "noeviction":
                problems.append(
                    f"maxmemory-policy is {policy} with maxmemory {maxmemory}: when memory "
                    "fills, Redis evicts keys (with volatile-* policies the ledger's first, "
                    "being the only ones with an expiry) and an evicted spent token opens "
                    "again. Fix: maxmemory-policy noeviction (CONFIG SET and redis.conf), or "
                    "pass accept_evicted_tokens_reopening=True"
                )
        if not self._accept_restart and settings.appendonly is not True:
            shown = "unknown" if settings.appendonly is None else "no"
            problems.append(
                f"appendonly is {shown}: without the append-only file a restart or crash "
                "loses every spend since the last snapshot, and those tokens open again. "
                "Fix: appendonly yes (CONFIG SET and redis.conf), or pass "
                "accept_restart_reopening_tokens=True"
            )
        if problems:
            raise LedgerError(
                f"redis ledger at {self._where} refuses the server's settings: "
                + "; ".join(problems)
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

    def _tag(self, vehicle: bytes) -> bytes:
        return b"{" + vehicle.hex().encode() + b"}"

    def _key(self, vehicle_id: str, token_id: bytes) -> bytes:
        vehicle, _ = check_spend(vehicle_id, token_id, 0, 0, 0, ())
        return self._prefix + b"t" + self._tag(vehicle) + token_id

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
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        tag = self._tag(vehicle)
        keys = [self._prefix + b"t" + tag + token_id]
        keys += [
            self._prefix + b"d" + tag + day.to_bytes(4, "big") + item.grant for item in limits
        ]
        # PXAT the first millisecond after second keep_until: kept exactly as
        # long as prune keeps an entry in the other ledgers. Counters: through
        # the day after theirs, as long as prune keeps them elsewhere.
        args = [(keep_until + 1) * 1000, (day + 2) * DAY_SECONDS * 1000]
        args += [item.limit for item in limits]

        def run(conn: Any, deadline: float) -> SpendOutcome:
            try:
                code = self._command(conn, "EVALSHA", _SPEND_SHA, len(keys), *keys, *args)
            except self._errors.NoScriptError:
                code = self._command(conn, "EVAL", _SPEND_LUA, len(keys), *keys, *args)
            if code in (-1, -2):
                what = "keep-until" if code == -1 else "day"
                raise LedgerError(
                    f"redis server's clock is past this spend's {what}: the entry would not "
                    "be kept; check clock synchronisation"
                )
            outcome = _OUTCOMES[int(code)]
            if outcome is SpendOutcome.FIRST_USE and self._min_replicas:
                self._wait_for_replicas(conn, deadline)
            return outcome

        return self._call(run)

    def _wait_for_replicas(self, conn: Any, deadline: float) -> None:
        # WAIT gets what is left of the deadline, less how late Redis may end
        # it and the time its answer needs to come back; WAIT 0 would block
        # forever, so never ask for 0.
        hz = self._settings.hz if self._settings is not None else _DEFAULT_HZ
        left_ms = int((remaining(deadline) - 1 / hz - _WAIT_MARGIN_S) * 1000)
        unconfirmed = (
            f"{self._min_replicas} replicas did not confirm the write within "
            f"{self._timeout_s} s"
        )
        if left_ms < 1:
            raise LedgerError(f"{unconfirmed}: no time left to WAIT")
        try:
            acked = int(self._command(conn, "WAIT", self._min_replicas, left_ms))
        except (self._errors.ConnectionError, self._errors.TimeoutError):
            raise LedgerError(f"{unconfirmed}: WAIT cut at the deadline") from None
        if acked < self._min_replicas:
            raise LedgerError(
                f"only {acked} of {self._min_replicas} replicas confirmed the write"
            )

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        outcome = self.spend(vehicle_id, token_id, keep_until, issued_at=0, at=0)
        return outcome is SpendOutcome.FIRST_USE

    def _failure(self, exc: Exception) -> LedgerError:
        # Sanitised: redis-py messages can quote the command, key (token id) included.
        return LedgerError(f"redis ledger at {self._where} failed: {describe_error(exc)}")

    def prune(self, now: int, *, limit: int | None = None) -> int:  # noqa: ARG002 -- protocol
        """Nothing to do: Redis expires each token and counter by itself."""
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
