"""The attack suite: one test per threat, each asserting denial and the exact reason.

Every test builds the attack with the public API the way an attacker with the
stated capability could (a sniffed token, a signing key for a *different*
object, a relay, a clock setter), presents it, and pins the reason code. The
order of checks in :mod:`trunkkey.verifier` decides which reason wins when
several apply; where a test depends on that order it says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from support import ISSUER, NOW, VEHICLE, World, make_world
from trunkkey import (
    Action,
    Algorithm,
    Decision,
    DecodeError,
    Geofence,
    Issuer,
    Location,
    Purpose,
    Reason,
    SignatureError,
    SigningKey,
    SqliteLedger,
    TrustedKey,
    TrustStore,
    Typ,
    Verifier,
    cbor,
    make_proof,
)
from trunkkey.claims import encode_claims
from trunkkey.consent import (
    UpdateRefused,
    encode_chain,
    grant_digest,
    make_grant,
    sign_revocation_list,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.cose import sig_structure, sign1
from trunkkey.geo import distance_m
from trunkkey.testing.consent import ORDER, ConsentWorld, build_world
from trunkkey.testing.consent import VEHICLE as VEHICLE_CW
from trunkkey.testing.vehicle import Car, courier_present
from trunkkey.testing.vehicle import World as CarWorld
from trunkkey.vehicle import Receipt, UnitConfig, make_time_sync, sign_receipt, verify_receipt

CHALLENGE = b"C" * 16
OTHER_CHALLENGE = b"D" * 16
HOME = Location.from_degrees(48.137154, 11.576124)


# -- helpers -------------------------------------------------------------------

def present(world: World, token: bytes, **context: object) -> Decision:
    args: dict[str, object] = {"vehicle_id": VEHICLE, "action": Action.TRUNK}
    args.update(context)
    return world.verifier.verify_at(token, now=world.clock.now(), **args)  # type: ignore[arg-type]


def claims_payload(world: World, **overrides: object) -> bytes:
    """Claims a real issuer would sign, with fields overridden past the issuer's checks."""
    claims = world.issuer.claims_for(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600,
    )
    return encode_claims(replace(claims, **overrides))  # type: ignore[arg-type]


def forge(key: SigningKey, protected: dict[int, object], payload: bytes) -> bytes:
    """A correctly signed COSE_Sign1 with a header of the attacker's choosing."""
    prot = cbor.encode(protected)
    signature = key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
            + cbor.head(2, len(payload)) + payload + cbor.head(2, len(signature)) + signature)


def flips(data: bytes) -> Iterator[bytes]:
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        yield bytes(flipped)


@pytest.fixture
def w() -> World:
    return make_world()


@pytest.fixture
def device() -> SigningKey:
    return SigningKey.generate()


class Stage:
    """A car with a durable ledger, parked at HOME, and a courier's handheld."""

    def __init__(self, tmp_path: Path) -> None:
        self.world = CarWorld(start=NOW, state_dir=tmp_path)
        self.car: Car = self.world.enrol_car("VIN-A")
        self.fence = self.world.park(self.car, HOME, radius_m=50)
        self.courier = SigningKey.generate()

    def token(self, car: Car | None = None, **kw: object) -> bytes:
        kw.setdefault("courier", self.courier)
        kw.setdefault("geofence", self.fence)
        return self.world.mint(car or self.car, **kw)  # type: ignore[arg-type]


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path)


# -- replay --------------------------------------------------------------------

def test_replay_at_the_same_car(w: World) -> None:
    token = w.mint()
    assert present(w, token).allowed
    assert present(w, token).reason is Reason.ALREADY_USED
    w.clock.advance(3599)
    assert present(w, token).reason is Reason.ALREADY_USED


def test_replay_at_another_car(w: World) -> None:
    token = w.mint()
    assert present(w, token).allowed
    # The second car has its own, empty ledger: the audience claim stops it.
    other = Verifier(trust_store=w.store, ledger=type(w.ledger)(), clock=w.clock)
    d = other.verify(token, vehicle_id="WVWZZZ1JZXW000001", action="trunk")
    assert d.reason is Reason.WRONG_VEHICLE


