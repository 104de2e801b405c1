"""An in-process replay ledger: fast, thread-safe, and gone when the process is."""

from __future__ import annotations

import heapq
import threading

from ..errors import InvalidRequest, LedgerError
from .base import (
    DAY_SECONDS,
    MAX_TOKEN_ID_BYTES,
    MAX_VEHICLE_ID_BYTES,
    DailyLimit,
    SpendOutcome,
    check_key,
    check_prune,
    check_spend,
)

_MAX_TIME = 2**40


class MemoryLedger:
    """Spent tokens in a dict, bucketed by expiry so that pruning is cheap.

    A heap holds the distinct expiry times, each with the list of tokens kept
    until then: pruning costs O(pruned + buckets · log buckets), and since
    tokens minted together share their expiry, recording one is usually an
    append rather than a heap push. Daily-limit counters are kept per UTC day,
    so pruning drops a whole stale day at once.

    Nothing survives a restart: use it in tests, or where a restart also
    rotates the trust store so old tokens cannot verify anyway.
    ``start_floor`` makes it behave like a ledger started afresh after a loss
    at that time: every spend of a token issued before it is
    ``ISSUED_BEFORE_LEDGER``, and :meth:`consume` raises.
    """

    def __init__(self, *, start_floor: int = 0) -> None:
        if type(start_floor) is not int or not (0 <= start_floor < _MAX_TIME):
            raise InvalidRequest("start_floor must be an int of Unix seconds")
        self._floor = start_floor
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, bytes], int] = {}
        self._buckets: dict[int, list[tuple[str, bytes]]] = {}
        self._expiries: list[int] = []
        # day -> (vehicle, grant) -> openings counted that day
        self._counts: dict[int, dict[tuple[str, bytes], int]] = {}

    @property
    def start_floor(self) -> int:
        """Tokens issued before this time are refused (0: nothing is)."""
        return self._floor

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
        _, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        if issued_at < self._floor:
            return SpendOutcome.ISSUED_BEFORE_LEDGER
        key = (vehicle_id, token_id)
        with self._lock:
            if key in self._spent:
                return SpendOutcome.ALREADY_USED
            counts = self._counts.get(day)
            if limits:
                if counts is None:
                    counts = self._counts[day] = {}
                for item in limits:
                    if counts.get((vehicle_id, item.grant), 0) >= item.limit:
                        return SpendOutcome.LIMIT_REACHED
                for item in limits:
                    counter = (vehicle_id, item.grant)
                    counts[counter] = counts.get(counter, 0) + 1
            self._record(key, keep_until)
            return SpendOutcome.FIRST_USE

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        # An ASCII id's byte length is its length, so the common case skips
        # encoding it just to measure it.
        if not (
            type(vehicle_id) is str
            and type(token_id) is bytes
            and 0 < len(vehicle_id) <= MAX_VEHICLE_ID_BYTES
            and vehicle_id.isascii()
            and 0 < len(token_id) <= MAX_TOKEN_ID_BYTES
        ):
            check_key(vehicle_id, token_id)
        if self._floor:
            raise LedgerError(
                "this ledger was started afresh after a loss and cannot check a token's "
                "issue time in consume(); use spend()"
            )
        key = (vehicle_id, token_id)
        with self._lock:
            if key in self._spent:
                return False
            self._record(key, keep_until)
            return True

    def _record(self, key: tuple[str, bytes], keep_until: int) -> None:
        self._spent[key] = keep_until
        bucket = self._buckets.get(keep_until)
        if bucket is None:
            self._buckets[keep_until] = [key]
            heapq.heappush(self._expiries, keep_until)
        else:
            bucket.append(key)

    def prune(self, now: int, *, limit: int | None = None) -> int:
        check_prune(now, limit)
        removed = 0
        with self._lock:
            heap, buckets, spent = self._expiries, self._buckets, self._spent
            while heap and heap[0] < now and (limit is None or removed < limit):
                bucket = buckets[heap[0]]
                while bucket and (limit is None or removed < limit):
                    del spent[bucket.pop()]
                    removed += 1
                if not bucket:
                    del buckets[heapq.heappop(heap)]
            # A counter is read only for its own day, and decisions are made
            # at "now": days before yesterday can no longer be asked about.
            stale = now // DAY_SECONDS - 1
            for day in [d for d in self._counts if d < stale]:
                del self._counts[day]
        return removed

    def count(self) -> int:
        return len(self._spent)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryLedger({self.count()} spent)"
