"""Exactly one winner per race when processes x threads race on every ledger.

Two races: the same token presented by every worker at once (300 tokens per
ledger by default, ``TRUNKKEY_RACES=10000`` in CI), and different tokens
under one daily limit of 1 (100 rounds of 8 workers by default,
``TRUNKKEY_LIMIT_RACES=1000`` in CI). The memory ledger is raced by threads
of one process only: it is not shared between processes. The async Redis and
PostgreSQL ledgers are raced in the harness's async mode: two processes, each
one event loop with concurrent tasks (``TRUNKKEY_RACES`` of them too, at most
10,000, so CI's run stays bounded).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from test_ledger_contract import SERVER_KINDS, require_server
from tools.faults.ledgers import ASYNC_KINDS, KINDS
from tools.faults.race import _run_async_process, _run_process, run_limit_race, run_race
from trunkkey.ledger.base import DailyLimit, SpendOutcome, check_spend
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.sqlite import SqliteLedger

RACES = int(os.environ.get("TRUNKKEY_RACES", "300"))
LIMIT_RACES = int(os.environ.get("TRUNKKEY_LIMIT_RACES", "100"))
#: Each async race is 2 processes x 3 tasks awaiting one token: as many races
#: as the others get, bounded so that CI's 10,000 is also the most it runs.
ASYNC_RACES = min(RACES, 10_000)


@pytest.mark.parametrize("kind", KINDS + ASYNC_KINDS)
def test_exactly_one_winner_per_token(kind: str, tmp_path: Path) -> None:
    if kind in SERVER_KINDS:
        require_server(kind)
    races = ASYNC_RACES if kind in ASYNC_KINDS else RACES
    result = run_race(kind, races=races, procs=2, threads=3, path=tmp_path / "race.db")
    assert result.errors == 0
    assert result.tokens_won_twice == 0
    assert result.tokens_never_won == 0
    assert result.winners == races
    assert result.ok


class HasThenAddLedger(MemoryLedger):
    """The bug the protocol forbids: look, then write, with a gap between."""

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        seen = (vehicle_id, token_id) in self._spent
        time.sleep(0)  # let another thread in between the look and the write
        if seen:
            return False
        self._spent[(vehicle_id, token_id)] = keep_until
        return True


def test_the_harness_catches_a_racy_ledger() -> None:
    wins, errors = _run_process(
        "memory", namespace="unused", path="unused", races=300, threads=4,
        keep_until=2**40, barrier=None, ledger=HasThenAddLedger(),
    )
    assert errors == 0
    assert len(wins) > len(set(wins)), "a has-then-add ledger must lose some races"


class AsyncHasThenAddLedger:
    """The same bug in an async ledger: an await between the look and the write."""

    def __init__(self) -> None:
        self.spent: set[tuple[str, bytes]] = set()

    async def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        seen = (vehicle_id, token_id) in self.spent
        await asyncio.sleep(0)  # a round trip: other tasks run between the look and the write
        if seen:
            return False
        self.spent.add((vehicle_id, token_id))
        return True

    async def close(self) -> None:
        return None


def test_the_async_mode_catches_a_racy_async_ledger() -> None:
    async def opening() -> Any:
        return AsyncHasThenAddLedger()

    wins, errors = _run_async_process(
        "redis_async", namespace="unused", races=300, tasks=4, keep_until=2**40,
        barrier=None, opening=opening,
    )
    assert errors == 0
    assert len(wins) > len(set(wins)), "a has-then-add async ledger must lose some races"


def test_one_winner_when_threads_share_one_ledger_object(tmp_path: Path) -> None:
    # The same SqliteLedger object used by many threads at once.
    ledger = SqliteLedger(tmp_path / "shared.db")
    wins, errors = _run_process(
        "sqlite", namespace="unused", path="unused", races=200, threads=6,
        keep_until=2**40, barrier=None, ledger=ledger,
    )
    ledger.close()
    assert errors == 0
    assert sorted(wins) == list(range(200))


@pytest.mark.parametrize("kind", KINDS + ASYNC_KINDS)
def test_one_opening_per_day_under_a_limit_of_one(kind: str, tmp_path: Path) -> None:
    if kind in SERVER_KINDS:
        require_server(kind)
    result = run_limit_race(kind, rounds=LIMIT_RACES, procs=2, threads=4,
                            path=tmp_path / "limit.db")
    assert result.procs * result.threads == 8
    assert result.rounds_won_twice == 0, result
    assert result.errors == 0, result
    assert result.rounds_never_won == 0, result
    assert result.first_uses == LIMIT_RACES
    assert result.outcomes == {"first_use": LIMIT_RACES, "limit_reached": LIMIT_RACES * 7}
    assert result.ok


class CheckThenCountLedger(MemoryLedger):
    """The bug spend() forbids: read the counter, then record and count, with a gap between."""

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
        _, day = check_spend(vehicle_id, token_id, keep_until, issued_at, at, limits)
        counts = self._counts.setdefault(day, {})
        full = any(counts.get((vehicle_id, item.grant), 0) >= item.limit for item in limits)
        time.sleep(0)  # let another thread in between the look and the count
        if full:
            return SpendOutcome.LIMIT_REACHED
        if not self.consume(vehicle_id, token_id, keep_until):
            return SpendOutcome.ALREADY_USED
        for item in limits:
            counts[(vehicle_id, item.grant)] = counts.get((vehicle_id, item.grant), 0) + 1
        return SpendOutcome.FIRST_USE


def test_the_limit_race_catches_a_check_then_count_ledger() -> None:
    result = run_limit_race("memory", rounds=100, threads=8, ledger=CheckThenCountLedger())
    assert result.errors == 0
    assert result.rounds_won_twice > 0, "a check-then-count ledger must lose some rounds"
    assert not result.ok


def test_the_limit_race_passes_the_same_ledger_done_right() -> None:
    # The control for the test above: same harness, same shape, the real spend.
    result = run_limit_race("memory", rounds=100, threads=8, ledger=MemoryLedger())
    assert result.ok, result
