"""Timing helpers: interleaved rounds, best round wins.

On a shared 2-core machine a neighbour can take a core away for a while. Each
measurement therefore runs as several short rounds, the rounds of *all*
measurements are interleaved, and each keeps its best round: a slow spell
then costs every figure a round, rather than skewing one ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One measurement: ``run(n)`` does ``n`` operations; timed from outside."""

    run: Callable[[int], object]
    batch: int


def rate(run: Callable[[int], object], batch: int) -> float:
    start = time.perf_counter()
    run(batch)
    return batch / (time.perf_counter() - start)


def best_of_rounds(cases: dict[str, Case], rounds: int) -> dict[str, float]:
    """Operations per second for each case: the best of ``rounds`` interleaved rounds."""
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for name, case in cases.items():
            best[name] = max(best[name], rate(case.run, case.batch))
    return best


def repeat(fn: Callable[[], object]) -> Callable[[int], None]:
    """``n`` calls of ``fn``: for operations that need no fresh input."""

    def run(n: int) -> None:
        for _ in range(n):
            fn()

    return run


def consume(items: Iterator[T], fn: Callable[[T], object]) -> Callable[[int], None]:
    """``n`` calls of ``fn``, each on the next pre-made item (a token used once)."""

    def run(n: int) -> None:
        for _ in range(n):
            fn(next(items))

    return run


def signatures_stubbed(run: Callable[[int], object]) -> Callable[[int], None]:
    """``run`` with every signature check answering "valid" at once.

    Only for measuring trunkkey's own work per operation in place, with the
    same tokens, ledger and call path: the time left is everything but
    libsodium. The real check is restored before this returns.
    """
    from trunkkey.keys import VerificationKey

    real = VerificationKey._check_signature

    def stub(*_: object, **__: object) -> bool:
        return True

    def stubbed(n: int) -> None:
        VerificationKey._check_signature = stub  # type: ignore[method-assign]
        try:
            run(n)
        finally:
            VerificationKey._check_signature = real  # type: ignore[method-assign]

    return stubbed