def test_replay_after_reboot_over_the_same_sqlite_ledger(w: World, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    before = Verifier(trust_store=w.store, ledger=ledger, clock=w.clock)
    token = w.mint()
    assert before.verify(token, vehicle_id=VEHICLE, action="trunk").allowed
    ledger.close()
    reopened = SqliteLedger(path)
    try:
        after = Verifier(trust_store=w.store, ledger=reopened, clock=w.clock)
        d = after.verify(token, vehicle_id=VEHICLE, action="trunk")
        assert d.reason is Reason.ALREADY_USED
    finally:
        reopened.close()


def test_replay_after_the_vehicle_unit_reboots(stage: Stage) -> None:
    token = stage.token()
    assert courier_present(stage.car, token, stage.courier).allowed
    stage.car.unit.trunk_closed()
    stage.world.reboot(stage.car)
    assert courier_present(stage.car, token, stage.courier).reason is Reason.ALREADY_USED


# -- scope escalation ------------------------------------------------------------

def test_scope_escalation_trunk_token_to_unlock_the_cabin(w: World) -> None:
    token = w.mint(action="trunk")
    assert present(w, token, action=Action.UNLOCK_RELOCK).reason is Reason.WRONG_ACTION
    # Denied, so not spent: the trunk still opens with it.
    assert present(w, token, action=Action.TRUNK).allowed


def test_scope_escalation_delivery_token_for_a_return_pickup(w: World) -> None:
    token = w.mint(purpose="delivery")
    d = present(w, token, purpose=Purpose.RETURN_PICKUP)
    assert d.reason is Reason.WRONG_PURPOSE


def test_scope_escalation_at_the_vehicle_unit(stage: Stage) -> None:
    token = stage.token()
    for action in (Action.UNLOCK_RELOCK, "start-engine", "enrol-key", "drive"):
        outcome = courier_present(stage.car, token, stage.courier, action=action)
        assert outcome.reason is Reason.WRONG_ACTION, action
    assert stage.car.body.locked
    assert courier_present(stage.car, token, stage.courier).allowed


# -- time ------------------------------------------------------------------------

def test_window_edges_with_the_default_skew_are_exact(w: World) -> None:
    skew = w.verifier.policy.max_skew
    token = w.mint(not_before=NOW, expires=NOW + 3600)

    def at(now: int) -> Reason:
        fresh = Verifier(trust_store=w.store, ledger=type(w.ledger)(), clock=w.clock)
        return fresh.verify_at(token, now=now, vehicle_id=VEHICLE, action="trunk").reason

    assert at(NOW - skew - 1) is Reason.NOT_YET_VALID
    assert at(NOW - skew) is Reason.ALLOWED
    assert at(NOW + 3600 + skew - 1) is Reason.ALLOWED
    assert at(NOW + 3600 + skew) is Reason.EXPIRED


def test_token_issued_in_the_future_is_not_yet_valid_at_the_skew_edge(w: World) -> None:
    skew = w.verifier.policy.max_skew
    future = forge(w.key, {1: -8, 4: w.key.kid, 16: int(Typ.TOKEN)},
                   claims_payload(w, issued_at=NOW + 100, not_before=NOW))
    assert w.verifier.verify_at(future, now=NOW + 100 - skew - 1, vehicle_id=VEHICLE,
                                action="trunk").reason is Reason.NOT_YET_VALID
    assert w.verifier.verify_at(future, now=NOW + 100 - skew, vehicle_id=VEHICLE,
                                action="trunk").reason is Reason.ALLOWED


def test_window_longer_than_the_verifier_allows(w: World) -> None:
    cap = w.verifier.policy.max_lifetime
    long_payload = claims_payload(w, expires=NOW + cap + 1)
    token = forge(w.key, {1: -8, 4: w.key.kid, 16: int(Typ.TOKEN)}, long_payload)
    assert present(w, token).reason is Reason.LIFETIME_TOO_LONG


def test_clock_rollback_at_the_vehicle_unit(stage: Stage) -> None:
    token = stage.token(window=3600)
    stage.world.advance(2 * 3600)  # the token has expired in true time
    stage.car.clock.advance(-2 * 3600)  # an attacker sets the car's clock back
    outcome = courier_present(stage.car, token, stage.courier)
    assert outcome.reason is Reason.CLOCK_UNTRUSTED
    assert stage.car.body.locked
    # A signed sync restores true time, and the token is expired, not revived.
    assert stage.world.time_sync(stage.car).accepted
    assert courier_present(stage.car, token, stage.courier).reason is Reason.EXPIRED


def test_replayed_time_sync_cannot_set_the_clock_back(stage: Stage) -> None:
    car = stage.car
    old = make_time_sync(stage.world.carmaker_key, vehicle_id=car.vehicle_id,
                         nonce=car.unit.time_sync_nonce(), time=stage.world.now)
    stage.world.advance(3600)
    car.clock.advance(-3600)
    assert not car.unit.clock_trusted or courier_present(
        car, stage.token(), stage.courier).reason is Reason.CLOCK_UNTRUSTED
    assert not car.unit.apply_time_sync(old).accepted
    assert courier_present(car, stage.token(), stage.courier).reason is Reason.CLOCK_UNTRUSTED


# -- place -------------------------------------------------------------------------

def _edge_locations(fence: Geofence) -> tuple[Location, Location]:
    """The last location north of the centre inside the fence, and the first outside."""
    lo, hi = 0, 10_000_000
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probe = Location(lat_e7=fence.lat_e7 + mid, lon_e7=fence.lon_e7)
        if distance_m(fence.centre, probe) <= fence.radius_m:
            lo = mid
        else:
            hi = mid
    return (Location(lat_e7=fence.lat_e7 + lo, lon_e7=fence.lon_e7),
            Location(lat_e7=fence.lat_e7 + hi, lon_e7=fence.lon_e7))


@pytest.mark.parametrize("radius", [5, 100, 50_000])
def test_geofence_edges_just_inside_and_just_outside(w: World, radius: int) -> None:
    fence = Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=radius)
    inside, outside = _edge_locations(fence)
    token = w.mint(geofence=fence)
    assert present(w, token, location=outside).reason is Reason.OUTSIDE_GEOFENCE
    assert present(w, token).reason is Reason.LOCATION_UNKNOWN
    assert present(w, token, location=inside).allowed


