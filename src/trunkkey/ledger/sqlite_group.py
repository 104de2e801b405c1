"""SQLite with group commit: several consumes per fsync, each acknowledged only after it.

A power-loss-safe SQLite commit costs one fsync of the WAL. When many threads
of one verifier process consume at once, :class:`GroupCommitSqliteLedger`
puts every consume that arrives while a commit is in flight into the next
transaction, so N waiting consumes cost one fsync instead of N. No delay is
added to wait for company: a lone consume commits at once, as in
:class:`~trunkkey.ledger.sqlite.SqliteLedger`.

What does not change: a consume returns ``True`` only after the ``COMMIT``
holding its row has returned (``synchronous=FULL``: the WAL was fsynced), so
an acknowledged consume survives a killed process and a power cut exactly as
with the plain ledger. If a batch fails to commit, every consume in it raises
and none is acknowledged. Two consumes of one token in the same batch are
decided by the primary key inside the transaction: the first wins.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field

from ..errors import LedgerError
from .base import check_key
from .sqlite import SqliteLedger

#: Most consumes one transaction carries: bounds the latency of a batch.
DEFAULT_MAX_BATCH = 256


@dataclass(slots=True, kw_only=True)
class _Request:
    vehicle: bytes
    token_id: bytes
    keep_until: int
    done: threading.Event = field(default_factory=threading.Event)
    won: bool = False
    error: str | None = None


class GroupCommitSqliteLedger(SqliteLedger):
    """A :class:`SqliteLedger` whose consumes from many threads share fsyncs.

    One writer thread per ledger runs the transactions; callers block until
    their batch has committed. Pruning and counting are as in the base class.
    Across processes on one file, each process batches its own consumes and
    SQLite's lock serialises the batches.
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
        self._writer = threading.Thread(
            target=self._write_loop, name="trunkkey-sqlite-group-commit", daemon=True
        )
        self._writer.start()
        self.batches = 0  # transactions committed, for benchmarks and tests
        self.batched = 0  # consumes they carried

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        request = _Request(
            vehicle=check_key(vehicle_id, token_id), token_id=token_id, keep_until=int(keep_until)
        )
        with self._gate:
            if not self._accepting:
                raise LedgerError("ledger is closed")
            self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise LedgerError(request.error)
        return request.won

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
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for r in batch:
                        cursor = conn.execute(
                            "INSERT OR IGNORE INTO spent (vehicle, token_id, keep_until) "
                            "VALUES (?, ?, ?)",
                            (r.vehicle, r.token_id, r.keep_until),
                        )
                        r.won = cursor.rowcount == 1
                    conn.execute("COMMIT")  # one WAL fsync for the whole batch
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except Exception as exc:  # noqa: BLE001 -- the writer must never die with callers waiting
                for r in batch:
                    r.won = False
                    r.error = f"ledger write failed: {type(exc).__name__}: {exc}"
            else:
                self.batches += 1
                self.batched += len(batch)
        for r in batch:
            r.done.set()

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
