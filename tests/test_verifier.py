"""The verifier: every reason code, in the documented order, from real tokens."""

from __future__ import annotations

import dataclasses
from typing import NoReturn

import pytest

from support import ISSUER, NOW, VEHICLE, World, make_world
from trunkkey import (
    AccessDenied,
    Action,
    Algorithm,
    Decision,
    Geofence,
    InvalidRequest,
    Issuer,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    Typ,
    Verifier,
    VerifierPolicy,
    cbor,
    make_proof,
)
from trunkkey.claims import encode_claims
from trunkkey.cose import parse_sign1, sig_structure, sign1
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.verifier import MAX_ALLOWED_SKEW

CHALLENGE = b"c" * 16


def verify(world: World, token: bytes, **context: object) -> Decision:
    args: dict[str, object] = {"vehicle_id": VEHICLE, "action": Action.TRUNK}
    args.update(context)
    return world.verifier.verify(token, **args)  # type: ignore[arg-type]


def resign(world: World, protected: dict[int, object], payload: bytes,
           unprotected: bytes = b"\xa0") -> bytes:
    """A correctly signed COSE_Sign1 with a hand-made header: the forger's tool."""
    prot = cbor.encode(protected)
    sig = world.key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + unprotected
            + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)


def payload_of(world: World, **overrides: object) -> bytes:
    claims = world.issuer.claims_for(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600
    )
    return encode_claims(claims)


def test_allowed_once_then_already_used(world: World) -> None:
    token = world.mint()
    first = verify(world, token)
    assert first.allowed
    assert first.reason is Reason.ALLOWED
    assert first.claims is not None
    assert first.claims.vehicle_id == VEHICLE
    assert first.at == NOW
    second = verify(world, token)
    assert second.reason is Reason.ALREADY_USED
    assert second.claims == first.claims  # authentic, so audits can name it


def test_decision_is_not_a_bool_and_cannot_be_forged() -> None:
    world = make_world()
    decision = verify(world, world.mint())
    with pytest.raises(TypeError):
        bool(decision)
    with pytest.raises(TypeError):
        Decision(reason=Reason.ALLOWED, detail="forged", at=0)
    decision.raise_for_denial()
    denied = verify(world, world.mint(), vehicle_id="OTHER")
    with pytest.raises(AccessDenied) as info:
        denied.raise_for_denial()
    assert info.value.reason is Reason.WRONG_VEHICLE


def test_too_large_before_parsing(ed_world: World) -> None:
    assert verify(ed_world, b"\xd2" * 1025).reason is Reason.TOO_LARGE
    small = Verifier(trust_store=ed_world.store, ledger=MemoryLedger(), clock=ed_world.clock,
                     policy=VerifierPolicy(max_token_size=128))
    d = small.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[1:],  # untagged
        lambda t: b"\xd3" + t[1:],  # COSE_Mac0 tag
        lambda t: t + b"\x00",  # trailing byte
        lambda t: t[:-1],  # chopped
        lambda t: b"",
        lambda t: b"\xd2\x83" + t[2:],  # three-item array
        lambda t: t[:2] + b"\x5f" + t[3:],  # indefinite-length protected bstr
    ],
)
def test_malformed_envelopes(ed_world: World, mutate: object) -> None:
    token = mutate(ed_world.mint())  # type: ignore[operator]
    assert verify(ed_world, token).reason is Reason.MALFORMED


def test_non_bytes_token_is_malformed(ed_world: World) -> None:
    token = ed_world.mint()
    assert verify(ed_world, bytearray(token)).reason is Reason.MALFORMED
    assert verify(ed_world, token.hex()).reason is Reason.MALFORMED


def test_unprotected_header_must_be_empty(ed_world: World) -> None:
    kid = ed_world.key.kid
    token = resign(ed_world, {1: int(ed_world.key.algorithm), 4: kid, 16: int(Typ.TOKEN)},
                   payload_of(ed_world), unprotected=b"\xa1\x04" + cbor.encode(kid))
    assert verify(ed_world, token).reason is Reason.MALFORMED