def test_car_moved_away_from_the_parking_place(stage: Stage) -> None:
    token = stage.token()
    stage.car.gps.position = Location.from_degrees(48.2, 11.6)  # kilometres away
    assert courier_present(stage.car, token, stage.courier).reason is Reason.CAR_MOVED


# -- who holds the token ---------------------------------------------------------------

def test_sniffed_token_without_device_proof(w: World, device: SigningKey) -> None:
    token = w.mint(courier_key=device.public_key)
    assert present(w, token).reason is Reason.PROOF_MISSING
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    # A proof with no challenge issued for it proves nothing.
    assert present(w, token, proof=proof).reason is Reason.PROOF_INVALID


def test_proof_replayed_against_a_new_challenge(w: World, device: SigningKey) -> None:
    token = w.mint(courier_key=device.public_key)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=CHALLENGE)
    d = present(w, token, proof=proof, challenge=OTHER_CHALLENGE)
    assert d.reason is Reason.PROOF_INVALID
    assert d.detail == "proof answers another challenge"


def test_proof_made_for_another_token(w: World, device: SigningKey) -> None:
    mine = w.mint(courier_key=device.public_key)
    other = w.mint(courier_key=device.public_key)
    proof = make_proof(device, token=other, vehicle_id=VEHICLE, challenge=CHALLENGE)
    d = present(w, mine, proof=proof, challenge=CHALLENGE)
    assert d.reason is Reason.PROOF_INVALID
    assert "does not verify" in d.detail


def test_proof_made_for_another_car(w: World, device: SigningKey) -> None:
    token = w.mint(courier_key=device.public_key)
    proof = make_proof(device, token=token, vehicle_id="OTHER-CAR", challenge=CHALLENGE)
    assert present(w, token, proof=proof, challenge=CHALLENGE).reason is Reason.PROOF_INVALID


