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