def test_wrong_type_other_signed_objects_from_the_same_key(ed_world: World) -> None:
    payload = payload_of(ed_world)
    for typ in (Typ.GRANT, Typ.RECEIPT, Typ.TIME_SYNC, Typ.PROOF, Typ.REVOCATION_LIST, 61):
        token = sign1(ed_world.key, payload, typ=typ)  # type: ignore[arg-type]
        assert verify(ed_world, token).reason is Reason.WRONG_TYPE, typ
    no_typ = resign(ed_world, {1: -8, 4: ed_world.key.kid}, payload)
    assert verify(ed_world, no_typ).reason is Reason.WRONG_TYPE
    text_typ = resign(ed_world, {1: -8, 4: ed_world.key.kid, 16: "application/cwt"}, payload)
    assert verify(ed_world, text_typ).reason is Reason.WRONG_TYPE


def test_critical_and_unknown_headers_are_unsupported(ed_world: World) -> None:
    payload = payload_of(ed_world)
    base = {1: -8, 4: ed_world.key.kid, 16: int(Typ.TOKEN)}
    crit = resign(ed_world, {**base, 2: [99], 99: 1}, payload)
    assert verify(ed_world, crit).reason is Reason.UNSUPPORTED_HEADER
    extra = resign(ed_world, {**base, 3: 0}, payload)  # content type
    assert verify(ed_world, extra).reason is Reason.UNSUPPORTED_HEADER


def test_unknown_key_and_missing_kid(ed_world: World) -> None:
    stranger = make_world()
    token = stranger.mint()
    assert verify(ed_world, token).reason is Reason.UNKNOWN_KEY
    payload = payload_of(ed_world)
    no_kid = resign(ed_world, {1: -8, 16: int(Typ.TOKEN)}, payload)
    assert verify(ed_world, no_kid).reason is Reason.MALFORMED


def test_alg_in_token_never_switches_the_algorithm(ed_world: World) -> None:
    payload = payload_of(ed_world)
    kid = ed_world.key.kid
    for alg in (-7, -35, 0, -257, 5):
        token = resign(ed_world, {1: alg, 4: kid, 16: int(Typ.TOKEN)}, payload)
        assert verify(ed_world, token).reason is Reason.ALG_MISMATCH, alg
    text_alg = resign(ed_world, {1: "EdDSA", 4: kid, 16: int(Typ.TOKEN)}, payload)
    assert verify(ed_world, text_alg).reason is Reason.MALFORMED


def test_kid_pointing_at_another_trusted_key_is_a_bad_signature() -> None:
    world = make_world()
    other = SigningKey.generate()
    world.store.add(TrustedKey.create(other.public_key, "other"))
    token = world.mint()
    forged = token.replace(world.key.kid, other.kid)
    assert verify(world, forged).reason is Reason.BAD_SIGNATURE


def test_key_of_the_wrong_type_for_its_kid() -> None:
    # A P-256 token whose kid names an Ed25519 key: the key, not the token, decides.
    world = make_world(Algorithm.EDDSA)
    p256 = SigningKey.generate(Algorithm.ES256)
    payload = payload_of(world)
    prot = cbor.encode({1: -7, 4: world.key.kid, 16: int(Typ.TOKEN)})
    sig = p256.sign(sig_structure(prot, payload))
    token = (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
             + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)
    assert verify(world, token).reason is Reason.ALG_MISMATCH


def test_non_canonical_protected_header_is_malformed(ed_world: World) -> None:
    payload = payload_of(ed_world)
    kid = ed_world.key.kid
    # Same fields, typ written with a needlessly long integer: 0x1a 0000ff15.
    prot = b"\xa3\x01\x27\x04\x48" + kid + b"\x10\x1a\x00\x00\xff\x15"
    sig = ed_world.key.sign(sig_structure(prot, payload))
    token = (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
             + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)
    assert verify(ed_world, token).reason is Reason.MALFORMED


