"""Race P processes x T threads on every ledger; exactly one may win each race.

    python -m tools.faults.race --ledger sqlite --races 10000 --procs 2 --threads 4
    python -m tools.faults.race --ledger sqlite --daily-limit --rounds 1000 --procs 2 --threads 4

Token race (the default): every worker walks the same token ids in the same
order, so for each token all P x T workers arrive at nearly the same moment.
The parent counts the winners per token and exits non-zero unless every
token had exactly one.

Daily-limit race (``--daily-limit``): in each round every worker presents a
*different* token, all under the same ``DailyLimit`` of one opening a day
(a fresh 32-byte grant digest per round), so the tokens cannot collide and
only the limit stands between them. At most one FIRST_USE per round, ever;
exactly one when no call failed. The threads of a process start each round
together.

The memory ledger lives inside one process: it is raced by threads only
(``--procs`` is forced to 1 for it). The others are raced by processes, each
with its own ledger object on the shared file or server, and threads within.

The async ledgers (``--ledger redis_async`` / ``postgres_async``) are raced by
processes each running one event loop, with ``--threads`` concurrent tasks on
it instead of threads (the async mode): every task awaits the same token, or
in the limit race its own token under the round's limit, entering each round
together (an ``asyncio.Barrier``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path
from typing import Any

from tools.faults.ledgers import (
    ASYNC_KINDS,
    CLUSTER_ASYNC_KINDS,
    KINDS,
    REPLICATED_ENV,
    SERVER_ENV,
    drop_namespace,
    new_namespace,
    open_async_ledger,
    open_ledger,
)
from trunkkey.ledger.base import AsyncLedger, DailyLimit, Ledger, SpendOutcome

#: Races are spread over this many vehicles, race i (or round i) on vehicle i % 12:
#: on a Redis Cluster each vehicle is one hash slot, and the slots of race-car-00
#: .. race-car-11 fall on all three primaries (6, 3 and 3 of them), so every
#: primary and its replica are raced, not just the one owning a single vehicle.
RACE_VEHICLES = 12


def vehicle_of(i: int) -> str:
    return f"race-car-{i % RACE_VEHICLES:02d}"



@dataclass(frozen=True, slots=True, kw_only=True)
class RaceResult:
    ledger: str
    races: int
    procs: int
    threads: int
    attempts: int
    winners: int
    tokens_with_one_winner: int
    tokens_won_twice: int
    tokens_never_won: int
    errors: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.tokens_with_one_winner == self.races and self.errors == 0


def _token(i: int) -> bytes:
    return b"race" + i.to_bytes(8, "big")


def _thread_worker(
    ledger: Ledger, *, races: int, keep_until: int, start: threading.Barrier,
    wins: list[int], errors: list[int],
) -> None:
    start.wait()
    for i in range(races):
        try:
            if ledger.consume(vehicle_of(i), _token(i), keep_until):
                wins.append(i)
        except Exception:  # noqa: BLE001 -- counted and reported: an error is never a win
            errors.append(i)


def _run_threads(
    ledger: Ledger, threads: int, barrier: ProcessBarrier | None,
    work: Callable[[Ledger, int], None],
) -> None:
    """Run ``work(ledger, t)`` on ``threads`` threads, once every process has connected."""
    # Switch threads as often as possible, so threads of one process really
    # interleave inside the ledger call instead of taking turns by the GIL's 5 ms slice.
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=work, args=(ledger, t)) for t in range(threads)]
        if barrier is not None:
            barrier.wait()  # every process is connected before anyone starts
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(0.005)


def _in_processes(
    child: Callable[..., None], kind: str, procs: int,
    options_for: Callable[[int], dict[str, object]],
) -> list[Any]:
    """Run ``child`` in ``procs`` spawned processes; each puts one result on the queue."""
    ctx = mp.get_context("spawn")  # no connection or lock is ever inherited by fork
    barrier = ctx.Barrier(procs)
    out = ctx.SimpleQueue()
    children = [
        ctx.Process(target=child, args=(kind, options_for(p) | {"barrier": barrier}, out))
        for p in range(procs)
    ]
    for c in children:
        c.start()
    results = [out.get() for _ in children]
    for c in children:
        c.join()
    return results


def _on_one_loop(  # noqa: PLR0917 -- private: one call per race kind
    kind: str, namespace: str, tasks: int, barrier: ProcessBarrier | None,
    work: Callable[[AsyncLedger, int], Awaitable[None]],
    opening: Callable[[], Awaitable[AsyncLedger]] | None = None,
) -> None:
    """The async mode: ``work(ledger, t)`` as ``tasks`` concurrent tasks of one event loop.

    ``opening`` makes the ledger instead of ``kind`` (the tests' racy ledgers).
    """

    async def race() -> None:
        if opening is None:
            ledger = await open_async_ledger(kind, namespace=namespace)
        else:
            ledger = await opening()
        try:
            if barrier is not None:
                barrier.wait()  # every process is connected before anyone starts
            await asyncio.gather(*(work(ledger, t) for t in range(tasks)))
        finally:
            await ledger.close()

    asyncio.run(race())


def _run_process(
    kind: str, *, namespace: str, path: str, races: int, threads: int, keep_until: int,
    barrier: ProcessBarrier | None, ledger: Ledger | None = None,
) -> tuple[list[int], int]:
    if kind in ASYNC_KINDS + CLUSTER_ASYNC_KINDS and ledger is None:
        return _run_async_process(kind, namespace=namespace, races=races, tasks=threads,
                                  keep_until=keep_until, barrier=barrier)
    own = ledger is None
    ledger = ledger or open_ledger(kind, namespace=namespace, path=Path(path))
    wins: list[int] = []
    errors: list[int] = []
    start = threading.Barrier(threads)

    def work(shared: Ledger, _: int) -> None:
        _thread_worker(shared, races=races, keep_until=keep_until, start=start, wins=wins,
                       errors=errors)

    _run_threads(ledger, threads, barrier, work)
    if own:
        ledger.close()
    return wins, len(errors)


def _run_async_process(
    kind: str, *, namespace: str, races: int, tasks: int, keep_until: int,
    barrier: ProcessBarrier | None,
    opening: Callable[[], Awaitable[AsyncLedger]] | None = None,
) -> tuple[list[int], int]:
    wins: list[int] = []
    errors: list[int] = []

    async def work(ledger: AsyncLedger, _: int) -> None:
        for i in range(races):
            try:
                if await ledger.consume(vehicle_of(i), _token(i), keep_until):
                    wins.append(i)
            except Exception:  # noqa: BLE001 -- counted and reported: an error is never a win
                errors.append(i)

    _on_one_loop(kind, namespace, tasks, barrier, work, opening)
    return wins, len(errors)


def _child(kind: str, options: dict[str, object], out: mp.SimpleQueue) -> None:  # type: ignore[type-arg]
    try:
        out.put(_run_process(kind, **options))  # type: ignore[arg-type]
    except BaseException:
        # The parent waits for one result per child: a child that cannot even
        # open its ledger reports every attempt as an error instead of hanging it.
        out.put(([], int(str(options["races"])) * int(str(options["threads"]))))
        raise


def run_race(
    kind: str, *, races: int, procs: int, threads: int, path: Path | None = None,
    namespace: str | None = None,
) -> RaceResult:
    if kind == "memory":
        procs = 1  # one process: a memory ledger is not shared between processes
    namespace = namespace or new_namespace()
    keep_until = int(time.time()) + 86_400
    with tempfile.TemporaryDirectory() as tmp:
        db = str(path or Path(tmp) / "race.db")
        if kind != "memory":
            open_ledger(kind, namespace=namespace, path=Path(db)).close()  # create the schema
        started = time.perf_counter()
        results: list[tuple[list[int], int]] = []
        if kind == "memory":
            results.append(
                _run_process(kind, namespace=namespace, path=db, races=races, threads=threads,
                             keep_until=keep_until, barrier=None, ledger=open_ledger("memory"))
            )
        else:
            options: dict[str, object] = {"namespace": namespace, "path": db, "races": races,
                                          "threads": threads, "keep_until": keep_until}
            results = _in_processes(_child, kind, procs, lambda _: options)
        seconds = time.perf_counter() - started
        if kind in SERVER_ENV:
            drop_namespace(kind, namespace)
    per_token = Counter(i for wins, _ in results for i in wins)
    return RaceResult(
        ledger=kind,
        races=races,
        procs=procs,
        threads=threads,
        attempts=races * procs * threads,
        winners=sum(per_token.values()),
        tokens_with_one_winner=sum(1 for n in per_token.values() if n == 1),
        tokens_won_twice=sum(1 for n in per_token.values() if n > 1),
        tokens_never_won=races - len(per_token),
        errors=sum(e for _, e in results),
        seconds=round(seconds, 3),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitRaceResult:
    ledger: str
    rounds: int
    procs: int
    threads: int
    attempts: int
    first_uses: int
    rounds_with_one_winner: int
    rounds_won_twice: int
    rounds_never_won: int
    outcomes: dict[str, int]
    errors: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rounds_with_one_winner == self.rounds and self.errors == 0


def _grant(seed: bytes, round_: int) -> bytes:
    """The round's grant digest: fresh per run and per round, the same in every process."""
    return hashlib.sha256(seed + round_.to_bytes(8, "big")).digest()


def _limit_thread_worker(
    ledger: Ledger, *, worker: int, rounds: int, seed: bytes, at: int,
    start: threading.Barrier, wins: list[int], outcomes: list[str], errors: list[int],
) -> None:
    for r in range(rounds):
        start.wait()  # the process's threads enter every round together
        limit = DailyLimit(_grant(seed, r), 1)
        token = b"limit" + r.to_bytes(8, "big") + worker.to_bytes(4, "big")
        try:
            outcome = ledger.spend(
                vehicle_of(r), token, at + 86_400, issued_at=at, at=at, limits=(limit,)
            )
        except Exception:  # noqa: BLE001 -- counted and reported: an error is never a win
            errors.append(r)
            continue
        # A list append is atomic; a Counter's += is a read and a write that
        # another thread can come between, losing a count.
        outcomes.append(outcome.value)
        if outcome is SpendOutcome.FIRST_USE:
            wins.append(r)


def _run_limit_process(
    kind: str, *, namespace: str, path: str, rounds: int, threads: int, first_worker: int,
    seed: bytes, at: int, barrier: ProcessBarrier | None, ledger: Ledger | None = None,
) -> tuple[list[int], dict[str, int], int]:
    if kind in ASYNC_KINDS + CLUSTER_ASYNC_KINDS and ledger is None:
        return _run_async_limit_process(
            kind, namespace=namespace, rounds=rounds, tasks=threads, first_worker=first_worker,
            seed=seed, at=at, barrier=barrier,
        )
    own = ledger is None
    ledger = ledger or open_ledger(kind, namespace=namespace, path=Path(path))
    wins: list[int] = []
    outcomes: list[str] = []
    errors: list[int] = []
    start = threading.Barrier(threads)

    def work(shared: Ledger, t: int) -> None:
        _limit_thread_worker(shared, worker=first_worker + t, rounds=rounds, seed=seed, at=at,
                             start=start, wins=wins, outcomes=outcomes, errors=errors)

    _run_threads(ledger, threads, barrier, work)
    if own:
        ledger.close()
    return wins, dict(Counter(outcomes)), len(errors)


def _run_async_limit_process(
    kind: str, *, namespace: str, rounds: int, tasks: int, first_worker: int, seed: bytes,
    at: int, barrier: ProcessBarrier | None,
) -> tuple[list[int], dict[str, int], int]:
    wins: list[int] = []
    outcomes: list[str] = []
    errors: list[int] = []
    start: list[asyncio.Barrier] = []  # made on the loop that waits on it

    async def work(ledger: AsyncLedger, t: int) -> None:
        if not start:
            start.append(asyncio.Barrier(tasks))
        for r in range(rounds):
            await start[0].wait()  # the loop's tasks enter every round together
            token = b"limit" + r.to_bytes(8, "big") + (first_worker + t).to_bytes(4, "big")
            try:
                outcome = await ledger.spend(
                    vehicle_of(r), token, at + 86_400, issued_at=at, at=at,
                    limits=(DailyLimit(_grant(seed, r), 1),),
                )
            except Exception:  # noqa: BLE001 -- counted and reported: an error is never a win
                errors.append(r)
                continue
            outcomes.append(outcome.value)
            if outcome is SpendOutcome.FIRST_USE:
                wins.append(r)

    _on_one_loop(kind, namespace, tasks, barrier, work)
    return wins, dict(Counter(outcomes)), len(errors)


def _limit_child(kind: str, options: dict[str, object], out: mp.SimpleQueue) -> None:  # type: ignore[type-arg]
    try:
        out.put(_run_limit_process(kind, **options))  # type: ignore[arg-type]
    except BaseException:
        out.put(([], {}, int(str(options["rounds"])) * int(str(options["threads"]))))
        raise


def run_limit_race(
    kind: str, *, rounds: int, procs: int = 1, threads: int = 8, path: Path | None = None,
    namespace: str | None = None, ledger: Ledger | None = None,
) -> LimitRaceResult:
    """Race ``procs x threads`` different tokens under one daily limit of 1, ``rounds`` times.

    ``ledger`` (one process only) races a ledger object made by the caller.
    """
    if kind == "memory" or ledger is not None:
        # One process (the object is not shared between processes), as many competitors.
        procs, threads = 1, procs * threads
    namespace = namespace or new_namespace()
    seed = secrets.token_bytes(16)
    at = int(time.time())  # one UTC day for the whole run: the limit never resets mid-run
    with tempfile.TemporaryDirectory() as tmp:
        db = str(path or Path(tmp) / "limit-race.db")
        if kind != "memory" and ledger is None:
            open_ledger(kind, namespace=namespace, path=Path(db)).close()  # create the schema
        started = time.perf_counter()
        results: list[tuple[list[int], dict[str, int], int]] = []
        options: dict[str, object] = {"namespace": namespace, "path": db, "rounds": rounds,
                                      "threads": threads, "seed": seed, "at": at}
        if procs == 1 and (kind == "memory" or ledger is not None):
            results.append(_run_limit_process(
                kind, **options, first_worker=0, barrier=None,  # type: ignore[arg-type]
                ledger=ledger or open_ledger("memory"),
            ))
        else:
            results = _in_processes(
                _limit_child, kind, procs, lambda p: options | {"first_worker": p * threads}
            )
        seconds = time.perf_counter() - started
        if kind in SERVER_ENV and ledger is None:
            drop_namespace(kind, namespace)
    per_round = Counter(r for wins, _, _ in results for r in wins)
    outcomes: Counter[str] = Counter()
    for _, counted, _ in results:
        outcomes.update(counted)
    return LimitRaceResult(
        ledger=kind,
        rounds=rounds,
        procs=procs,
        threads=threads,
        attempts=rounds * procs * threads,
        first_uses=sum(per_round.values()),
        rounds_with_one_winner=sum(1 for n in per_round.values() if n == 1),
        rounds_won_twice=sum(1 for n in per_round.values() if n > 1),
        rounds_never_won=rounds - len(per_round),
        outcomes=dict(sorted(outcomes.items())),
        errors=sum(e for _, _, e in results),
        seconds=round(seconds, 3),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # The replicated kinds read their address from REPLICATED_ENV (see
    # tools/faults/race_replicated.py, which starts the servers and sets it).
    parser.add_argument(
        "--ledger", choices=KINDS + ASYNC_KINDS + CLUSTER_ASYNC_KINDS + tuple(REPLICATED_ENV),
        required=True,
    )
    parser.add_argument("--races", "--rounds", dest="races", type=int, default=10_000,
                        help="tokens to race, or with --daily-limit rounds to run")
    parser.add_argument("--daily-limit", action="store_true",
                        help="race different tokens under one daily limit of 1 per round")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per process; for an async ledger, tasks on its one loop")
    parser.add_argument("--path", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    result: RaceResult | LimitRaceResult
    if args.daily_limit:
        result = run_limit_race(
            args.ledger, rounds=args.races, procs=args.procs, threads=args.threads,
            path=args.path,
        )
    else:
        result = run_race(
            args.ledger, races=args.races, procs=args.procs, threads=args.threads, path=args.path
        )
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
