"""What the in-memory ledger promises beyond the common contract (tests/test_ledger_contract.py)."""

from __future__ import annotations

import pytest

from trunkkey import InvalidRequest, LedgerError, MemoryLedger


def test_memory_ledger_repr_counts_spent_tokens() -> None:
    ledger = MemoryLedger()
    assert repr(ledger) == "MemoryLedger(0 spent)"
    assert ledger.consume("V", b"t", 10) is True
    assert repr(ledger) == "MemoryLedger(1 spent)"


def test_a_memory_ledger_started_afresh_names_its_floor_and_refuses_consume() -> None:
    from trunkkey.ledger.memory import MemoryLedger

    ledger = MemoryLedger(start_floor=1_800_000_000)
    assert ledger.start_floor == 1_800_000_000
    assert MemoryLedger().start_floor == 0
    with pytest.raises(LedgerError, match=r"^this ledger was started afresh after a loss and "
                                          r"cannot check a token's issue time in consume\(\); "
                                          r"use spend\(\)$"):
        ledger.consume("car", b"t", 1_800_000_100)
    # The longest vehicle id a key may have is accepted, one byte more is not.
    assert MemoryLedger().consume("v" * 64, b"t", 1) is True
    with pytest.raises(InvalidRequest):
        MemoryLedger().consume("v" * 65, b"t", 1)
