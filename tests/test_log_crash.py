"""SIGKILL the vehicle unit mid-delivery: no opening without its durable log
entry, and no entry the car vouched for lost after a restart.

``TRUNKKEY_LOG_CRASH_ROUNDS`` raises the number of kills (default 30).
"""

from __future__ import annotations

import os

from tools.faults.logcrash import run_log_crash

ROUNDS = int(os.environ.get("TRUNKKEY_LOG_CRASH_ROUNDS", "30"))


def test_a_killed_unit_never_opens_without_its_entry_nor_loses_one() -> None:
    result = run_log_crash(ROUNDS, seed=7)
    assert result.openings_without_entry == 0
    assert result.checkpoints_not_in_log == 0
    # The run did real work: the trunk opened, checkpoints were reported across kills.
    assert result.openings > 0
    assert result.checkpoints > 0
    assert result.final_size > result.openings