def test_bad_signature(world: World) -> None:
    token = bytearray(world.mint())
    token[-1] ^= 0x01
    assert verify(world, bytes(token)).reason is Reason.BAD_SIGNATURE


def test_key_validity_period() -> None:
    clock = ManualClock(NOW)
    key = SigningKey.generate()
    store = TrustStore([TrustedKey.create(key.public_key, ISSUER, not_before=NOW + 10,
                                          not_after=NOW + 100)])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    from trunkkey import Issuer

    token = Issuer(key, ISSUER, clock=clock).mint(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600)
    assert verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason is Reason.KEY_NOT_VALID
    clock.set(NOW + 100)
    assert verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason is Reason.KEY_NOT_VALID
    clock.set(NOW + 10)
    assert verifier.verify(token, vehicle_id=VEHICLE, action="trunk").allowed


def test_malformed_claims_under_a_valid_signature(ed_world: World) -> None:
    kid = ed_world.key.kid
    header = {1: -8, 4: kid, 16: int(Typ.TOKEN)}
    good = cbor.decode(payload_of(ed_world))
    cases = {
        "missing cti": {k: v for k, v in good.items() if k != 7},
        "unknown claim": {**good, 99: 1},
        "short cti": {**good, 7: b"x" * 8},
        "text cti": {**good, 7: "x" * 16},
        "negative exp": {**good, 4: -5},
        "two actions": {**good, -65537: 0x07},
        "reserved bit": {**good, -65537: 0x15},
        "no purpose": {**good, -65537: 0x01},
        "inverted window": {**good, 4: NOW, 5: NOW + 10},
        "empty issuer": {**good, 1: ""},
        "cnf junk": {**good, 8: {1: {1: 1}}},
        "geofence radius 0": {**good, -65538: [0, 0, 0]},
        "geofence radius below minimum": {**good, -65538: [0, 0, 1]},
        "order empty": {**good, -65539: b""},
    }
    for name, members in cases.items():
        token = resign(ed_world, header, cbor.encode(members))
        assert verify(ed_world, token).reason is Reason.MALFORMED, name
    # Payloads our encoder cannot even express: floats, duplicates, tags.
    raw_cases = {
        "float exp": b"\xa1\x04\xfb\x41\xda\xd2\x74\x80\x00\x00\x00",
        "duplicate key": b"\xa2\x01\x61a\x01\x61b",
        "tagged time": b"\xa1\x04\xc1\x1a\x6b\x49\xd2\x00",
        "indefinite map": b"\xbf\x01\x61a\xff",
    }
    for name, payload in raw_cases.items():
        token = resign(ed_world, header, payload)
        assert verify(ed_world, token).reason is Reason.MALFORMED, name


def test_wrong_issuer_for_the_key(ed_world: World) -> None:
    # The trusted key speaks for "retailer"; a token it signs naming another issuer fails.
    from trunkkey import Issuer

    liar = Issuer(ed_world.key, "carmaker", clock=ed_world.clock)
    token = liar.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60)
    assert verify(ed_world, token).reason is Reason.WRONG_ISSUER


def test_wrong_vehicle_action_purpose(world: World) -> None:
    token = world.mint()
    assert verify(world, token, vehicle_id="5YJ3E1EA7JF000001").reason is Reason.WRONG_VEHICLE
    assert verify(world, token, action=Action.UNLOCK_RELOCK).reason is Reason.WRONG_ACTION
    assert verify(world, token, purpose="return-pickup").reason is Reason.WRONG_PURPOSE
    # None of those refusals spent the token.
    assert verify(world, token, purpose="delivery").allowed


def test_unlock_token_does_not_open_the_trunk(world: World) -> None:
    token = world.mint(action="unlock-relock")
    assert verify(world, token, action="trunk").reason is Reason.WRONG_ACTION
    assert verify(world, token, action="unlock-relock").allowed


