"""Tests written to kill mutants that survived ``scripts/mutation.py``.

Each pins an exact boundary or message that the broader suites left loose:
a mutant that moves a boundary by one, or changes which error is raised,
must fail here. See docs/mutation-testing.md for the scores and the
survivors judged equivalent.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import NoReturn

import pytest

from support import NOW, VEHICLE, make_world
from trunkkey import (
    Algorithm,
    Decision,
    DecodeError,
    Geofence,
    InvalidRequest,
    Issuer,
    LedgerError,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SignatureError,
    SigningKey,
    SqliteLedger,
    TrustedKey,
    TrustStore,
    Typ,
    Verifier,
    VerifierPolicy,
    cbor,
    make_proof,
)
from trunkkey.claims import (
    TokenClaims,
    _decode_claims_generic,
    _decode_common_shape,
    decode_claims,
    encode_claims,
)
from trunkkey.cose import parse_sign1, sig_structure, sign1, to_be_signed, verify_sign1
from trunkkey.proof import check_proof

# -- cbor ---------------------------------------------------------------------------


# -- proof ----------------------------------------------------------------------------


# -- ledgers ----------------------------------------------------------------------------


def test_memory_ledger_repr_counts_spent_tokens() -> None:
    ledger = MemoryLedger()
    assert repr(ledger) == "MemoryLedger(0 spent)"
    assert ledger.consume("V", b"t", 10) is True
    assert repr(ledger) == "MemoryLedger(1 spent)"


def test_sqlite_ledger_errors_say_what_failed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    assert repr(ledger) == f"SqliteLedger({str(path)!r})"
    # Someone drops the table behind the ledger's back: every operation fails closed.
    other = sqlite3.connect(path)
    other.execute("DROP TABLE spent")
    other.commit()
    other.close()
    with pytest.raises(LedgerError, match=r"^ledger write failed: no such table: spent$"):
        ledger.consume("V", b"t", 10)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10, limit=5)
    with pytest.raises(LedgerError, match=r"^ledger read failed: no such table: spent$"):
        ledger.count()
    ledger.close()
    with pytest.raises(LedgerError, match=r"^ledger is closed$"):
        ledger.consume("V", b"t", 10)


def test_sqlite_ledger_refuses_what_it_cannot_make_durable(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"^cannot put :memory: in WAL mode: a ledger needs"):
        SqliteLedger(":memory:")
    with pytest.raises(LedgerError, match=r"^cannot put an empty path in WAL mode"):
        SqliteLedger("")
    assert not (Path.cwd() / ":memory:").exists()
    with pytest.raises(LedgerError, match=r"^cannot open ledger .*: unable to open database file$"):
        SqliteLedger(tmp_path / "no-such-dir" / "l.db")


# -- verifier ---------------------------------------------------------------------------


# -- cose --------------------------------------------------------------------------------


# -- claims ------------------------------------------------------------------------------


# -- verifier: every denial's detail, exactly ---------------------------------------------


# -- consent chain ------------------------------------------------------------------------


def test_grant_window_edges_with_the_skew_are_exact() -> None:
    from trunkkey.consent.story import START, build_world

    skew = 60
    carrier_nbf, carrier_exp = START - 3600, START + 7 * 86_400

    def at(now: int, window: tuple[int, int]) -> Reason:
        cw = build_world()
        if now < START:
            cw.clock.advance(now - START)
        token = cw.token(not_before=window[0], expires=window[1])  # minted before it ends
        if now > START:
            cw.clock.advance(now - START)
        return cw.present(token, cw.chain).reason

    first = (carrier_nbf, carrier_nbf + 600)
    last = (carrier_exp - 600, carrier_exp)
    assert at(carrier_nbf - skew - 1, first) is Reason.GRANT_NOT_YET_VALID
    assert at(carrier_nbf - skew, first) is Reason.ALLOWED
    assert at(carrier_exp + skew - 1, last) is Reason.ALLOWED
    assert at(carrier_exp + skew, last) is Reason.GRANT_EXPIRED


# -- cose: the strict envelope's refusals, exactly -------------------------------------------
