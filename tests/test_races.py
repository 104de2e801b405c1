"""Exactly one winner per token when processes x threads race on every ledger.

The default run races 300 tokens per ledger; ``TRUNKKEY_RACES=10000`` (as CI
sets it) raises the count. The memory ledger is raced by threads of one
process only: it is not shared between processes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.ledgers import KINDS
from harness.race import _run_process, run_race

from test_ledger_contract import SERVER_KINDS, require_server
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.sqlite import SqliteLedger

RACES = int(os.environ.get("TRUNKKEY_RACES", "300"))


@pytest.mark.parametrize("kind", KINDS)
def test_exactly_one_winner_per_token(kind: str, tmp_path: Path) -> None:
    if kind in SERVER_KINDS:
        require_server(kind)
    result = run_race(kind, races=RACES, procs=2, threads=3, path=tmp_path / "race.db")
    assert result.errors == 0
    assert result.tokens_won_twice == 0
    assert result.tokens_never_won == 0
    assert result.winners == RACES
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
