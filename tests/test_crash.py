"""SIGKILL during a stream of SQLite consumes: nothing acknowledged is lost or reopened.

``TRUNKKEY_CRASH_ROUNDS`` raises the number of kills (default 40).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.faults.crash import run_crash

ROUNDS = int(os.environ.get("TRUNKKEY_CRASH_ROUNDS", "40"))


@pytest.mark.parametrize(
    ("seed", "group", "threads"),
    [(1, False, 1), (2, False, 4), (3, True, 8)],
    ids=["sqlite-1-thread", "sqlite-4-threads", "group-commit-8-threads"],
)
def test_killed_verifier_never_loses_or_repeats_an_acceptance(
    seed: int, group: bool, threads: int, tmp_path: Path
) -> None:
    result = run_crash(
        ROUNDS, path=tmp_path / "crash.db", seed=seed, group=group, threads=threads
    )
    assert result.double_acceptances == 0
    assert result.missing_from_ledger == 0
    # The run did real work: tokens were accepted, and replays were refused.
    assert result.accepted_reports > ROUNDS
    assert result.replays_refused > 0
    assert result.held_in_ledger >= result.accepted_reports