def test_proof_by_a_stolen_token_holders_own_key(w: World, device: SigningKey) -> None:
    token = w.mint(courier_key=device.public_key)
    proof = make_proof(SigningKey.generate(), token=token, vehicle_id=VEHICLE,
                       challenge=CHALLENGE)
    assert present(w, token, proof=proof, challenge=CHALLENGE).reason is Reason.PROOF_INVALID


def test_proof_by_the_issuer_key_typed_as_a_token_is_refused(w: World, device: SigningKey) -> None:
    token = w.mint(courier_key=device.public_key)
    fake = sign1(device, CHALLENGE, typ=Typ.TOKEN, include_kid=False)
    assert present(w, token, proof=fake, challenge=CHALLENGE).reason is Reason.PROOF_INVALID


def test_relay_past_the_challenge_lifetime(stage: Stage) -> None:
    ttl = stage.car.unit.config.challenge_ttl
    token = stage.token()
    relayed = courier_present(stage.car, token, stage.courier,
                              delay=lambda: stage.world.advance(ttl + 1))
    assert relayed.reason is Reason.CHALLENGE_EXPIRED
    assert stage.car.body.locked
    # At exactly the lifetime the answer is still in time, and the token was not spent.
    in_time = courier_present(stage.car, token, stage.courier,
                              delay=lambda: stage.world.advance(ttl))
    assert in_time.allowed


def test_relay_with_a_shorter_configured_challenge_lifetime(tmp_path: Path) -> None:
    world = CarWorld(start=NOW, state_dir=tmp_path, config=UnitConfig(challenge_ttl=5))
    car = world.enrol_car("VIN-B")
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier)
    late = courier_present(car, token, courier, delay=lambda: world.advance(6))
    assert late.reason is Reason.CHALLENGE_EXPIRED


def test_challenge_answered_twice_or_never_issued(stage: Stage) -> None:
    token = stage.token()
    challenge = stage.car.unit.challenge()
    proof = make_proof(stage.courier, token=token, vehicle_id="VIN-A", challenge=challenge)
    bogus = make_proof(stage.courier, token=token, vehicle_id="VIN-A", challenge=CHALLENGE)
    unit = stage.car.unit
    assert unit.present(token, action="trunk", proof=bogus,
                        challenge=CHALLENGE).reason is Reason.CHALLENGE_UNKNOWN
    assert unit.present(token, action="trunk", proof=proof, challenge=challenge).allowed
    unit.trunk_closed()
    assert unit.present(token, action="trunk", proof=proof,
                        challenge=challenge).reason is Reason.CHALLENGE_UNKNOWN


# -- the envelope and the signer -----------------------------------------------------

