"""A simulated month of deliveries: the ledger holds only tokens that could still be valid.

    python -m harness.growth --ledger sqlite --tokens 1000000 --days 30

Tokens are spread evenly over the month, each with a delivery window of up
to four hours, presented once somewhere inside it and spent with
``keep_until = expires + skew``, as the verifier does. The clock is
simulated (no sleeping); every ``--prune-every`` simulated seconds the ledger
is pruned. After every prune the ledger must hold exactly the
spent tokens whose keep_until has not passed — no fewer (that would reopen a
token), no more (that would be unbounded growth).

Redis is not simulated: it expires keys by its own real clock, which cannot
be advanced by a month; the contract test checks that each Redis key expires
exactly when ``prune`` would drop it elsewhere.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.ledgers import SERVER_ENV, drop_namespace, new_namespace, open_ledger

START = 1_800_000_000
SKEW = 60
MAX_WINDOW = 4 * 3600
DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class GrowthResult:
    ledger: str
    tokens: int
    days: int
    prunes: int
    max_held: int
    max_could_be_valid: int
    max_held_before_prune: int
    held_at_end: int
    mismatches: int
    file_bytes: int | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.max_held <= self.max_could_be_valid


def run_growth(
    kind: str, *, tokens: int, days: int = 30, prune_every: int = 3600,
    path: Path | None = None, seed: int = 7,
) -> GrowthResult:
    if kind == "redis":
        raise ValueError("Redis expires by its own clock; see the module docstring")
    rng = random.Random(seed)  # noqa: S311 -- simulated traffic, not secrets
    namespace = new_namespace()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        db = path or Path(tmp) / "growth.db"
        ledger = open_ledger(kind, namespace=namespace, path=db)
        span = days * DAY
        live: list[int] = []  # keep_until of every spent token not yet pruned (model)
        next_prune = START + prune_every
        prunes = mismatches = max_held = max_live = max_before = 0
        pending: list[tuple[int, int, int]] = []  # (presented, keep_until, n) in time order

        def present_until(now: int) -> None:
            nonlocal next_prune, prunes, mismatches, max_held, max_live, max_before
            while pending and pending[0][0] <= now:
                presented, keep_until, n = heapq.heappop(pending)
                while presented >= next_prune:
                    max_before = max(max_before, ledger.count())
                    ledger.prune(next_prune, limit=None)
                    while live and live[0] < next_prune:
                        heapq.heappop(live)
                    held = ledger.count()
                    prunes += 1
                    mismatches += held != len(live)
                    max_held = max(max_held, held)
                    max_live = max(max_live, len(live))
                    next_prune += prune_every
                if not ledger.consume("growth-car", n.to_bytes(8, "big"), keep_until):
                    mismatches += 1
                heapq.heappush(live, keep_until)

        for n in range(tokens):
            issued = START + n * span // tokens
            window = rng.randint(600, MAX_WINDOW)
            # Presented once, somewhere in its window; the simulated clock only
            # moves forward, so presentations are replayed in time order.
            heapq.heappush(pending, (issued + rng.randrange(window), issued + window + SKEW, n))
            present_until(issued)
        present_until(START + span + MAX_WINDOW)
        held_at_end = ledger.count()
        ledger.close()
        file_bytes = db.stat().st_size if kind == "sqlite" else None
        if kind in SERVER_ENV:
            drop_namespace(kind, namespace)
    return GrowthResult(
        ledger=kind,
        tokens=tokens,
        days=days,
        prunes=prunes,
        max_held=max_held,
        max_could_be_valid=max_live,
        max_held_before_prune=max_before,
        held_at_end=held_at_end,
        mismatches=mismatches,
        file_bytes=file_bytes,
        seconds=round(time.perf_counter() - started, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", choices=("memory", "sqlite", "postgres"), required=True)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--prune-every", type=int, default=3600, help="simulated seconds")
    parser.add_argument("--path", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args(argv)
    result = run_growth(
        args.ledger, tokens=args.tokens, days=args.days, prune_every=args.prune_every,
        path=args.path,
    )
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
