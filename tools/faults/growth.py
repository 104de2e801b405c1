"""A simulated month of deliveries: the ledger holds only tokens that could still be valid.

    python -m tools.faults.growth --ledger sqlite --tokens 1000000 --days 30
    python -m tools.faults.growth --ledger postgres --tokens 1000000 --workers 8
    python -m tools.faults.growth --ledger redis --tokens 1000000 --tick 3600
    python -m tools.faults.growth --ledger postgres_pair --tokens 100000 --days 30
    python -m tools.faults.growth --ledger redis_cluster --tokens 20000 --days 3

``postgres_pair`` and ``redis_cluster`` run on the replicated topologies of
``tools/start-services.sh --replicated`` (``TRUNKKEY_POSTGRES_PAIR_DSN``,
``TRUNKKEY_REDIS_CLUSTER_URL``): the pair through its multi-host DSN (every
commit waits for the synchronous standby), the cluster through
:class:`~trunkkey.ledger.redis_cluster.RedisClusterLedger` (``WAIT 1``), its
tokens spread over :data:`CLUSTER_VEHICLES` vehicles whose slots lie on all
three primaries, and its keys swept on every primary.

Tokens are spread evenly over the month, each with a delivery window of 10
minutes to four hours, presented once somewhere inside it and spent with
``keep_until = expires + SKEW`` (the verifier keeps 300 s, the largest skew
any policy allows; the simulation keeps its figures at 60 s). Time is cut into
ticks of ``--tick`` simulated seconds (an hour by default); each tick's
presentations are consumed through the ledger's real ``consume``.

Memory, SQLite, PostgreSQL: the clock is simulated (no waiting). At the start
of every tick the ledger is pruned through its real ``prune(now, limit=)`` in
bounded batches, and must then hold exactly the spent tokens whose keep_until
has not passed: no fewer (that would reopen a token), no more (unbounded
growth). ``--workers`` threads consume each tick's presentations in parallel
(each its share in time order): every presentation of a tick lies after the
prune that opens it and before the one that closes it, so the order inside a
tick cannot change what any prune sees, and PostgreSQL can share WAL flushes
between concurrent commits instead of paying one flush per token in turn.

Redis expires keys by its own real clock, which cannot be advanced by a
month, so the month is mapped onto real time: tick ``j`` is real second
``R0 + j`` of the Redis server's clock (``TIME``), and a token whose
simulated keep_until falls in tick ``j`` gets the real keep_until ``R0 + j``.
The ledger keeps a key through the end of its keep_until second, i.e.
through the end of the tick that contains the simulated keep_until: never
shorter than the simulation says, at most one tick longer. At the start of
real second ``R0 + j`` (simulated time ``t_j``) the keys Redis may still hold
are therefore exactly the spent tokens with simulated keep_until >= t_j, the
same set the other ledgers hold after a prune at t_j. The harness waits for
that second by the server's clock, sweeps the prefix with ``SCAN`` (which
deletes every logically expired key it meets, as any read does), and compares
the key set it finds with the model, token by token; then it consumes the
tick's presentations and checks again before the second ends. A check or a
tick that spills into the next real second is counted as ``late`` and fails
the run (the mapping would no longer be exact).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.faults.ledgers import (
    REPLICATED_ENV,
    SERVER_ENV,
    ClusterPrimaries,
    drop_namespace,
    new_namespace,
    open_ledger,
)
from trunkkey.ledger.base import Ledger
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger

START = 1_800_000_000
SKEW = 60
MIN_WINDOW = 600
MAX_WINDOW = 4 * 3600
DAY = 86_400
VEHICLE = "growth-car"
#: On the cluster: vehicles growth-c00..growth-c11 (as long as VEHICLE, so keys keep
#: their layout), whose hash-tag slots fall on each of the three primaries.
CLUSTER_VEHICLES = 12
PG_KINDS = ("postgres", "postgres_pair")
REDIS_KINDS = ("redis", "redis_cluster")


def _server_url(kind: str) -> str:
    return os.environ[SERVER_ENV.get(kind) or REPLICATED_ENV[kind]]


def vehicle_of(n: int, vehicles: int) -> str:
    return VEHICLE if vehicles == 1 else f"growth-c{n % vehicles:02d}"

#: One presentation: (presented at, keep_until, token number), simulated seconds.
Presentation = tuple[int, int, int]


def ticks(
    *, tokens: int, days: int, tick: int, seed: int
) -> Iterator[tuple[int, list[Presentation]]]:
    """Yield ``(tick start, presentations in [start, start + tick) in time order)``.

    Ends with the tick of the last presentation; the heap holds only tokens
    issued but not yet presented (a few hours' worth), so a million tokens
    never sit in memory at once.
    """
    rng = random.Random(seed)  # noqa: S311 -- simulated traffic, not secrets
    span = days * DAY
    pending: list[Presentation] = []
    n = 0
    start = START
    while n < tokens or pending:
        end = start + tick
        while n < tokens and START + n * span // tokens < end:
            issued = START + n * span // tokens
            window = rng.randint(MIN_WINDOW, MAX_WINDOW)
            heapq.heappush(pending, (issued + rng.randrange(window), issued + window + SKEW, n))
            n += 1
        batch: list[Presentation] = []
        while pending and pending[0][0] < end:
            batch.append(heapq.heappop(pending))
        yield start, batch
        start = end


def token_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowthResult:
    ledger: str
    tokens: int
    days: int
    tick_seconds: int
    workers: int
    #: Prunes (simulated ledgers) or sweeps at a tick boundary (Redis).
    prunes: int
    #: Most entries held right after a prune / at a tick boundary once expired keys are swept.
    max_held: int
    #: Most spent tokens whose keep_until had not passed at that moment (the model).
    max_could_be_valid: int
    #: Most entries held just before a prune / before the tick boundary.
    max_held_before_prune: int
    #: Held after a last prune past every keep_until (must be 0).
    held_at_end: int
    mismatches: int
    #: Redis: checks or ticks that spilled into the next real second (must be 0).
    late: int
    #: SQLite: the file; PostgreSQL: pg_total_relation_size of the table (max, end).
    max_bytes: int | None
    bytes_at_end: int | None
    #: SQLite / PostgreSQL: the same size at the start of each simulated day (a plateau).
    daily_bytes: tuple[int, ...] | None
    #: Redis: most keys in the whole database at a boundary, before and after the sweep.
    max_db_keys_before_sweep: int | None
    max_db_keys_after_sweep: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.mismatches == 0
            and self.late == 0
            and self.held_at_end == 0
            and self.max_held <= self.max_could_be_valid
        )


def _open(kind: str, namespace: str, db: Path, workers: int) -> Ledger:
    if kind in PG_KINDS:
        # One pooled connection per worker thread, so none waits for a slot.
        return PostgresLedger(_server_url(kind), table=namespace, pool_size=max(1, workers))
    return open_ledger(kind, namespace=namespace, path=db)


class _PgAdmin:
    """A side connection: the table's size on disk, and VACUUM standing in for autovacuum.

    Autovacuum wakes every ``autovacuum_naptime`` (1 min) of *real* time. A
    simulated month squeezed into minutes gives it almost no chance to run, so
    dead rows would pile up as they never would in a real month. At a million
    tokens a month (about 23 deletions a real minute against ~1,500 live rows)
    its default threshold (50 rows + 20 % of the table) is crossed about every
    quarter of an hour; a plain ``VACUUM`` every ``vacuum_every`` ticks (one
    simulated hour each, by default) is rarer than that, so the sizes measured
    with it do not flatter.
    """

    def __init__(self, dsn: str, table: str) -> None:
        import psycopg  # noqa: PLC0415 -- optional client, only for the postgres run
        from psycopg import sql  # noqa: PLC0415

        # The primary of a pair: VACUUM cannot run on the standby.
        self._conn = psycopg.connect(dsn, autocommit=True, target_session_attrs="read-write")
        self._table = table
        self._vacuum = sql.SQL("VACUUM {}").format(sql.Identifier(table))

    def size(self) -> int:
        row = self._conn.execute(
            "SELECT pg_total_relation_size(%s::regclass)", (self._table,)
        ).fetchone()
        return int(row[0]) if row else 0

    def vacuum(self) -> None:
        self._conn.execute(self._vacuum)

    def close(self) -> None:
        self._conn.close()


def _consume_all(
    ledger: Ledger,
    batch: Sequence[Presentation],
    pool: ThreadPoolExecutor | None,
    workers: int,
    keep: Callable[[int], int],
    *,
    vehicles: int = 1,
) -> int:
    """Consume every presentation once; the number that were refused (each a mismatch)."""

    def run(share: Sequence[Presentation]) -> int:
        return sum(
            not ledger.consume(vehicle_of(n, vehicles), token_id(n), keep(k))
            for _, k, n in share
        )

    if pool is None or len(batch) < 2 * workers:
        return run(batch)
    return sum(pool.map(run, [batch[i::workers] for i in range(workers)]))


def _prune(ledger: Ledger, now: int, limit: int | None) -> None:
    if limit is None:
        ledger.prune(now, limit=None)
        return
    while ledger.prune(now, limit=limit) == limit:
        pass


def run_growth(
    kind: str,
    *,
    tokens: int,
    days: int = 30,
    prune_every: int = 3600,
    path: Path | None = None,
    seed: int = 7,
    workers: int = 1,
    prune_limit: int | None = 1000,
    vacuum_every: int = 1,
) -> GrowthResult:
    """Simulated clock, real ledger: prune at every tick, compare with the model."""
    if kind in REDIS_KINDS:
        raise ValueError("Redis expires by its own clock: use run_redis_growth")
    namespace = new_namespace()
    started = time.perf_counter()
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        db = path or Path(tmp) / "growth.db"
        ledger = _open(kind, namespace, db, workers)
        admin = _PgAdmin(_server_url(kind), namespace) if kind in PG_KINDS else None
        size: Callable[[], int] | None = None
        if admin is not None:
            size = admin.size
        elif kind in ("sqlite", "sqlite_group"):
            size = lambda: db.stat().st_size  # noqa: E731
        live: list[int] = []  # keep_until of every spent token not yet pruned (model)
        prunes = mismatches = max_held = max_live = max_before = 0
        max_bytes = 0
        daily_bytes: list[int] = []
        for start, batch in ticks(tokens=tokens, days=days, tick=prune_every, seed=seed):
            if start > START:
                max_before = max(max_before, ledger.count())
                _prune(ledger, start, prune_limit)
                if admin is not None and vacuum_every and prunes % vacuum_every == 0:
                    admin.vacuum()
                while live and live[0] < start:
                    heapq.heappop(live)
                held = ledger.count()
                prunes += 1
                mismatches += held != len(live)
                max_held = max(max_held, held)
                max_live = max(max_live, len(live))
                if size is not None:
                    now_bytes = size()
                    max_bytes = max(max_bytes, now_bytes)
                    if (start - START) % DAY == 0:
                        daily_bytes.append(now_bytes)
            mismatches += _consume_all(ledger, batch, pool, workers, lambda k: k)
            for _, keep_until, _ in batch:
                heapq.heappush(live, keep_until)
        # Past every keep_until, a last prune must leave nothing at all.
        max_before = max(max_before, ledger.count())
        _prune(ledger, START + days * DAY + MAX_WINDOW + SKEW + prune_every, prune_limit)
        held_at_end = ledger.count()
        bytes_at_end = size() if size is not None else None
        if size is not None:
            max_bytes = max(max_bytes, bytes_at_end or 0)
        if admin is not None:
            admin.close()
        ledger.close()
        if pool is not None:
            pool.shutdown()
        if kind in PG_KINDS:
            drop_namespace(kind, namespace)
    return GrowthResult(
        ledger=kind,
        tokens=tokens,
        days=days,
        tick_seconds=prune_every,
        workers=workers,
        prunes=prunes,
        max_held=max_held,
        max_could_be_valid=max_live,
        max_held_before_prune=max_before,
        held_at_end=held_at_end,
        mismatches=mismatches,
        late=0,
        max_bytes=max_bytes if size is not None else None,
        bytes_at_end=bytes_at_end,
        daily_bytes=tuple(daily_bytes) if size is not None else None,
        max_db_keys_before_sweep=None,
        max_db_keys_after_sweep=None,
        seconds=round(time.perf_counter() - started, 2),
    )


class _RedisClock:
    """The Redis server's own clock (``TIME``), the one its expiry runs on."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def ms(self) -> int:
        seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def wait_past(self, boundary_ms: int) -> None:
        """Return once the server's clock is past ``boundary_ms``.

        A real wait, on purpose: Redis expires by its real clock and offers no
        way to advance it. Sleep most of the gap, then ask the server again.
        """
        while (now := self.ms()) <= boundary_ms:
            time.sleep(max(0.001, (boundary_ms - now) / 1000 - 0.005))


def _db_keys(client: Any) -> int:
    return int(client.dbsize())  # on a cluster: the sum over its primaries


def run_redis_growth(
    *,
    tokens: int,
    days: int = 30,
    tick: int = 3600,
    seed: int = 7,
    url: str | None = None,
    workers: int = 1,
    kind: str = "redis",
) -> GrowthResult:
    """The simulated month mapped onto the Redis server's real clock: tick j = second R0 + j."""
    import redis  # noqa: PLC0415 -- optional client, only for the redis run

    url = url or _server_url(kind)
    namespace = new_namespace()
    prefix = namespace.encode() + b":"
    ledger: Ledger
    vehicles = 1
    if kind == "redis_cluster":
        from trunkkey.ledger.redis_cluster import RedisClusterLedger  # noqa: PLC0415

        # SCAN and DBSIZE on every primary; the servers share one clock (loopback).
        client: Any = ClusterPrimaries(url)
        ledger, vehicles = RedisClusterLedger(url, prefix=prefix), CLUSTER_VEHICLES
    else:
        client = redis.Redis.from_url(url)
        ledger = RedisLedger(url, prefix=prefix)
    clock = _RedisClock(client)
    # A spent token's key: prefix, b"t{", the vehicle in hex, b"}", the token id.
    key_head = len(prefix) + 3 + 2 * len(VEHICLE.encode())
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    started = time.perf_counter()
    # Tick 0 starts at the next full second of the server's clock.
    r0 = clock.ms() // 1000 + 1

    def real_keep(keep_until: int) -> int:
        # Floor: kept through the end of the tick holding the simulated
        # keep_until, so never dropped before the simulation says.
        return r0 + (keep_until - START) // tick

    def held() -> set[int]:
        found = client.scan_iter(match=prefix + b"t{*", count=1000)
        return {int.from_bytes(key[key_head:], "big") for key in found}

    live: list[tuple[int, int]] = []  # (real keep_until, n) of spent tokens (model)
    live_ids: set[int] = set()
    sweeps = mismatches = late = max_held = max_live = max_before = 0
    max_db_before = max_db_after = 0

    def checkpoint(j: int) -> int:
        nonlocal sweeps, mismatches, late, max_held, max_live, max_db_before, max_db_after
        clock.wait_past((r0 + j) * 1000)
        max_db_before = max(max_db_before, _db_keys(client))
        while live and live[0][0] < r0 + j:
            live_ids.discard(heapq.heappop(live)[1])
        found = held()
        max_db_after = max(max_db_after, _db_keys(client))
        if clock.ms() >= (r0 + j + 1) * 1000:
            late += 1  # the sweep spilled into the next second: not comparable
        sweeps += 1
        mismatches += found != live_ids
        max_held = max(max_held, len(found))
        max_live = max(max_live, len(live_ids))
        return len(found)

    try:
        j = 0
        for j, (_, batch) in enumerate(ticks(tokens=tokens, days=days, tick=tick, seed=seed)):
            checkpoint(j)
            mismatches += _consume_all(
                ledger, batch, pool, workers, real_keep, vehicles=vehicles
            )
            for _, keep_until, n in batch:
                heapq.heappush(live, (real_keep(keep_until), n))
                live_ids.add(n)
            # Still inside second R0 + j: nothing consumed so far may have expired.
            before = held()
            if clock.ms() >= (r0 + j + 1) * 1000:
                late += 1
            mismatches += before != live_ids
            max_before = max(max_before, len(before))
        # Keep going, second by second, until the last keep_until has passed.
        while True:
            j += 1
            held_at_end = checkpoint(j)
            if not live:
                break
    finally:
        ledger.close()
        client.close()
        if pool is not None:
            pool.shutdown()
        drop_namespace(kind, namespace, url)
    return GrowthResult(
        ledger=kind,
        tokens=tokens,
        days=days,
        tick_seconds=tick,
        workers=workers,
        prunes=sweeps,
        max_held=max_held,
        max_could_be_valid=max_live,
        max_held_before_prune=max_before,
        held_at_end=held_at_end,
        mismatches=mismatches,
        late=late,
        max_bytes=None,
        bytes_at_end=None,
        daily_bytes=None,
        max_db_keys_before_sweep=max_db_before,
        max_db_keys_after_sweep=max_db_after,
        seconds=round(time.perf_counter() - started, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ledger",
        choices=("memory", "sqlite", "sqlite_group", *PG_KINDS, *REDIS_KINDS),
        required=True,
    )
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--tick",
        "--prune-every",
        type=int,
        default=3600,
        dest="tick",
        help="simulated seconds per prune (Redis: per real second)",
    )
    parser.add_argument(
        "--prune-limit",
        type=int,
        default=1000,
        help="rows per prune(limit=) call, repeated until a call removes fewer (0: no limit)",
    )
    parser.add_argument(
        "--workers", type=int, help="consuming threads (default: 8 for postgres, else 1)"
    )
    parser.add_argument(
        "--vacuum-every",
        type=int,
        default=1,
        help="PostgreSQL: VACUUM the table every N ticks, standing in for autovacuum (0: never)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--path", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    # The cluster waits for a replica on every consume: one thread would spill past its second.
    workers = args.workers or {"postgres": 8, "postgres_pair": 8, "redis_cluster": 4}.get(
        args.ledger, 1
    )
    if args.ledger in REDIS_KINDS:
        result = run_redis_growth(
            tokens=args.tokens, days=args.days, tick=args.tick, seed=args.seed, workers=workers,
            kind=args.ledger,
        )
    else:
        result = run_growth(
            args.ledger,
            tokens=args.tokens,
            days=args.days,
            prune_every=args.tick,
            path=args.path,
            seed=args.seed,
            workers=workers,
            prune_limit=args.prune_limit or None,
            vacuum_every=args.vacuum_every,
        )
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
