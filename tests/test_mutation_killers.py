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


def test_verifier_policy_is_frozen_slotted_and_keyword_only() -> None:
    policy = VerifierPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_skew = 300  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    with pytest.raises(TypeError):
        VerifierPolicy(60)  # type: ignore[misc]


def test_verifier_policy_refusals_say_why() -> None:
    with pytest.raises(InvalidRequest, match=r"^max_skew must be 0 to 300 seconds$"):
        VerifierPolicy(max_skew=301)
    positive = r"^max_lifetime must be a positive number of seconds$"
    with pytest.raises(InvalidRequest, match=positive):
        VerifierPolicy(max_lifetime=0)
    with pytest.raises(InvalidRequest, match=r"^max_token_size must be 64 to 65536 bytes$"):
        VerifierPolicy(max_token_size=63)
    assert VerifierPolicy(max_lifetime=1).max_lifetime == 1


def test_decision_is_frozen_slotted_and_keyword_only() -> None:
    world = make_world()
    decision = world.verifier.verify(world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert decision.allowed
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reason = Reason.EXPIRED  # type: ignore[misc]
    assert not hasattr(decision, "__dict__")
    assert dataclasses.fields(decision)
    assert all(f.kw_only for f in dataclasses.fields(decision))


# -- cose --------------------------------------------------------------------------------


def test_verifier_caller_mistakes_say_why() -> None:
    world = make_world()
    token = world.mint()
    decision = world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
    with pytest.raises(TypeError, match=r"^Decisions are made by a Verifier, not constructed$"):
        Decision(reason=Reason.ALLOWED, detail="", at=0)
    with pytest.raises(TypeError, match=r"^test decision\.allowed, not the decision itself$"):
        bool(decision)
    v = world.verifier
    cases: list[tuple[dict[str, object], str]] = [
        ({"vehicle_id": ""}, r"^vehicle_id must be a non-empty string$"),
        ({"action": "fly"}, r"^unknown action or purpose$"),
        ({"purpose": "joyride"}, r"^unknown action or purpose$"),
        ({"location": (48.1, 11.5)}, r"^location must be a trunkkey\.Location$"),
        ({"now": 1.5}, r"^now must be an int of Unix seconds$"),
    ]
    for change, message in cases:
        args: dict[str, object] = {"now": NOW, "vehicle_id": VEHICLE, "action": "trunk"}
        args.update(change)
        with pytest.raises(InvalidRequest, match=message):
            v.verify_at(token, **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^trust_store must be a trunkkey\.TrustStore$"):
        Verifier(trust_store=[], ledger=MemoryLedger(), clock=world.clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest,
                       match=r"^consent must be a trunkkey\.consent\.ConsentVerifier$"):
        Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                 consent=object())  # type: ignore[arg-type]


# -- claims ------------------------------------------------------------------------------


# -- verifier: every denial's detail, exactly ---------------------------------------------


def _forge(key: SigningKey, header: dict[int, object], payload: bytes) -> bytes:
    prot = cbor.encode(header)
    sig = key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
            + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)


class _FailingLedger(MemoryLedger):
    def spend(self, *args: object, **kwargs: object) -> NoReturn:
        raise OSError("disk gone")