def test_window_edges_with_skew(ed_world: World) -> None:
    start, end, skew = NOW + 1000, NOW + 2000, 60
    cases = [
        (start - skew - 1, Reason.NOT_YET_VALID),
        (start - skew, Reason.ALLOWED),
        (end + skew - 1, Reason.ALLOWED),
        (end + skew, Reason.EXPIRED),
    ]
    tokens = [ed_world.mint(not_before=start, expires=end) for _ in cases]
    for token, (at, expected) in zip(tokens, cases, strict=True):
        ed_world.clock.set(at)
        assert verify(ed_world, token).reason is expected, at


def test_issued_in_the_future_is_not_yet_valid(ed_world: World) -> None:
    token = ed_world.mint(not_before=NOW + 10_000, expires=NOW + 20_000)
    ed_world.clock.set(NOW + 15_000)
    assert verify(ed_world, token).allowed
    ed_world.clock.set(NOW + 10_000)
    from trunkkey import Issuer

    future_issuer = Issuer(ed_world.key, ISSUER, clock=ManualClock(NOW + 12_000))
    token = future_issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW + 10_000,
                               expires=NOW + 20_000)
    assert verify(ed_world, token).reason is Reason.NOT_YET_VALID


def test_lifetime_cap_of_the_verifier(ed_world: World) -> None:
    strict = Verifier(trust_store=ed_world.store, ledger=MemoryLedger(), clock=ed_world.clock,
                      policy=VerifierPolicy(max_lifetime=3600))
    token = ed_world.mint(expires=NOW + 3601)
    d = strict.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.LIFETIME_TOO_LONG


def test_geofence(ed_world: World) -> None:
    fence = Geofence.from_degrees(48.137400, 11.575500, 100)
    inside = Location.from_degrees(48.137400, 11.576700)  # about 89 m east
    outside = Location.from_degrees(48.137400, 11.577000)  # about 111 m east
    token = ed_world.mint(geofence=fence)
    assert verify(ed_world, token).reason is Reason.LOCATION_UNKNOWN
    assert verify(ed_world, token, location=outside).reason is Reason.OUTSIDE_GEOFENCE
    assert verify(ed_world, token, location=inside).allowed