@pytest.mark.parametrize("alg", [-7, 5, 0, -35, -36, -257, -65535, 1, 4, -6])
def test_alg_confusion_with_a_resigned_token(w: World, alg: int) -> None:
    # ES256, HMAC 256/256, reserved 0 ("none"-like), ES384, ES512, RS256, RS1,
    # A128GCM, HMAC 256/64, "direct": the Ed25519 key decides, never the header.
    token = forge(w.key, {1: alg, 4: w.key.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.ALG_MISMATCH


def test_alg_confusion_on_a_p256_issuer() -> None:
    p = make_world(Algorithm.ES256)
    token = forge(p.key, {1: -8, 4: p.key.kid, 16: int(Typ.TOKEN)}, claims_payload(p))
    assert present(p, token).reason is Reason.ALG_MISMATCH


@pytest.mark.parametrize("alg", ["none", "EdDSA", b"\x27", None, [-8], 1.5])
def test_alg_of_an_unsupported_kind_is_malformed(w: World, alg: object) -> None:
    header: dict[int, object] = {4: w.key.kid, 16: int(Typ.TOKEN)}
    if alg is not None:
        header[1] = alg
    if isinstance(alg, float):
        # The strict encoder refuses floats: write alg 1.5 as a half float by hand.
        prot = b"\xa3\x01\xf9\x3e\x00\x04\x48" + w.key.kid + b"\x10\x19\xff\x15"
        payload = claims_payload(w)
        sig = w.key.sign(sig_structure(prot, payload))
        token = (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
                 + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)
    else:
        token = forge(w.key, header, claims_payload(w))
    assert present(w, token).reason is Reason.MALFORMED


def test_alg_in_the_unprotected_header_is_refused(w: World) -> None:
    token = w.mint()
    # Move nothing, just add alg to the (unsigned) unprotected bucket.
    prot_end = token.index(b"\xa0", 2)
    smuggled = token[:prot_end] + b"\xa1\x01\x26" + token[prot_end + 1:]
    assert present(w, smuggled).reason is Reason.MALFORMED


def test_kid_pointing_at_another_trusted_key(w: World) -> None:
    other = SigningKey.generate()
    w.store.add(TrustedKey.create(other.public_key, ISSUER))
    token = forge(w.key, {1: -8, 4: other.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.BAD_SIGNATURE


def test_kid_pointing_at_another_trusted_key_of_another_issuer(w: World) -> None:
    other = SigningKey.generate()
    w.store.add(TrustedKey.create(other.public_key, "someone-else"))
    # The other issuer's key signs a token naming *our* issuer: the key's issuer wins.
    token = forge(other, {1: -8, 4: other.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.WRONG_ISSUER


def test_key_of_the_wrong_type(w: World) -> None:
    # A P-256 signature under alg ES256, kid naming the trusted Ed25519 key.
    p256 = SigningKey.generate(Algorithm.ES256)
    token = forge(p256, {1: -7, 4: w.key.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.ALG_MISMATCH
    # The same P-256 signature claiming EdDSA: the signature does not verify.
    token = forge(p256, {1: -8, 4: w.key.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.BAD_SIGNATURE


def test_untrusted_key(w: World) -> None:
    stranger = SigningKey.generate()
    token = forge(stranger, {1: -8, 4: stranger.kid, 16: int(Typ.TOKEN)}, claims_payload(w))
    assert present(w, token).reason is Reason.UNKNOWN_KEY


@pytest.mark.parametrize("crit", [[1], [4], [16], [99], [2]])
def test_critical_headers(w: World, crit: list[int]) -> None:
    header: dict[int, object] = {1: -8, 2: crit, 4: w.key.kid, 16: int(Typ.TOKEN)}
    if 99 in crit:
        header[99] = 0
    token = forge(w.key, header, claims_payload(w))
    assert present(w, token).reason is Reason.UNSUPPORTED_HEADER


def test_extra_protected_headers(w: World) -> None:
    for extra in ({3: 0}, {5: b"iv"}, {6: b"partial-iv"}, {-1: 0}, {"x": 1}):
        header: dict[int | str, object] = {1: -8, 4: w.key.kid, 16: int(Typ.TOKEN), **extra}
        token = forge(w.key, header, claims_payload(w))  # type: ignore[arg-type]
        assert present(w, token).reason is Reason.UNSUPPORTED_HEADER, extra


def test_other_signed_objects_from_the_same_key_passed_off_as_tokens(w: World) -> None:
    key = w.key
    grant = make_grant(
        grantee=SigningKey.generate().public_key, grantee_name="carrier",
        access=0x05, not_before=NOW, expires=NOW + 3600, depth=0, vehicle_ids=[VEHICLE],
    )
    receipt = Receipt(
        vehicle_id=VEHICLE, token_id=bytes(16), action=Action.TRUNK, purpose=Purpose.DELIVERY,
        opened_at=NOW, closed_at=NOW + 5, relocked_at=NOW + 5, relock_cause="closed",
    )
    objects = {
        "grant": sign_root_grant(key, grant),
        "receipt": sign_receipt(key, receipt),
        "time-sync": make_time_sync(key, vehicle_id=VEHICLE, nonce=bytes(16), time=NOW),
        "proof": make_proof(key, token=w.mint(), vehicle_id=VEHICLE, challenge=CHALLENGE),
        "revocation list": sign_revocation_list(key, version=1, issued_at=NOW),
        "trust update": sign_trust_update(key, version=1, issued_at=NOW),
        # The worst case: a token's exact claims under another typ.
        "claims as grant": sign1(key, claims_payload(w), typ=Typ.GRANT),
        "claims as proof": sign1(key, claims_payload(w), typ=Typ.PROOF),
    }
    for name, signed in objects.items():
        d = present(w, signed)
        assert d.reason is Reason.WRONG_TYPE, (name, d.reason, d.detail)
        assert d.claims is None


def test_a_token_passed_off_as_a_proof_or_receipt_or_time_sync(
    stage: Stage,
) -> None:
    token = stage.token()
    unit = stage.car.unit
    with pytest.raises((DecodeError, SignatureError)):
        verify_receipt(token, unit.public_key)
    assert not unit.apply_time_sync(token).accepted


# -- consent: revocation and rollback --------------------------------------------------

@pytest.fixture
def cw() -> ConsentWorld:
    return build_world()


def test_delivery_under_a_consent_chain_is_allowed(cw: ConsentWorld) -> None:
    assert cw.present(cw.token(), cw.chain).allowed


def test_revoked_grant(cw: ConsentWorld) -> None:
    token = cw.token()
    revocation = sign_revocation_list(
        cw.root, version=cw.revocations.version + 1, issued_at=cw.clock.now(),
        grants=[grant_digest(cw.carrier_grant)],
    )
    cw.revocations.apply(revocation, cw.anchors, now=cw.clock.now())
    assert cw.present(token, cw.chain).reason is Reason.GRANT_REVOKED


def test_revoked_owner_consent(cw: ConsentWorld) -> None:
    token = cw.token()
    revocation = sign_revocation_list(
        cw.root, version=1, issued_at=cw.clock.now(), grants=[grant_digest(cw.root_grant)],
    )
    cw.revocations.apply(revocation, cw.anchors, now=cw.clock.now())
    assert cw.present(token, cw.chain).reason is Reason.GRANT_REVOKED


def test_rolled_back_revocation_list(cw: ConsentWorld) -> None:
    now = cw.clock.now()
    empty_v1 = sign_revocation_list(cw.root, version=1, issued_at=now)
    revoking_v2 = sign_revocation_list(cw.root, version=2, issued_at=now,
                                       grants=[grant_digest(cw.carrier_grant)])
    cw.revocations.apply(empty_v1, cw.anchors, now=now)
    cw.revocations.apply(revoking_v2, cw.anchors, now=now)
    for replayed in (empty_v1, revoking_v2):
        with pytest.raises(UpdateRefused) as raised:
            cw.revocations.apply(replayed, cw.anchors, now=now)
        assert raised.value.reason is Reason.ROLLBACK
    assert cw.revocations.version == 2
    assert cw.present(cw.token(), cw.chain).reason is Reason.GRANT_REVOKED


def test_revocation_list_signed_by_a_non_root_key(cw: ConsentWorld) -> None:
    forged = sign_revocation_list(cw.retailer, version=99, issued_at=cw.clock.now())
    with pytest.raises(UpdateRefused) as raised:
        cw.revocations.apply(forged, cw.anchors, now=cw.clock.now())
    assert raised.value.reason is Reason.UNKNOWN_KEY
    assert cw.revocations.version == 0


def test_chain_link_passed_off_as_a_token(cw: ConsentWorld) -> None:
    d = cw.present(cw.carrier_grant, cw.chain)
    assert not d.allowed
    assert d.reason in {Reason.WRONG_TYPE, Reason.MALFORMED}


def test_chain_token_without_the_chain_is_an_unknown_key(cw: ConsentWorld) -> None:
    assert cw.present(cw.token(), None).reason is Reason.UNKNOWN_KEY


def test_chain_with_the_root_link_missing(cw: ConsentWorld) -> None:
    only_carrier = encode_chain([cw.carrier_grant])
    d = cw.present(cw.token(), only_carrier)
    assert d.reason is Reason.CHAIN_INVALID


def test_every_single_bit_flip_of_a_consent_chain_is_denied() -> None:
    cw = build_world(cache=False)
    token = cw.token()
    chain = cw.chain
    denied: Counter[Reason] = Counter()
    for flipped in flips(chain):
        d = cw.present(token, flipped)
        assert not d.allowed, f"flipped chain accepted: {flipped.hex()}"
        denied[d.reason] += 1
    assert sum(denied.values()) == 8 * len(chain)
    # The untouched chain still works, so the denials were the flips' doing.
    assert cw.present(token, chain).allowed


def test_every_single_bit_flip_of_a_chain_token_is_denied() -> None:
    cw = build_world()
    token = cw.token()
    chain = cw.chain
    for flipped in flips(token):
        assert not cw.present(flipped, chain).allowed, flipped.hex()
    assert cw.present(token, chain).allowed


def test_rolljam_captured_token_superseded_by_a_newer_one(cw: ConsentWorld) -> None:
    captured = cw.token()  # jammed and recorded, never used
    cw.clock.advance(60)
    reissued_at = cw.clock.now()
    revocation = sign_revocation_list(cw.root, version=1, issued_at=reissued_at,
                                      supersede={ORDER: reissued_at})
    cw.revocations.apply(revocation, cw.anchors, now=reissued_at)
    d = cw.present(captured, cw.chain)
    assert d.reason is Reason.SUPERSEDED
    assert cw.present(cw.token(), cw.chain).allowed  # the re-issued token works


def test_revoked_token_id(cw: ConsentWorld) -> None:
    assert cw.present(cw.token(), None).claims is None  # no chain: nothing is believed
    claims = cw.carrier_issuer.claims_for(vehicle_id=VEHICLE_CW, action="trunk",
                                          not_before=cw.clock.now(),
                                          expires=cw.clock.now() + 3600)
    revoked = cw.carrier_issuer.sign_claims(claims)
    cw.revocations.apply(
        sign_revocation_list(cw.root, version=1, issued_at=cw.clock.now(),
                             tokens=[claims.token_id]),
        cw.anchors, now=cw.clock.now(),
    )
    d = cw.verifier.verify(revoked, vehicle_id=VEHICLE_CW, action="trunk", chain=cw.chain)
    assert d.reason is Reason.TOKEN_REVOKED


def test_revoked_carrier_key(cw: ConsentWorld) -> None:
    token = cw.token()
    cw.revocations.apply(
        sign_revocation_list(cw.root, version=1, issued_at=cw.clock.now(),
                             keys=[cw.carrier.kid]),
        cw.anchors, now=cw.clock.now(),
    )
    assert cw.present(token, cw.chain).reason is Reason.KEY_REVOKED


def test_daily_limit_of_the_owners_consent(cw: ConsentWorld) -> None:
    # The owner's consent allows 5 openings a day (trunkkey.testing.consent.retailer_consent).
    for _ in range(5):
        assert cw.present(cw.token(), cw.chain).allowed
    assert cw.present(cw.token(), cw.chain).reason is Reason.DAILY_LIMIT_REACHED
    cw.clock.advance(24 * 3600)
    assert cw.present(cw.token(), cw.chain).reason is not Reason.DAILY_LIMIT_REACHED


def test_token_signed_by_another_key_than_the_chains_leaf(cw: ConsentWorld) -> None:
    # The retailer (a real grantee, one link up) signs the token itself.
    token = Issuer(cw.retailer, "amazon", clock=cw.clock).mint(
        vehicle_id=VEHICLE_CW, action="trunk", not_before=cw.clock.now(),
        expires=cw.clock.now() + 3600,
    )
    d = cw.verifier.verify(token, vehicle_id=VEHICLE_CW, action="trunk", chain=cw.chain)
    assert d.reason is Reason.CHAIN_INVALID
    assert d.detail == "token is not signed by the chain's last grantee"


def test_direct_trust_still_works_beside_a_consent_verifier(cw: ConsentWorld) -> None:
    direct = SigningKey.generate()
    store = TrustStore([TrustedKey.create(direct.public_key, "direct")])
    verifier = Verifier(trust_store=store, ledger=type(cw.ledger)(), clock=cw.clock,
                        consent=cw.consent)
    token = Issuer(direct, "direct", clock=cw.clock).mint(
        vehicle_id=VEHICLE_CW, action="trunk", not_before=cw.clock.now(),
        expires=cw.clock.now() + 3600,
    )
    assert verifier.verify(token, vehicle_id=VEHICLE_CW, action="trunk").allowed
