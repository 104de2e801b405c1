# ruff: noqa: PLC0415  -- optional clients (redis, psycopg) imported only when asked for
"""How long a fleet-ledger call can take when the server makes it wait: the worst case.

    python -m tools.faults.latency_servers --threads 8 --calls 4 --timeout 1.0

Every call of a ``RedisLedger`` or ``PostgresLedger`` must end (answer or
raise) within one documented bound, ``timeout_s`` plus the watchdog's tick,
whatever the number of threads waiting: a courier at the car waits at most
that long for "ledger unavailable". Scenarios, each with ``--threads``
threads making ``--calls`` spends at once:

- ``postgres_lock``: another session holds ``LOCK TABLE ... IN ACCESS
  EXCLUSIVE MODE`` on the ledger's table in an open transaction, and the pool
  has fewer connections than threads (so calls also wait for a connection);
- ``postgres_hang``: the link hangs (TCP acknowledges, nothing answers);
- ``redis_pause``: ``CLIENT PAUSE ... WRITE`` for the whole run;
- ``redis_pause_then_wait``: writes paused for 90 % of the timeout, then a
  ``WAIT`` for a replica that never answers (``min_replicas=1``);
- ``redis_hang``: the link hangs.

PostgreSQL runs on the server of ``TRUNKKEY_POSTGRES_DSN`` (only the run's own
table is locked). Redis runs on a throwaway server this script starts (CLIENT
PAUSE would stall everyone on a shared one). Prints one JSON line per
scenario; exits non-zero if any call outlived the bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tools.faults.faults import RedisServer, fault_proxy
from tools.faults.ledgers import (
    SERVER_ENV,
    SyncOverAsync,
    drop_namespace,
    new_namespace,
    open_async_ledger,
)
from trunkkey.errors import LedgerError
from trunkkey.ledger.base import DailyLimit, Ledger, SpendOutcome
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger

#: What a call may take beyond timeout_s: the watchdog's tick (50 ms at most)
#: plus scheduling on a busy machine. A stall of the whole process (another
#: program taking the cores, a page fault storm) is measured apart, as
#: ``stall_s``, and added: it is the machine's delay, not the ledger's.
SLACK_S = 0.25
#: How often the stall probe wakes.
_PROBE_TICK_S = 0.005
_GRANT = bytes(32)


@dataclass(frozen=True, slots=True)
class LatencyResult:
    scenario: str
    threads: int
    calls: int
    timeout_s: float
    pool_size: int | None
    first_use: int
    errors: int
    p50_s: float
    max_s: float
    stall_s: float
    bound_s: float

    @property
    def ok(self) -> bool:
        return self.max_s <= self.bound_s


class _StallProbe:
    """A thread that asks to wake every few milliseconds and keeps how late it woke.

    A call awaiting its server releases the GIL, so a ledger that overruns its
    deadline does not delay the probe; a process the machine stops does.
    """

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            time.sleep(_PROBE_TICK_S)
            self.worst_s = max(self.worst_s, time.monotonic() - asked - _PROBE_TICK_S)

    def __enter__(self) -> _StallProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(
    scenario: str, spend: Callable[[bytes], SpendOutcome], *, threads: int, calls: int,
    timeout_s: float, pool_size: int | None = None,
) -> LatencyResult:
    """``threads`` threads start together; each times ``calls`` spends of fresh tokens.

    The collector is off while they run, as in ``timeit``: a full collection of a
    large heap (a test session's) stops every thread for longer than the slack.
    """
    start = threading.Barrier(threads)
    durations: list[float] = []
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        start.wait()
        for i in range(calls):
            began = time.monotonic()
            try:
                outcome = spend(b"lat" + bytes([n, i]) + os.urandom(8)).value
            except LedgerError:
                outcome = "error"
            took = time.monotonic() - began
            with lock:
                durations.append(took)
                outcomes.append(outcome)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with _StallProbe() as probe:
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
    finally:
        if collecting:
            gc.enable()
    stall_s = round(probe.worst_s, 3)
    return LatencyResult(
        scenario=scenario, threads=threads, calls=len(durations), timeout_s=timeout_s,
        pool_size=pool_size, first_use=outcomes.count(SpendOutcome.FIRST_USE.value),
        errors=outcomes.count("error"), p50_s=round(statistics.median(durations), 3),
        max_s=round(max(durations), 3), stall_s=stall_s,
        bound_s=round(timeout_s + SLACK_S + stall_s, 3),
    )


def _postgres(dsn: str, asynchronous: bool, **options: Any) -> PostgresLedger | SyncOverAsync:
    """The PostgreSQL ledger, or with ``asynchronous`` the async one (every thread's
    call awaited on one event loop: the same deadlines, met by the async code)."""
    if asynchronous:
        table = options.pop("table")
        return SyncOverAsync(open_async_ledger(
            "postgres_async", namespace=table, url=dsn, **options
        ))
    return PostgresLedger(dsn, **options)


def _redis(url: str, asynchronous: bool, **options: Any) -> RedisLedger | SyncOverAsync:
    if asynchronous:
        return SyncOverAsync(open_async_ledger(
            "redis_async", namespace="trunkkey:spent", url=url, **options
        ))
    return RedisLedger(url, **options)


def _spender(ledger: Ledger) -> Callable[[bytes], SpendOutcome]:
    def spend(token: bytes) -> SpendOutcome:
        at = int(time.time())
        return ledger.spend(
            "latency-car", token, at + 3600, issued_at=at, at=at,
            limits=(DailyLimit(_GRANT, 1_000_000),),
        )

    return spend


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{user[0]}@{host}" if len(user) == 2 else host))


def postgres_lock(
    dsn: str, *, threads: int, calls: int, timeout_s: float, pool_size: int,
    asynchronous: bool = False,
) -> LatencyResult:
    import psycopg
    from psycopg import sql

    namespace = new_namespace()
    ledger = _postgres(
        dsn, asynchronous, table=namespace, timeout_s=timeout_s, pool_size=pool_size
    )
    holder = psycopg.connect(dsn)  # not autocommit: the lock lives until rollback
    try:
        holder.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(namespace))
        )
        return measure(
            "postgres_lock", _spender(ledger), threads=threads, calls=calls,
            timeout_s=timeout_s, pool_size=pool_size,
        )
    finally:
        holder.rollback()
        holder.close()
        ledger.close()
        drop_namespace("postgres", namespace, dsn)


def postgres_hang(
    dsn: str, *, threads: int, calls: int, timeout_s: float, pool_size: int,
    asynchronous: bool = False,
) -> LatencyResult:
    namespace = new_namespace()
    port = urlsplit(dsn).port or 5432
    try:
        with fault_proxy("127.0.0.1", port) as proxy:
            ledger = _postgres(
                _with_port(dsn, proxy.port), asynchronous, table=namespace,
                timeout_s=timeout_s, pool_size=pool_size,
            )
            proxy.mode = "hang"
            try:
                return measure(
                    "postgres_hang", _spender(ledger), threads=threads, calls=calls,
                    timeout_s=timeout_s, pool_size=pool_size,
                )
            finally:
                ledger.close()
    finally:
        drop_namespace("postgres", namespace, dsn)


def redis_pause(
    url: str, *, threads: int, calls: int, timeout_s: float, then_wait: bool,
    asynchronous: bool = False,
) -> LatencyResult:
    import redis

    admin = redis.Redis.from_url(url)
    ledger = _redis(url, asynchronous, timeout_s=timeout_s, min_replicas=1 if then_wait else 0)
    spend = _spender(ledger)
    scenario = "redis_pause_then_wait" if then_wait else "redis_pause"
    try:
        # Paused for the whole run; or, before a WAIT that no replica answers,
        # for 90 % of the timeout (each thread's first call meets the pause).
        pause_ms = int(timeout_s * 900) if then_wait else int((timeout_s * calls + 5) * 1000)
        admin.client_pause(pause_ms, all=False)
        return measure(scenario, spend, threads=threads, calls=calls, timeout_s=timeout_s)
    finally:
        admin.client_unpause()
        admin.close()
        ledger.close()


def redis_hang(
    url: str, *, threads: int, calls: int, timeout_s: float, asynchronous: bool = False
) -> LatencyResult:
    port = urlsplit(url).port or 6379
    with fault_proxy("127.0.0.1", port) as proxy:
        ledger = _redis(_with_port(url, proxy.port), asynchronous, timeout_s=timeout_s)
        proxy.mode = "hang"
        try:
            return measure(
                "redis_hang", _spender(ledger), threads=threads, calls=calls, timeout_s=timeout_s
            )
        finally:
            ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=4, help="spends per thread")
    parser.add_argument("--timeout", type=float, default=1.0, help="the ledgers' timeout_s")
    parser.add_argument("--pool-size", type=int, default=2, help="PostgreSQL connections")
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="the async ledgers, every thread's call awaited on one event loop")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    common = {"threads": args.threads, "calls": args.calls, "timeout_s": args.timeout,
              "asynchronous": args.asynchronous}
    results: list[LatencyResult] = []
    dsn = os.environ.get(SERVER_ENV["postgres"])
    if dsn:
        for name, run in (("postgres_lock", postgres_lock), ("postgres_hang", postgres_hang)):
            if name not in skip:
                results.append(run(dsn, pool_size=args.pool_size, **common))  # type: ignore[arg-type]
    else:
        print(f"{SERVER_ENV['postgres']} unset: PostgreSQL scenarios skipped", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="trunkkey-lat-") as scratch,
        RedisServer(Path(scratch), "--appendonly", "yes", "--save", "") as server,
    ):
        if "redis_pause" not in skip:
            results.append(redis_pause(server.url, then_wait=False, **common))  # type: ignore[arg-type]
        if "redis_pause_then_wait" not in skip:
            results.append(redis_pause(server.url, then_wait=True, **common))  # type: ignore[arg-type]
        if "redis_hang" not in skip:
            results.append(redis_hang(server.url, **common))  # type: ignore[arg-type]
    for result in results:
        print(json.dumps({**asdict(result), "ok": result.ok}))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
