"""An in-process replay ledger: fast, thread-safe, and gone when the process is."""

from __future__ import annotations

import heapq
import threading

from .base import (
    MAX_TOKEN_ID_BYTES,
    MAX_VEHICLE_ID_BYTES,
    DailyLimit,
    SpendOutcome,
    check_key,
    check_spend,
)


class MemoryLedger:
    """Spent tokens in a dict, bucketed by expiry so that pruning is cheap.

    A heap holds the distinct expiry times, each with the list of tokens kept
    until then: pruning costs O(pruned + buckets · log buckets), and since
    tokens minted together share their expiry, recording one is usually an
    append rather than a heap push.

    Nothing survives a restart: use it in tests, or where a restart also
    rotates the trust store so old tokens cannot verify anyway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, bytes], int] = {}
        self._buckets: dict[int, list[tuple[str, bytes]]] = {}
        self._expiries: list[int] = []

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
        key = (vehicle_id, token_id)
        with self._lock:
            if key in self._spent:
                return False
            self._spent[key] = keep_until
            bucket = self._buckets.get(keep_until)
            if bucket is None:
                self._buckets[keep_until] = [key]
                heapq.heappush(self._expiries, keep_until)
            else:
                bucket.append(key)
            return True

    def spend(self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int,
              at: int, limits: tuple[DailyLimit, ...] = ()) -> SpendOutcome:
        _, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        with self._lock:
            if (vehicle_id, token_id) in self._spent:
                return SpendOutcome.ALREADY_USED
            counts = self.__dict__.setdefault("_counts", {})
            if any(counts.get((vehicle_id, x.grant, day), 0) >= x.limit for x in limits):
                return SpendOutcome.LIMIT_REACHED
            for x in limits:
                counts[(vehicle_id, x.grant, day)] = counts.get((vehicle_id, x.grant, day), 0) + 1
        self.consume(vehicle_id, token_id, keep_until)
        return SpendOutcome.FIRST_USE

    def prune(self, now: int, *, limit: int | None = None) -> int:
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
        return removed

    def count(self) -> int:
        return len(self._spent)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryLedger({self.count()} spent)"
