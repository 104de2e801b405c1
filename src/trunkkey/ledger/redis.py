"""A replay ledger shared by a fleet of verifiers, on Redis.

One ``SET key 1 NX PXAT t`` per consume: Redis runs each command atomically,
so of any number of verifiers racing on one token exactly one gets ``OK``.
The key expires by itself once the token can no longer be valid, so the
ledger never grows past the tokens still in their window and ``prune`` has
nothing to do.

Fail closed: a refused connection, a timeout, a ``READONLY`` replica or any
other error raises :class:`~trunkkey.errors.LedgerError`, and the verifier
denies with ``ledger_unavailable``. Retries are switched off on purpose: a
``SET NX`` retried after a timeout may find its own first write and answer
"already used" for a token that was never opened.

Durability is Redis's: with ``appendfsync everysec`` a crash of the Redis
host can lose up to a second of acknowledged consumes, and a failover to an
asynchronous replica can lose what it had not yet received. Pass
``min_replicas`` to wait (``WAIT``) until that many replicas hold the write
before a consume counts; if they do not answer in time the consume raises,
which denies (the token stays spent either way). See docs/ledgers.md.

``redis`` (redis-py, the ``trunkkey[redis]`` extra) is imported only when a
``RedisLedger`` is made, so ``import trunkkey`` never needs it.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import InvalidRequest, LedgerError
from .base import check_key

#: Default socket and connect timeouts: a car owner waits at most this long
#: for a "ledger unavailable" answer instead of forever.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_PREFIX = b"trunkkey:spent:"


def _client(url: str, timeout_s: float) -> Any:
    try:
        # Imported here, not at the top: redis-py is an optional extra.
        import redis  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        raise LedgerError("RedisLedger needs redis-py: pip install 'trunkkey[redis]'") from None
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        decode_responses=False,
    )


#: SET NX PXAT, then confirm the key exists: 1 = spent now, 0 = already
#: spent, -1 = Redis stored nothing because it sees the expiry as past.
_CONSUME_LUA = """
local done = redis.call('SET', KEYS[1], '1', 'NX', 'PXAT', ARGV[1])
if not done then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return 1
"""


class RedisLedger:
    """Spent tokens as self-expiring Redis keys.

    The key is ``prefix + len(vehicle) + vehicle + token_id`` (vehicle as
    UTF-8, its length one byte, at most 64): the length byte makes the
    encoding unambiguous, so no (vehicle, token) pair can collide with another.
    It lives until the end of second ``keep_until`` by the Redis server's
    clock — the same moment the other ledgers' ``prune`` may drop it — so
    the Redis host's clock must be synchronised with the verifiers'.
    Thread-safe (redis-py's connection pool); each process makes its own.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: bytes = DEFAULT_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        min_replicas: int = 0,
    ) -> None:
        if type(prefix) is not bytes or not prefix or any(c in prefix for c in b"*?[]\\"):
            raise InvalidRequest("prefix must be non-empty bytes without glob characters")
        if not (0 < timeout_s <= 60):
            raise InvalidRequest("timeout_s must be in (0, 60]")
        if type(min_replicas) is not int or min_replicas < 0:
            raise InvalidRequest("min_replicas must be a non-negative int")
        self._prefix = prefix
        self._min_replicas = min_replicas
        self._timeout_ms = int(timeout_s * 1000)
        self._redis: Any = _client(url, timeout_s)
        self._consume_script: Any = self._redis.register_script(_CONSUME_LUA)
        self._closed = False
        self._close_lock = threading.Lock()
        # Redact credentials: the repr and errors never show the URL's password.
        self._where = url.rsplit("@", maxsplit=1)[-1]

    def _key(self, vehicle_id: str, token_id: bytes) -> bytes:
        vehicle = check_key(vehicle_id, token_id)
        return b"".join((self._prefix, len(vehicle).to_bytes(1, "big"), vehicle, token_id))

    def _live(self) -> Any:
        if self._closed:
            raise LedgerError("ledger is closed")
        return self._redis

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        key = self._key(vehicle_id, token_id)
        if type(keep_until) is not int:
            raise InvalidRequest("keep_until must be an int (Unix seconds)")
        client = self._live()
        try:
            # PXAT the first millisecond after second keep_until: kept exactly as
            # long as prune keeps an entry in the other ledgers. The script
            # sets and then checks, atomically and in one round trip: if Redis's
            # clock is ahead of ours, a PXAT it already sees as past makes SET
            # answer OK yet store nothing — a "first use" with no record, which
            # a slower-clocked verifier would accept again. That is refused
            # here (-1), so nothing is accepted unrecorded.
            outcome = self._consume_script(keys=[key], args=[(keep_until + 1) * 1000])
            if outcome == -1:
                raise LedgerError(
                    "redis server's clock is past this token's keep-until: the entry would "
                    "not be kept; check clock synchronisation"
                )
            done: bool = outcome == 1
            if done and self._min_replicas:
                # Half the socket timeout, so WAIT answers before the socket gives up.
                acked = client.wait(self._min_replicas, max(1, self._timeout_ms // 2))
                if int(acked) < self._min_replicas:
                    raise LedgerError(
                        f"only {acked} of {self._min_replicas} replicas confirmed the write"
                    )
        except LedgerError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any client error (READONLY, timeout, refused) denies
            raise self._failure(exc) from None
        return done

    def _failure(self, exc: Exception) -> LedgerError:
        # The type name only: redis-py messages can quote the command, key included.
        return LedgerError(f"redis ledger at {self._where} failed: {type(exc).__name__}")

    def prune(self, now: int, *, limit: int | None = None) -> int:  # noqa: ARG002 -- protocol
        """Nothing to do: Redis expires each entry at its own ``keep_until``."""
        self._live()
        return 0

    def count(self) -> int:
        """Keys under this ledger's prefix: a SCAN of the database, for monitoring only."""
        client = self._live()
        try:
            return sum(1 for _ in client.scan_iter(match=self._prefix + b"*", count=1000))
        except Exception as exc:  # noqa: BLE001 -- any client error is a ledger failure
            raise self._failure(exc) from None

    def expire_time_ms(self, vehicle_id: str, token_id: bytes) -> int | None:
        """When Redis will drop this entry (Unix ms), or ``None`` if it holds none."""
        client = self._live()
        try:
            when = int(client.pexpiretime(self._key(vehicle_id, token_id)))
        except Exception as exc:  # noqa: BLE001 -- any client error is a ledger failure
            raise self._failure(exc) from None
        return None if when < 0 else when

    def close(self) -> None:
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._redis.close()

    def __enter__(self) -> RedisLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisLedger({self._where!r}, prefix={self._prefix!r})"
