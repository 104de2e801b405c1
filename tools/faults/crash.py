"""SIGKILL a verifier process at random moments; no acknowledged consume may be lost.

    python -m tools.faults.crash --rounds 200
    python -m tools.faults.crash --rounds 200 --group --threads 8   # group commit

Each round forks a child that opens the SQLite ledger file and consumes a
stream of tokens — new ones, the last ones of the previous round again, and
random old ones — reporting each token it accepted to the parent over a pipe
*after* ``consume`` returned True (that report is the acknowledgement: the
moment a real verifier would open the trunk). The parent SIGKILLs the child
at a random moment (while it opens the file, recovers the WAL, commits, or
writes a report), collects every report that reached the pipe, and starts
the next round. It fails if

* a token reported accepted is ever reported accepted again, or
* at the end, a token reported accepted is not in the ledger.

A SIGKILL is not a power cut: it loses what the process held in memory, not
what the kernel held in its page cache. What this shows, and what rests on
SQLite's documented guarantee and the disk's fsync, is in docs/ledgers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.ledger.sqlite_group import GroupCommitSqliteLedger

VEHICLE = "crash-car"
KEEP_UNTIL = 2**40
#: How many of the previous round's newest tokens each round presents again.
OVERLAP = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class CrashResult:
    rounds: int
    kills: int
    accepted_reports: int
    replays_refused: int
    double_acceptances: int
    missing_from_ledger: int
    held_in_ledger: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.double_acceptances == 0 and self.missing_from_ledger == 0


def _token(i: int) -> bytes:
    return b"crash" + i.to_bytes(8, "big")


def _child(path: Path, start: int, seed: int, out_fd: int, *, group: bool, threads: int) -> None:
    """Consume forever; report b'A<i>' after an acceptance, b'R<i>' after a refusal."""
    rng = random.Random(seed)  # noqa: S311 -- picks replays, not secrets
    ledger = GroupCommitSqliteLedger(path) if group else SqliteLedger(path)
    lock = threading.Lock()
    cursor = [start]

    def next_token() -> int:
        with lock:
            i = cursor[0]
            # Mostly the stream's next token; now and then a random old one again.
            if i and rng.random() < 0.2:
                return rng.randrange(0, i)
            cursor[0] = i + 1
            return i

    def worker() -> None:
        while True:
            j = next_token()
            accepted = ledger.consume(VEHICLE, _token(j), KEEP_UNTIL)
            # One write() of a few bytes to a pipe is atomic: a report arrives whole or not at all.
            os.write(out_fd, b"%s%d\n" % (b"A" if accepted else b"R", j))

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads - 1)]
    for t in pool:
        t.start()
    worker()


def _run_round(
    path: Path, start: int, rng: random.Random, *, group: bool, threads: int
) -> list[bytes]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            _child(path, start, rng.randrange(2**32), write_fd, group=group, threads=threads)
        except BaseException:  # noqa: BLE001 -- the child must never return into the caller
            code = 1
        os._exit(code)
    os.close(write_fd)
    # A random moment: from "still opening the file" to "hundreds of commits in".
    deadline = time.monotonic() + rng.choice([0.0, 0.001, 0.005, rng.uniform(0, 0.08)])
    data = bytearray()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 65536):  # reports written before the kill are in the pipe
        data += chunk
    os.close(read_fd)
    lines = bytes(data).split(b"\n")
    return [line for line in lines if line]


def run_crash(
    rounds: int, *, path: Path | None = None, seed: int | None = None, group: bool = False,
    threads: int = 1,
) -> CrashResult:
    rng = random.Random(seed)  # noqa: S311 -- picks kill moments and replays, not secrets
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        db = path or Path(tmp) / "crash.db"
        accepted: set[int] = set()
        doubles = refused = reports = 0
        next_new = 0
        for _ in range(rounds):
            start = max(0, next_new - OVERLAP)
            for line in _run_round(db, start, rng, group=group, threads=threads):
                kind, index = line[:1], int(line[1:])
                next_new = max(next_new, index + 1)
                if kind == b"A":
                    reports += 1
                    if index in accepted:
                        doubles += 1
                    accepted.add(index)
                else:
                    refused += 1
        ledger = SqliteLedger(db)
        missing = sum(1 for i in accepted if ledger.consume(VEHICLE, _token(i), KEEP_UNTIL))
        held = ledger.count()
        ledger.close()
    return CrashResult(
        rounds=rounds,
        kills=rounds,
        accepted_reports=reports,
        replays_refused=refused,
        double_acceptances=doubles,
        missing_from_ledger=missing,
        held_in_ledger=held,
        seconds=round(time.perf_counter() - started, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--path", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--group", action="store_true", help="use GroupCommitSqliteLedger")
    parser.add_argument("--threads", type=int, default=1, help="consuming threads in the child")
    args = parser.parse_args(argv)
    result = run_crash(
        args.rounds, path=args.path, seed=args.seed, group=args.group, threads=args.threads
    )
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
