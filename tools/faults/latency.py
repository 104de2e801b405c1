"""How long can one ledger call take? The worst case under 8 threads, for the embedded ledgers.

    python -m tools.faults.latency --bound-ms 1000 --threads 8

Two situations per ledger kind (memory, sqlite, sqlite_group):

* ``held``: another connection holds SQLite's write lock (``BEGIN
  EXCLUSIVE``) for longer than the bound, and 8 threads each make one spend
  at the same moment. Every call must end — here by raising LedgerError —
  within the one bound, not one bound per thread ahead of it in the queue.
  The memory ledger has no file lock; its lock is held longest by a prune
  without a limit, so there 8 spends race a prune of ``--memory-entries``
  expired entries.
* ``contended``: nothing is held; 8 threads spend different tokens as fast
  as they can. The worst call shows what queueing behind the others costs.

Prints a JSON line per measurement and a Markdown table; exits non-zero if a
call in ``held`` outlived twice the bound (a little slack for the scheduler
on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trunkkey.errors import LedgerError
from trunkkey.ledger.base import Ledger
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger

KINDS = ("memory", "sqlite", "sqlite_group")
VEHICLE = "latency-car"
NOW = 1_800_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    ledger: str
    situation: str
    threads: int
    calls: int
    answered: int
    raised: int
    worst_s: float
    median_s: float
    wall_s: float
    bound_s: float


def _open(kind: str, path: Path, bound_ms: int) -> Ledger:
    if kind == "memory":
        return MemoryLedger()
    if kind == "sqlite":
        return SqliteLedger(path, busy_timeout_ms=bound_ms)
    return GroupCommitSqliteLedger(path, busy_timeout_ms=bound_ms)


def _one(ledger: Ledger, token: bytes) -> bool:
    spend = getattr(ledger, "spend", None)
    if spend is None:  # a ledger from before spend(), for comparison
        return ledger.consume(VEHICLE, token, NOW + 3600)
    return bool(spend(VEHICLE, token, NOW + 3600, issued_at=NOW, at=NOW))


def _race(ledger: Ledger, *, threads: int, per_thread: int, tag: bytes) -> tuple[list[float], int]:
    start = threading.Barrier(threads + 1)
    times: list[float] = []
    raised: list[int] = []

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            began = time.monotonic()
            try:
                _one(ledger, tag + t.to_bytes(2, "big") + i.to_bytes(4, "big"))
            except LedgerError:
                raised.append(t)
            times.append(time.monotonic() - began)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    start.wait()
    for p in pool:
        p.join()
    return times, len(raised)


def measure(kind: str, situation: str, *, bound_ms: int, threads: int, per_thread: int,
            memory_entries: int = 300_000) -> Latency:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latency.db"
        ledger = _open(kind, path, bound_ms)
        holder = None
        pruner = None
        if situation == "held" and kind != "memory":
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")  # held past every caller's bound
        elif situation == "held":
            for i in range(memory_entries):
                ledger.consume(VEHICLE, b"old" + i.to_bytes(4, "big"), 0)
            pruner = threading.Thread(target=ledger.prune, args=(1,))
        began = time.monotonic()
        if pruner is not None:
            pruner.start()
        times, raised = _race(
            ledger, threads=threads, per_thread=1 if situation == "held" else per_thread,
            tag=b"lat",
        )
        if pruner is not None:
            pruner.join()
        wall = time.monotonic() - began
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        ledger.close()
    ordered = sorted(times)
    return Latency(
        ledger=kind, situation=situation, threads=threads, calls=len(times),
        answered=len(times) - raised, raised=raised, worst_s=round(ordered[-1], 4),
        median_s=round(ordered[len(ordered) // 2], 5), wall_s=round(wall, 3),
        bound_s=bound_ms / 1000,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound-ms", type=int, default=1000,
                        help="busy_timeout_ms of the SQLite ledgers: the promised bound")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=200,
                        help="spends per thread when nothing is held")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--memory-entries", type=int, default=300_000,
                        help="expired entries the memory ledger's racing prune removes")
    args = parser.parse_args(argv)
    rows: list[Latency] = []
    for kind in args.kinds:
        for situation in ("held", "contended"):
            row = measure(kind, situation, bound_ms=args.bound_ms, threads=args.threads,
                          per_thread=args.per_thread, memory_entries=args.memory_entries)
            rows.append(row)
            print(json.dumps(asdict(row)))
    print()
    print("| ledger | situation | threads | calls | answered | raised | worst call | "
          "median call | wall time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.ledger} | {r.situation} | {r.threads} | {r.calls} | {r.answered} | "
              f"{r.raised} | {r.worst_s * 1000:,.1f} ms | {r.median_s * 1000:,.2f} ms | "
              f"{r.wall_s:.2f} s |")
    late = [r for r in rows
            if r.situation == "held" and r.ledger != "memory" and r.worst_s > 2 * r.bound_s]
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