def test_every_denial_detail_is_exact() -> None:
    world = make_world()
    key, kid, v = world.key, world.key.kid, world.verifier
    header = {1: -8, 4: kid, 16: int(Typ.TOKEN)}
    base = world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                                   expires=NOW + 3600)

    def forged(**changes: object) -> bytes:
        return _forge(key, header, encode_claims(dataclasses.replace(base, **changes)))

    def detail(token: object, **context: object) -> tuple[Reason, str]:
        args: dict[str, object] = {"now": NOW, "vehicle_id": VEHICLE, "action": "trunk"}
        args.update(context)
        fresh = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock)
        d = fresh.verify_at(token, **args)  # type: ignore[arg-type]
        return d.reason, d.detail

    device = SigningKey.generate()
    fence = Geofence(lat_e7=0, lon_e7=0, radius_m=100)
    bound = world.mint(courier_key=device.public_key)
    fenced = world.mint(geofence=fence)
    stranger = SigningKey.generate()
    assert detail("x") == (Reason.MALFORMED, "token must be bytes")
    assert detail(b"\xd2" * 1025) == (Reason.TOO_LARGE, "1025 bytes > cap of 1024")
    assert detail(_forge(key, {1: -8, 2: [1], 4: kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.UNSUPPORTED_HEADER, "protected header refused")
    assert detail(_forge(key, {1: -8, 4: kid, 16: 1}, b"\xa0")) == (
        Reason.WRONG_TYPE, "typ 1 is not a trunkkey token")
    assert detail(_forge(key, {1: -8, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.MALFORMED, "token has no kid")
    assert detail(_forge(stranger, {1: -8, 4: stranger.kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.UNKNOWN_KEY, f"no trusted key {stranger.kid.hex()}")
    assert detail(_forge(key, {1: -7, 4: kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.ALG_MISMATCH, "alg -7 is not the key's EdDSA")
    long_typ = b"\xa3\x01\x27\x04\x48" + kid + b"\x10\x1a\x00\x00\xff\x15"
    sig = key.sign(sig_structure(long_typ, b"\xa0"))
    assert detail(b"\xd2\x84" + cbor.head(2, len(long_typ)) + long_typ + b"\xa0\x41\xa0\x58\x40"
                  + sig) == (Reason.MALFORMED, "protected header refused")
    tampered = bytearray(world.mint())
    tampered[-1] ^= 1
    assert detail(bytes(tampered)) == (Reason.BAD_SIGNATURE, "signature does not verify")
    assert detail(_forge(key, header, b"\xa0")) == (
        Reason.MALFORMED, "claims: missing claims: [-65537, 1, 3, 4, 5, 6, 7]")
    assert detail(forged(expires=NOW)) == (Reason.MALFORMED, "window is empty or inverted")
    assert detail(forged(expires=NOW - 1))[1] == "window is empty or inverted"
    assert detail(forged(issuer="someone")) == (
        Reason.WRONG_ISSUER, "iss does not match the signing key")
    assert detail(world.mint(), vehicle_id="OTHER") == (
        Reason.WRONG_VEHICLE, "token is for another vehicle")
    assert detail(world.mint(), action="unlock-relock") == (
        Reason.WRONG_ACTION, "token grants trunk, not unlock-relock")
    assert detail(world.mint(), purpose="return-pickup") == (
        Reason.WRONG_PURPOSE, "token is for delivery, not return-pickup")
    assert detail(forged(expires=NOW + 86401)) == (
        Reason.LIFETIME_TOO_LONG, "window of 86401 s exceeds 86400 s")
    assert detail(world.mint(), now=NOW - 61) == (Reason.NOT_YET_VALID, "window has not started")
    assert detail(world.mint(), now=NOW + 4 * 3600 + 60) == (Reason.EXPIRED, "window has ended")
    assert detail(fenced) == (Reason.LOCATION_UNKNOWN, "token has a geofence; position unknown")
    assert detail(fenced, location=Location(lat_e7=10**6, lon_e7=0)) == (
        Reason.OUTSIDE_GEOFENCE, "vehicle is outside the geofence")
    assert detail(bound) == (Reason.PROOF_MISSING, "token is bound to a device; no proof given")
    assert detail(bound, proof=b"p") == (
        Reason.PROOF_INVALID, "no challenge was issued for this proof")
    failing = Verifier(trust_store=world.store, ledger=_FailingLedger(), clock=world.clock)
    d = failing.verify_at(world.mint(), now=NOW, vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.LEDGER_UNAVAILABLE, "ledger failed: OSError")
    token = world.mint()
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").detail == "all checks passed"
    again = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (again.reason, again.detail) == (Reason.ALREADY_USED, "token was already used")
    no_consent = v.verify(token, vehicle_id=VEHICLE, action="trunk", chain=b"\x80")
    assert (no_consent.reason, no_consent.detail) == (
        Reason.CHAIN_INVALID, "verifier holds no consent anchors")


def test_key_validity_and_unexpected_errors_have_exact_details() -> None:
    clock = ManualClock(NOW)
    key = SigningKey.generate()
    store = TrustStore([TrustedKey.create(key.public_key, "shop", not_after=NOW - 1)])
    token = Issuer(key, "shop", clock=clock).mint(vehicle_id=VEHICLE, action="trunk",
                                                  not_before=NOW, expires=NOW + 60)
    v = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    d = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.KEY_NOT_VALID, "signing key outside its validity period")


def test_verifier_exposes_its_policy_and_trust_store() -> None:
    world = make_world()
    policy = VerifierPolicy(max_skew=10)
    v = Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock, policy=policy)
    assert v.policy is policy
    assert v.trust_store is world.store
    assert repr(v) == f"Verifier({world.store!r}, {world.ledger!r}, {policy!r})"


def test_faults_inside_the_consent_verifier_fail_closed_with_exact_details() -> None:
    from trunkkey.consent import ConsentVerifier
    from trunkkey.consent.story import build_world

    class Exploding(ConsentVerifier):
        def resolve(self, *args: object, **kwargs: object) -> NoReturn:
            raise RuntimeError("boom")

    cw = build_world()
    token, chain = cw.token(), cw.chain
    for cls, reason, text in (
        (Exploding, Reason.MALFORMED, "unexpected error while checking: RuntimeError"),
    ):
        consent = cls(anchors=cw.anchors, revocations=cw.revocations)
        for use_verify_at in (False, True):
            v = Verifier(trust_store=TrustStore(), ledger=MemoryLedger(), clock=cw.clock,
                         consent=consent)
            challenge = bytes(16)
            proof = make_proof(cw.courier, token=token, vehicle_id=cw_vehicle(),
                               challenge=challenge)
            args: dict[str, object] = {
                "vehicle_id": cw_vehicle(), "action": "trunk", "chain": chain,
                "location": Location(lat_e7=cw_home().lat_e7, lon_e7=cw_home().lon_e7),
                "proof": proof, "challenge": challenge,
            }
            d = (v.verify_at(token, now=cw.clock.now(), **args)  # type: ignore[arg-type]
                 if use_verify_at else v.verify(token, **args))  # type: ignore[arg-type]
            assert (d.reason, d.detail) == (reason, text)


def cw_vehicle() -> str:
    from trunkkey.consent.story import VEHICLE as STORY_VEHICLE

    return STORY_VEHICLE


def cw_home() -> Geofence:
    from trunkkey.consent.story import HOME

    return HOME


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
