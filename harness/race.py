"""Race P processes x T threads to consume the same tokens; exactly one may win each.

    python -m harness.race --ledger sqlite --races 10000 --procs 2 --threads 4

Every worker walks the same token ids in the same order, so for each token
all P x T workers arrive at nearly the same moment. The parent counts the
winners per token and exits non-zero unless every token had exactly one.

The memory ledger lives inside one process: it is raced by threads only
(``--procs`` is forced to 1 for it). The others are raced by processes, each
with its own ledger object on the shared file or server, and threads within.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path

from harness.ledgers import KINDS, SERVER_ENV, drop_namespace, new_namespace, open_ledger
from trunkkey.ledger.base import Ledger

VEHICLE = "race-car"


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
            if ledger.consume(VEHICLE, _token(i), keep_until):
                wins.append(i)
        except Exception:  # noqa: BLE001 -- counted and reported: an error is never a win
            errors.append(i)


def _run_process(
    kind: str, *, namespace: str, path: str, races: int, threads: int, keep_until: int,
    barrier: ProcessBarrier | None, ledger: Ledger | None = None,
) -> tuple[list[int], int]:
    # Switch threads as often as possible, so threads of one process really
    # interleave inside consume instead of taking turns by the GIL's 5 ms slice.
    sys.setswitchinterval(1e-6)
    own = ledger is None
    ledger = ledger or open_ledger(kind, namespace=namespace, path=Path(path))
    wins: list[int] = []
    errors: list[int] = []
    start = threading.Barrier(threads)
    workers = [
        threading.Thread(
            target=_thread_worker,
            args=(ledger,),
            kwargs={"races": races, "keep_until": keep_until, "start": start, "wins": wins,
                    "errors": errors},
        )
        for _ in range(threads)
    ]
    if barrier is not None:
        barrier.wait()  # every process is connected before anyone starts
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sys.setswitchinterval(0.005)
    if own:
        ledger.close()
    return wins, len(errors)


def _child(kind: str, options: dict[str, object], out: mp.SimpleQueue) -> None:  # type: ignore[type-arg]
    out.put(_run_process(kind, **options))  # type: ignore[arg-type]


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
            ctx = mp.get_context("spawn")  # no connection or lock is ever inherited by fork
            barrier = ctx.Barrier(procs)
            out = ctx.SimpleQueue()
            children = [
                ctx.Process(
                    target=_child,
                    args=(kind, {"namespace": namespace, "path": db, "races": races,
                                 "threads": threads, "keep_until": keep_until,
                                 "barrier": barrier}, out),
                )
                for _ in range(procs)
            ]
            for c in children:
                c.start()
            results = [out.get() for _ in children]
            for c in children:
                c.join()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", choices=KINDS, required=True)
    parser.add_argument("--races", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--path", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    result = run_race(
        args.ledger, races=args.races, procs=args.procs, threads=args.threads, path=args.path
    )
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
