"""SQLite with group commit: several spends per fsync, each acknowledged only after it.

A power-loss-safe SQLite commit costs one fsync of the WAL. When many threads
of one verifier process spend at once, :class:`GroupCommitSqliteLedger`
puts every spend that arrives while a commit is in flight into the next
transaction, so N waiting spends cost one fsync instead of N. No delay is
added to wait for company: a lone spend commits at once, as in
:class:`~trunkkey.ledger.sqlite.SqliteLedger`.

What does not change: a spend answers ``FIRST_USE`` only after the
``COMMIT`` holding its row has returned (``synchronous=FULL``: the WAL was
fsynced), so an acknowledged spend survives a killed process and a power cut
exactly as with the plain ledger. If a batch fails to commit, every spend in
it raises and none is acknowledged. Inside a batch the requests are decided
one after another in arrival order, each reading what the earlier ones
wrote: two spends of one token, or two spends under a daily limit of one,
cannot both win.

Every caller waits at most ``busy_timeout_ms``: a request still queued when
its time runs out is withdrawn (never written) and raises; one already being
committed raises too, and may then have been recorded (the token reads as
used: the fail-closed side).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from ..errors import LedgerError
from .base import DailyLimit, SpendOutcome, check_key, check_spend
from .sqlite import SpendRequest, SqliteLedger

#: Most spends one transaction carries: bounds the latency of a batch.
DEFAULT_MAX_BATCH = 256

_QUEUED, _CLAIMED, _WITHDRAWN = 0, 1, 2


@dataclass(slots=True, kw_only=True)
class _Request:
    spend: SpendRequest
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    state: int = _QUEUED
    outcome: SpendOutcome | None = None
    error: LedgerError | None = None


class GroupCommitSqliteLedger(SqliteLedger):
    """A :class:`SqliteLedger` whose spends from many threads share fsyncs.

    One writer thread per ledger runs the transactions; callers block until
    their batch has committed or their time is up. Pruning and counting are
    as in the base class. Across processes on one file, each process batches
    its own spends and SQLite's lock serialises the batches.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = 5000,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(path, busy_timeout_ms=busy_timeout_ms)
        self._max_batch = max(1, int(max_batch))
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._accepting = True
        self._gate = threading.Lock()
        # Decides, between a caller whose time ran out and the writer, who
        # owns a request: withdrawn (never written) or claimed (being committed).
        self._claims = threading.Lock()
        self._writer = threading.Thread(
            target=self._write_loop, name="trunkkey-sqlite-group-commit", daemon=True
        )
        self._writer.start()
        self.batches = 0  # transactions committed, for benchmarks and tests
        self.batched = 0  # spends they carried

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
        vehicle, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        if issued_at < self.start_floor:
            self._connection()  # a closed ledger raises, whatever the answer would be
            return SpendOutcome.ISSUED_BEFORE_LEDGER
        return self._submit(SpendRequest(vehicle, token_id, keep_until, day, limits))

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        vehicle = check_key(vehicle_id, token_id)
        self._refuse_consume_after_loss()
        request = SpendRequest(vehicle, token_id, int(keep_until), 0, ())
        return self._submit(request) is SpendOutcome.FIRST_USE

    def _submit(self, spend: SpendRequest) -> SpendOutcome:
        request = _Request(spend=spend, deadline=time.monotonic() + self.bound_s)
        with self._gate:
            if not self._accepting:
                raise LedgerError("ledger is closed")
            self._queue.put(request)
        if not request.done.wait(max(0.0, request.deadline - time.monotonic())):
            with self._claims:
                if request.state == _QUEUED:
                    request.state = _WITHDRAWN
                    raise LedgerError(
                        f"ledger write failed: busy for {self.bound_s:g} s; nothing was recorded"
                    )
            if not request.done.is_set():
                raise LedgerError(
                    f"ledger write failed: busy for {self.bound_s:g} s while committing; "
                    "the token may have been recorded"
                )
        if request.error is not None:
            raise request.error
        assert request.outcome is not None  # noqa: S101 -- set whenever there is no error
        return request.outcome

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Request]) -> None:
        now = time.monotonic()
        live = [r for r in batch if r.deadline > now]
        if live:
            self._commit_live(live)
        for r in batch:
            if r.outcome is None and r.error is None:
                r.error = LedgerError(f"ledger write failed: busy for {self.bound_s:g} s")
            r.done.set()

    def _commit_live(self, live: list[_Request]) -> None:
        def work(conn: sqlite3.Connection) -> int:
            # Claimed only now that the batch holds SQLite's write lock: a
            # request whose caller gave up while we waited is never written.
            with self._claims:
                claimed = [r for r in live if r.state == _QUEUED]
                for r in claimed:
                    r.state = _CLAIMED
            for r in claimed:
                r.outcome = self._decide(conn, r.spend)
            return len(claimed)

        try:
            carried = self._call(
                work, what="write", write=True, deadline=max(r.deadline for r in live)
            )
        except Exception as exc:  # noqa: BLE001 -- the writer must never die with callers waiting
            error = exc if isinstance(exc, LedgerError) else LedgerError(
                f"ledger write failed: {type(exc).__name__}: {exc}"
            )
            for r in live:
                r.outcome = None  # decided inside a transaction that did not commit
                r.error = error
        else:
            self.batches += 1
            self.batched += carried

    def close(self) -> None:
        with self._gate:
            if self._accepting:
                self._accepting = False
                self._queue.put(None)
        if self._writer is not threading.current_thread():
            self._writer.join()
        super().close()

    def __repr__(self) -> str:
        return f"GroupCommitSqliteLedger({str(self.path)!r})"

