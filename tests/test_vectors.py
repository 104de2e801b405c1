"""``docs/test-vectors.json``: replayed through the real verifier, complete and fresh.

The file is trunkkey's promise to other implementations, so three things are
checked: every vector gives its expected reason through :class:`Verifier`
(with both ledgers), every reason code is covered or explicitly excused, and
the checked-in file is byte for byte what ``python -m tools.gen.vectors``
writes today — so it cannot silently drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tools.gen import vectors
from trunkkey import (
    Algorithm,
    CarKemKey,
    CarKeyring,
    LedgerError,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SqliteLedger,
    TrustedKey,
    TrustStore,
    VerificationKey,
    Verifier,
    VerifierPolicy,
    cbor,
)
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.verifier import MAX_ALLOWED_SKEW

ROOT = Path(__file__).resolve().parents[1]
VECTORS_FILE = ROOT / "docs" / "test-vectors.json"
DATA: dict[str, Any] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))

#: Reasons decided before the signature is checked: such a denial must never
#: carry claims, because nothing in the token has been authenticated yet.
UNAUTHENTICATED = {
    Reason.CANNOT_OPEN, Reason.TOO_LARGE, Reason.WRONG_TYPE, Reason.UNSUPPORTED_HEADER,
    Reason.UNKNOWN_KEY, Reason.KEY_NOT_VALID, Reason.ALG_MISMATCH, Reason.BAD_SIGNATURE,
}
#: Reasons decided after the signature: the decision names the authentic token.
AUTHENTICATED = {
    Reason.ALLOWED, Reason.WRONG_ISSUER, Reason.WRONG_VEHICLE, Reason.WRONG_ACTION,
    Reason.WRONG_PURPOSE, Reason.LIFETIME_TOO_LONG, Reason.NOT_YET_VALID, Reason.EXPIRED,
    Reason.LOCATION_UNKNOWN, Reason.OUTSIDE_GEOFENCE, Reason.PROOF_MISSING,
    Reason.PROOF_INVALID, Reason.ALREADY_USED, Reason.LEDGER_UNAVAILABLE,
    Reason.PARCEL_MISSING, Reason.WRONG_PARCEL,
}


class FailingLedger:
    """A ledger whose storage is gone: every call raises, as a dead disk would."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, bytes, int]] = []

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        self.attempts.append((vehicle_id, token_id, keep_until))
        raise LedgerError("injected fault: ledger storage unavailable")

    def spend(
        self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int, at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        self.attempts.append((vehicle_id, token_id, keep_until))
        raise LedgerError("injected fault: ledger storage unavailable")

    def prune(self, now: int, *, limit: int | None = None) -> int:
        raise LedgerError("injected fault: ledger storage unavailable")

    def count(self) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""


def _trust_store(vector: dict[str, Any]) -> TrustStore:
    return TrustStore(
        TrustedKey.create(
            VerificationKey.from_cose_key(bytes.fromhex(entry["cose_key"])),
            entry["issuer"],
            not_before=entry["not_before"],
            not_after=entry["not_after"],
        )
        for entry in vector["trusted_keys"]
    )


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


LedgerFactory = Callable[[Path], Any]
LEDGERS: dict[str, LedgerFactory] = {
    "memory": lambda _tmp: MemoryLedger(),
    "sqlite": lambda tmp: SqliteLedger(tmp / "ledger.db"),
}


def _car_keys(vector: dict[str, Any]) -> CarKeyring | None:
    keys = vector.get("car_keys")
    return CarKeyring(CarKemKey(bytes.fromhex(k)) for k in keys) if keys else None


def _cases() -> list[Any]:
    cases = []
    for vector in DATA["vectors"]:
        kinds = ["failing"] if vector["context"]["ledger"] == "failing" else list(LEDGERS)
        cases.extend(
            pytest.param(vector, kind, id=f"{vector['name']}-{kind}") for kind in kinds
        )
    return cases


@pytest.mark.parametrize(("vector", "ledger_kind"), _cases())
def test_vector_replays_to_its_reason(
    vector: dict[str, Any], ledger_kind: str, tmp_path: Path
) -> None:
    ctx = vector["context"]
    expected = Reason(vector["reason"])
    ledger: Any
    if ledger_kind == "failing":
        ledger = FailingLedger()
    else:
        ledger = LEDGERS[ledger_kind](tmp_path)
        for spent in ctx["ledger"]["spent"]:
            assert ledger.consume(spent["vehicle_id"], bytes.fromhex(spent["token_id"]),
                                  ctx["now"] + 10**6)
    seeded = ledger.count()
    verifier = Verifier(
        trust_store=_trust_store(vector),
        ledger=ledger,
        clock=ManualClock(ctx["now"]),
        policy=VerifierPolicy(**DATA["policy"]),
        car_keys=_car_keys(vector),
    )
    token = bytes.fromhex(vector["token"])
    location = None if ctx["location"] is None else Location(**ctx["location"])
    decisions = [
        verifier.verify(
            token,
            vehicle_id=ctx["vehicle_id"],
            action=ctx["action"],
            purpose=ctx["purpose"],
            location=location,
            proof=_hex(ctx["proof"]),
            challenge=_hex(ctx["challenge"]),
        )
        for _ in range(ctx["presentations"])
    ]
    try:
        assert [d.reason for d in decisions[:-1]] == [Reason.ALLOWED] * (len(decisions) - 1)
        final = decisions[-1]
        assert final.reason is expected, final.detail
        assert final.at == ctx["now"]
        if expected in UNAUTHENTICATED:
            assert final.claims is None
        if expected in AUTHENTICATED:
            assert final.claims is not None
            assert final.claims.issuer == vector["trusted_keys"][0]["issuer"] or (
                expected is Reason.WRONG_ISSUER
            )
        # The ledger is written only when every other check passed.
        allowed = sum(d.allowed for d in decisions)
        assert ledger.count() == seeded + allowed
        if ledger_kind == "failing":
            # It was asked to keep the token until it could no longer be valid.
            claims = final.claims
            assert claims is not None
            assert ledger.attempts == [(
                claims.vehicle_id, claims.token_id, claims.expires + MAX_ALLOWED_SKEW
            )]
    finally:
        ledger.close()


def test_every_reason_is_covered_or_excused() -> None:
    covered = {v["reason"] for v in DATA["vectors"]}
    excused = set(DATA["not_covered"])
    every = {r.value for r in Reason}
    assert covered | excused == every, {
        "neither covered nor excused": sorted(every - covered - excused),
        "not a Reason": sorted((covered | excused) - every),
    }
    assert not covered & excused, "a covered reason is also listed as not covered"
    assert all(DATA["not_covered"][r].strip() for r in excused)
    assert DATA["reasons"] == [r.value for r in Reason]


def test_vector_names_are_unique_and_described() -> None:
    names = [v["name"] for v in DATA["vectors"]]
    assert len(names) == len(set(names))
    assert all(v["description"] for v in DATA["vectors"])


def test_file_is_what_the_script_writes_now() -> None:
    generator = vectors
    fresh = generator.render(generator.build())
    assert VECTORS_FILE.read_text(encoding="utf-8") == fresh, (
        "docs/test-vectors.json is stale: run `python -m tools.gen.vectors`"
    )


def test_script_check_mode_reports_staleness(tmp_path: Path) -> None:
    generator = vectors
    target = tmp_path / "vectors.json"
    assert generator.main(["--output", str(target), "--check"]) == 1
    assert generator.main(["--output", str(target)]) == 0
    assert generator.main(["--output", str(target), "--check"]) == 0
    assert target.read_text(encoding="utf-8") == VECTORS_FILE.read_text(encoding="utf-8")


@pytest.mark.parametrize("vector", DATA["root_signed"], ids=lambda v: v["name"])
def test_root_signed_vector_is_accepted_or_refused_as_stated(vector: dict[str, Any]) -> None:
    from trunkkey import SigningKey
    from trunkkey.consent import RootKey, UpdateRefused, VehicleAnchors
    from trunkkey.consent.anchors import open_root_signed
    from trunkkey.cose import Typ

    root = VerificationKey.from_cose_key(bytes.fromhex(vector["root_cose_key"]))
    anchors = VehicleAnchors(vehicle_id="VIN-1", vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root)])
    signed = bytes.fromhex(vector["signed"])
    typ = Typ[vector["typ"]]
    if vector["reason"] is None:
        assert open_root_signed(signed, anchors, typ=typ, now=vector["now"])
        return
    with pytest.raises(UpdateRefused) as refused:
        open_root_signed(signed, anchors, typ=typ, now=vector["now"])
    assert refused.value.reason is Reason(vector["reason"])


def test_the_post_quantum_vectors_are_there() -> None:
    names = {v["name"] for v in DATA["vectors"]}
    assert {"allowed_mldsa44", "bad_signature_mldsa44", "bad_signature_mldsa44_short"} <= names
    assert any(v["reason"] is None for v in DATA["root_signed"])
    assert {v["reason"] for v in DATA["root_signed"]} >= {
        "bad_signature", "malformed", "alg_mismatch", "unknown_key"}
    # Both composites: an ES256 + ML-DSA-65 root too, whose root grant and update a car
    # accepts, and whose high-s or other-composite signatures it refuses.
    roots = {cbor.decode(bytes.fromhex(v["root_cose_key"]))[3] for v in DATA["root_signed"]}
    assert roots == {int(Algorithm.EDDSA_MLDSA65), int(Algorithm.ES256_MLDSA65)}
    names = {v["name"] for v in DATA["root_signed"]}
    assert {"p256_hybrid_root_grant_accepted", "p256_hybrid_update_high_s",
            "p256_hybrid_update_signed_by_eddsa_composite"} <= names