def test_proof_of_possession(world: World) -> None:
    device = SigningKey.generate()
    token = world.mint(courier_key=device.public_key)
    assert verify(world, token).reason is Reason.PROOF_MISSING
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    assert verify(world, token, proof=proof).reason is Reason.PROOF_INVALID  # no challenge
    other_challenge = b"d" * 16
    assert verify(world, token, proof=proof, challenge=other_challenge).reason is (
        Reason.PROOF_INVALID)
    thief = SigningKey.generate()
    stolen = make_proof(thief, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    assert verify(world, token, proof=stolen, challenge=CHALLENGE).reason is Reason.PROOF_INVALID
    other_token = world.mint(courier_key=device.public_key)
    misbound = make_proof(device, token=other_token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    assert verify(world, token, proof=misbound, challenge=CHALLENGE).reason is (
        Reason.PROOF_INVALID)
    elsewhere = make_proof(device, token=token, vehicle_id="OTHER", challenge=CHALLENGE)
    assert verify(world, token, proof=elsewhere, challenge=CHALLENGE).reason is (
        Reason.PROOF_INVALID)
    assert verify(world, token, proof=b"junk", challenge=CHALLENGE).reason is Reason.PROOF_INVALID
    assert verify(world, token, proof=proof, challenge=CHALLENGE).allowed


def test_proof_by_a_p256_device_key() -> None:
    world = make_world()
    device = SigningKey.generate(Algorithm.ES256)
    token = world.mint(courier_key=device.public_key)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    assert verify(world, token, proof=proof, challenge=CHALLENGE).allowed


class _BrokenLedger:
    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        raise OSError("disk full")

    def spend(self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int,
              at: int, limits: tuple[DailyLimit, ...] = ()) -> SpendOutcome:
        raise OSError("disk full")

    def prune(self, now: int, *, limit: int | None = None) -> int:
        raise OSError("disk full")

    def count(self) -> int:
        return 0

    def close(self) -> None:
        pass


class _LyingLedger(_BrokenLedger):
    def spend(self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int,
              at: int, limits: tuple[DailyLimit, ...] = ()) -> SpendOutcome:
        return True  # type: ignore[return-value]  # truthy but not FIRST_USE: not a clear yes


def test_ledger_failure_denies(ed_world: World) -> None:
    for ledger in (_BrokenLedger(), _LyingLedger()):
        verifier = Verifier(trust_store=ed_world.store, ledger=ledger, clock=ed_world.clock)
        d = verifier.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
        assert not d.allowed
        assert d.reason is Reason.LEDGER_UNAVAILABLE
    lying = Verifier(trust_store=ed_world.store, ledger=_LyingLedger(), clock=ed_world.clock)
    d = lying.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.LEDGER_UNAVAILABLE, "ledger answered True")
    with pytest.raises(InvalidRequest, match=r"^ledger must implement trunkkey\.ledger\.Ledger"):
        Verifier(trust_store=ed_world.store, ledger=object(), clock=ed_world.clock)  # type: ignore[arg-type]
    broken = Verifier(trust_store=ed_world.store, ledger=_BrokenLedger(), clock=ed_world.clock)
    d = broken.verify(ed_world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.LEDGER_UNAVAILABLE
    # The cause is kept, sanitised (credentials, key-like runs and control
    # characters removed, bounded: tests/test_observe.py).
    assert d.detail == "ledger failed: OSError: disk full"


def test_ledger_is_consulted_last_and_only_when_all_else_passed(ed_world: World) -> None:
    token = ed_world.mint(courier_key=SigningKey.generate().public_key)
    for _ in range(3):
        assert verify(ed_world, token).reason is Reason.PROOF_MISSING
    assert ed_world.ledger.count() == 0
    assert verify(ed_world, ed_world.mint(), vehicle_id="OTHER").reason is Reason.WRONG_VEHICLE
    assert ed_world.ledger.count() == 0


def test_keep_until_is_expiry_plus_the_largest_skew_any_verifier_allows(ed_world: World) -> None:
    token = ed_world.mint(expires=NOW + 600)
    assert verify(ed_world, token).allowed
    assert ed_world.ledger.prune(NOW + 600 + MAX_ALLOWED_SKEW) == 0
    assert ed_world.ledger.prune(NOW + 600 + MAX_ALLOWED_SKEW + 1) == 1


def test_a_token_pruned_after_a_strict_verifier_spent_it_stays_spent_for_a_lenient_one() -> None:
    # Two verifiers sharing one ledger, with different skews: the entry the
    # strict one wrote must outlive the lenient one's window too, or pruning
    # in between reopens the token for the lenient one.
    key, clock, ledger = SigningKey.generate(), ManualClock(NOW), MemoryLedger()
    trust = TrustStore([TrustedKey.create(key.public_key, "shop")])
    strict, lenient = (
        Verifier(trust_store=trust, ledger=ledger, clock=clock,
                 policy=VerifierPolicy(max_skew=skew))
        for skew in (0, MAX_ALLOWED_SKEW)
    )
    token = Issuer(key, "shop", clock=clock).mint(
        vehicle_id="VIN-1", action="trunk", not_before=NOW, expires=NOW + 600)
    clock.set(NOW + 599)
    assert strict.verify(token, vehicle_id="VIN-1", action="trunk").allowed
    clock.set(NOW + 601)
    ledger.prune(clock.now())
    assert lenient.verify(token, vehicle_id="VIN-1", action="trunk").reason is (
        Reason.ALREADY_USED)


def test_caller_mistakes_raise_not_deny(ed_world: World) -> None:
    token = ed_world.mint()
    with pytest.raises(InvalidRequest):
        verify(ed_world, token, vehicle_id="")
    with pytest.raises(InvalidRequest):
        verify(ed_world, token, vehicle_id=None)
    with pytest.raises(InvalidRequest):
        verify(ed_world, token, action="open-everything")
    with pytest.raises(InvalidRequest):
        verify(ed_world, token, location=(48.0, 11.0))
    with pytest.raises(InvalidRequest):
        ed_world.verifier.verify_at(token, now=1.5, vehicle_id=VEHICLE, action="trunk")  # type: ignore[arg-type]


def test_policy_bounds() -> None:
    with pytest.raises(InvalidRequest):
        VerifierPolicy(max_skew=301)
    with pytest.raises(InvalidRequest):
        VerifierPolicy(max_skew=-1)
    with pytest.raises(InvalidRequest):
        VerifierPolicy(max_lifetime=0)
    with pytest.raises(InvalidRequest):
        VerifierPolicy(max_token_size=10)


def test_verify_at_uses_the_given_time_and_reads_no_clock(ed_world: World) -> None:
    class ExplodingClock:
        def now(self) -> int:
            raise AssertionError("clock read")

    verifier = Verifier(trust_store=ed_world.store, ledger=MemoryLedger(), clock=ExplodingClock())
    d = verifier.verify_at(ed_world.mint(), now=NOW + 5, vehicle_id=VEHICLE, action="trunk")
    assert d.allowed
    assert d.at == NOW + 5


def test_removed_key_stops_verifying(ed_world: World) -> None:
    token = ed_world.mint()
    ed_world.store.remove(ed_world.key.kid)
    assert verify(ed_world, token).reason is Reason.UNKNOWN_KEY


def test_rotation_with_overlap_keeps_deliveries_flowing() -> None:
    from trunkkey import Issuer

    clock = ManualClock(NOW)
    old, new = SigningKey.generate(), SigningKey.generate()
    store = TrustStore([
        TrustedKey.create(old.public_key, ISSUER, not_after=NOW + 7200),
        TrustedKey.create(new.public_key, ISSUER, not_before=NOW + 3600),
    ])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)

    def mint(key: SigningKey) -> bytes:
        return Issuer(key, ISSUER, clock=clock).mint(
            vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 20_000)

    def check(token: bytes) -> Reason:
        return verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason

    assert check(mint(old)) is Reason.ALLOWED
    assert check(mint(new)) is Reason.KEY_NOT_VALID  # not yet
    clock.set(NOW + 5000)  # overlap: both keys work
    assert check(mint(old)) is Reason.ALLOWED
    assert check(mint(new)) is Reason.ALLOWED
    clock.set(NOW + 7200)  # the old key has retired
    assert check(mint(old)) is Reason.KEY_NOT_VALID
    assert check(mint(new)) is Reason.ALLOWED


@pytest.mark.parametrize("challenge", [b"", b"c" * 15, b"c" * 33])
def test_a_proof_over_a_challenge_of_the_wrong_length_is_refused(
    ed_world: World, challenge: bytes
) -> None:
    """A car issues 16 to 32 random bytes; a proof over anything else proves no freshness."""
    from trunkkey.proof import proof_aad

    device = SigningKey.generate()
    token = ed_world.mint(courier_key=device.public_key)
    # make_proof refuses such a challenge, so the attacker signs one by hand.
    proof = sign1(device, challenge, typ=Typ.PROOF, include_kid=False,
                  external_aad=proof_aad(token, VEHICLE))
    d = verify(ed_world, token, proof=proof, challenge=challenge)
    assert d.reason is Reason.PROOF_INVALID
    assert d.detail == "challenge must be 16 to 32 bytes"
    assert verify(ed_world, token, proof=make_proof(device, token=token, vehicle_id=VEHICLE,
                                                    challenge=CHALLENGE),
                  challenge=CHALLENGE).allowed


def test_a_header_is_refused_for_the_same_reason_with_or_without_a_chain() -> None:
    """One rule for token headers: a chain changes who the signer is, not why a header fails."""
    from trunkkey.testing.consent import START as STORY_START
    from trunkkey.testing.consent import VEHICLE as STORY_VEHICLE
    from trunkkey.testing.consent import build_world

    cw = build_world()
    direct = Verifier(trust_store=TrustStore([TrustedKey.create(cw.carrier.public_key, "dhl")]),
                      ledger=MemoryLedger(), clock=cw.clock, consent=cw.consent)
    payload = parse_sign1(cw.token()).payload
    kid = cw.carrier.kid
    headers: list[dict[int, object]] = [
        {1: -8, 4: kid, 16: "application/cwt"},   # typ not an integer
        {1: -8, 4: kid},                          # no typ
        {1: -8, 4: kid, 16: int(Typ.GRANT)},      # another object's typ
        {1: -8, 16: int(Typ.TOKEN)},              # no kid
        {1: -7, 4: kid, 16: int(Typ.TOKEN)},      # the wrong alg for the key
        {1: -8, 2: [1], 4: kid, 16: int(Typ.TOKEN)},  # crit
        {1: "EdDSA", 4: kid, 16: int(Typ.TOKEN)},     # alg not an integer
    ]
    for members in headers:
        protected = cbor.encode(members)
        token = (b"\xd2\x84" + cbor.encode(protected) + b"\xa0" + cbor.encode(payload)
                 + cbor.encode(cw.carrier.sign(sig_structure(protected, payload))))
        context: dict[str, object] = {"now": STORY_START, "vehicle_id": STORY_VEHICLE,
                                      "action": "trunk"}
        without = direct.verify_at(token, **context)  # type: ignore[arg-type]
        under_chain = cw.verifier.verify_at(token, chain=cw.chain, **context)  # type: ignore[arg-type]
        assert (without.reason, without.detail) == (under_chain.reason, under_chain.detail), members
        assert not without.allowed


# -- the policy, the decision and the caller's mistakes --------------------------------


def test_policy_is_frozen_slotted_and_keyword_only() -> None:
    policy = VerifierPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_skew = 300  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    with pytest.raises(TypeError):
        VerifierPolicy(60)  # type: ignore[misc]


def test_policy_refusals_say_why() -> None:
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


def test_caller_mistakes_are_refused_with_the_reason() -> None:
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


def test_verifier_exposes_its_policy_and_trust_store() -> None:
    world = make_world()
    policy = VerifierPolicy(max_skew=10)
    v = Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock, policy=policy)
    assert v.policy is policy
    assert v.trust_store is world.store
    assert repr(v) == f"Verifier({world.store!r}, {world.ledger!r}, {policy!r})"


# -- every denial's detail, exactly ----------------------------------------------------


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
    assert (d.reason, d.detail) == (
        Reason.LEDGER_UNAVAILABLE, "ledger failed: OSError: disk gone")
    token = world.mint()
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").detail == "all checks passed"
    again = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (again.reason, again.detail) == (Reason.ALREADY_USED, "token was already used")
    no_consent = v.verify(token, vehicle_id=VEHICLE, action="trunk", chain=b"\x80")
    assert (no_consent.reason, no_consent.detail) == (
        Reason.CHAIN_INVALID, "verifier holds no consent anchors")


def test_a_key_outside_its_validity_period_is_denied_with_the_exact_detail() -> None:
    clock = ManualClock(NOW)
    key = SigningKey.generate()
    store = TrustStore([TrustedKey.create(key.public_key, "shop", not_after=NOW - 1)])
    token = Issuer(key, "shop", clock=clock).mint(vehicle_id=VEHICLE, action="trunk",
                                                  not_before=NOW, expires=NOW + 60)
    v = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    d = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.KEY_NOT_VALID, "signing key outside its validity period")
