"""Consent chains through the vehicle unit: offline, revocable, and never rolled back."""

from __future__ import annotations

from pathlib import Path

import pytest

from trunkkey import Action, Geofence, Issuer, Location, Purpose, Reason, SigningKey
from trunkkey.consent import (
    KeyEntry,
    Role,
    RootKey,
    Scope,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    root_scope,
    sign_delegation,
    sign_revocation_list,
    sign_root_grant,
    sign_trust_update,
)
from trunkkey.errors import InvalidRequest
from trunkkey.inspect import inspect_unverified
from trunkkey.testing.vehicle import (
    RETAILER,
    Car,
    SimulatedBody,
    SimulatedGps,
    World,
    courier_present,
)
from trunkkey.vehicle import (
    EventKind,
    GapDetector,
    MemoryTimeStore,
    UnitState,
    VehicleUnit,
    consent_verifier,
)

START = 1_812_000_000
DAY = 86_400
PARKED = Location.from_degrees(48.137154, 11.576124)
CARRIER = "carrier.example"


class Stage:
    """A carmaker (the world's root), a retailer, a carrier, a courier and one consent car."""

    def __init__(self, tmp_path: Path) -> None:
        self.world = World(start=START, state_dir=tmp_path)
        self.car: Car = self.world.enrol_car("VIN-CONSENT-1", consent=True)
        self.place = self.world.park(self.car, PARKED, radius_m=50)
        self.events = GapDetector()
        self.car.unit.subscribe(self.events)
        self.carrier = SigningKey.generate()
        self.courier = SigningKey.generate()
        now = self.world.now
        # The owner consents once: trunk, deliveries, 30 days, at home.
        consent = make_grant(
            grantee=self.world.retailer_key.public_key, grantee_name=RETAILER,
            access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=now - 60,
            expires=now + 30 * DAY, depth=1, vehicle_ids=[self.car.vehicle_id],
            places=[Geofence(lat_e7=PARKED.lat_e7, lon_e7=PARKED.lon_e7, radius_m=300)],
        )
        self.root_grant = sign_root_grant(self.world.carmaker_key, consent)
        scope = root_scope(consent)
        assert isinstance(scope, Scope)
        delegation = make_grant(
            grantee=self.carrier.public_key, grantee_name=CARRIER,
            access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=now - 60,
            expires=now + 7 * DAY, depth=0,
        )
        self.carrier_grant = sign_delegation(self.world.retailer_key, scope, delegation)
        self.chain = encode_chain([self.root_grant, self.carrier_grant])
        self.list_version = 0

    def token(self, **kw: object) -> bytes:
        now = self.world.now
        request: dict[str, object] = {
            "vehicle_id": self.car.vehicle_id, "action": Action.TRUNK,
            "not_before": now, "expires": now + 4 * 3600, "geofence": self.place,
            "courier_key": self.courier.public_key, "order_ref": b"order-9",
        }
        request.update(kw)
        carrier = Issuer(self.carrier, CARRIER, clock=self.world.true_clock)
        return carrier.mint(**request)  # type: ignore[arg-type]

    def present(self, token: bytes, **kw: object) -> Reason:
        kw.setdefault("chain", self.chain)
        return courier_present(self.car, token, self.courier, **kw).reason  # type: ignore[arg-type]

    def revocation_list(self, **kw: object) -> bytes:
        self.list_version += 1
        return sign_revocation_list(
            self.world.carmaker_key, version=self.list_version, issued_at=self.world.now,
            **kw,  # type: ignore[arg-type]
        )

    def close_trunk(self) -> None:
        self.world.advance(20)
        assert self.car.unit.trunk_closed()


@pytest.fixture
def stage(tmp_path: Path) -> Stage:
    return Stage(tmp_path)


def test_courier_token_under_carrier_retailer_owner_consent_root_opens_offline(
    stage: Stage,
) -> None:
    # The car trusts no retailer or carrier directly for this: only the chain.
    assert stage.car.trust_store is not None
    assert stage.carrier.public_key.kid not in stage.car.trust_store
    token = stage.token()
    outcome = courier_present(stage.car, token, stage.courier, chain=stage.chain)
    assert outcome.reason is Reason.ALLOWED, outcome.detail
    assert stage.car.unit.state is UnitState.TRUNK_OPEN
    assert stage.car.body.trunk_unlatched
    assert not stage.car.body.doors_unlocked
    assert outcome.decision is not None
    assert outcome.decision.claims is not None
    assert outcome.decision.claims.issuer == CARRIER
    stage.close_trunk()
    assert stage.car.body.locked
    # Single use still holds under a chain.
    assert stage.present(token) is Reason.ALREADY_USED


def test_without_the_chain_the_carriers_token_is_unknown(stage: Stage) -> None:
    assert stage.present(stage.token(), chain=None) is Reason.UNKNOWN_KEY
    assert stage.car.body.locked


def test_a_unit_without_consent_anchors_refuses_every_chain(tmp_path: Path) -> None:
    world = World(start=START, state_dir=tmp_path)
    car = world.enrol_car("VIN-PLAIN-1")
    world.park(car, PARKED)
    token = world.mint(car, courier=None)
    assert car.unit.present(token, action=Action.TRUNK, chain=b"\x80").reason is (
        Reason.CHAIN_INVALID
    )
    refused = car.unit.apply_revocations(b"\xd2\x84")
    assert not refused.applied
    assert refused.reason is Reason.CHAIN_INVALID
    # The plain unit still opens for its directly trusted retailer.
    assert car.unit.present(token, action=Action.TRUNK).reason is Reason.ALLOWED


def test_revoked_consent_is_refused_once_the_list_applies_and_after_a_reboot(
    stage: Stage,
) -> None:
    token = stage.token()
    outcome = stage.car.unit.apply_revocations(
        stage.revocation_list(grants=[grant_digest(stage.root_grant)])
    )
    assert outcome.applied, outcome.detail
    assert outcome.version == 1
    assert stage.car.unit.revocations_version == 1
    assert stage.present(token) is Reason.GRANT_REVOKED
    stage.world.reboot(stage.car)
    assert stage.car.unit.revocations_version == 1
    assert stage.present(token) is Reason.GRANT_REVOKED
    assert stage.car.body.trunk_openings == 0


def test_a_revoked_carrier_key_and_token_id(stage: Stage) -> None:
    token = stage.token()
    stage.car.unit.apply_revocations(stage.revocation_list(keys=[stage.carrier.public_key.kid]))
    assert stage.present(token) is Reason.KEY_REVOKED
    stage.car.unit.apply_revocations(stage.revocation_list())  # the carrier key is reinstated
    other = stage.token()
    stage.car.unit.apply_revocations(stage.revocation_list(tokens=[_token_id(other)]))
    assert stage.present(other) is Reason.TOKEN_REVOKED


def _token_id(token: bytes) -> bytes:
    return inspect_unverified(token).claims.token_id


def test_rolled_back_list_is_refused_also_after_a_reboot(stage: Stage) -> None:
    old = stage.revocation_list()
    new = stage.revocation_list(grants=[grant_digest(stage.carrier_grant)])
    assert stage.car.unit.apply_revocations(old).applied
    assert stage.car.unit.apply_revocations(new).applied
    replay = stage.car.unit.apply_revocations(old)
    assert replay.reason is Reason.ROLLBACK
    assert replay.version == 2
    again = stage.car.unit.apply_revocations(new)
    assert again.reason is Reason.ROLLBACK  # equal is a replay, refused too
    stage.world.reboot(stage.car)
    assert stage.car.unit.apply_revocations(old).reason is Reason.ROLLBACK
    assert stage.present(stage.token()) is Reason.GRANT_REVOKED


def test_a_forged_list_is_refused_and_changes_nothing(stage: Stage) -> None:
    forged = sign_revocation_list(
        SigningKey.generate(), version=99, issued_at=stage.world.now,
        grants=[grant_digest(stage.root_grant)],
    )
    outcome = stage.car.unit.apply_revocations(forged)
    assert outcome.reason is Reason.UNKNOWN_KEY
    assert stage.car.unit.revocations_version == 0
    assert stage.present(stage.token()) is Reason.ALLOWED


def test_a_handheld_carries_a_newer_list_to_a_car_in_a_dead_zone(stage: Stage) -> None:
    token = stage.token()
    revoking = stage.revocation_list(grants=[grant_digest(stage.root_grant)])
    # The car never heard of the list over LTE; a courier brings it along.
    assert stage.present(token, revocations=revoking) is Reason.GRANT_REVOKED
    assert stage.car.unit.revocations_version == 1
    kinds = stage.events.kinds()
    assert kinds.index(EventKind.REVOCATIONS_APPLIED) < kinds.index(EventKind.ACCESS_DENIED)


def test_a_carried_list_that_is_old_or_forged_does_not_block_the_delivery(stage: Stage) -> None:
    current = stage.revocation_list()
    assert stage.car.unit.apply_revocations(current).applied
    forged = sign_revocation_list(SigningKey.generate(), version=5, issued_at=stage.world.now)
    assert stage.present(stage.token(), revocations=forged) is Reason.ALLOWED
    stage.close_trunk()
    # The same list the car holds costs nothing and says nothing.
    before = len(stage.events.events)
    assert stage.present(stage.token(), revocations=current) is Reason.ALLOWED
    assert EventKind.REVOCATIONS_REFUSED not in stage.events.kinds()[before:]
    refused = [e for e in stage.events.events if e.kind is EventKind.REVOCATIONS_REFUSED]
    assert [e.reason for e in refused] == [Reason.UNKNOWN_KEY]


def test_superseded_token_rolljam(stage: Stage) -> None:
    captured = stage.token()
    stage.world.advance(60)
    fresh = stage.token()
    supersede = stage.revocation_list(supersede={b"order-9": stage.world.now})
    assert stage.present(fresh, revocations=supersede) is Reason.ALLOWED
    stage.close_trunk()
    assert stage.present(captured) is Reason.SUPERSEDED


def test_update_events_are_emitted_in_sequence(stage: Stage) -> None:
    stage.car.unit.apply_revocations(stage.revocation_list())
    stage.car.unit.apply_revocations(b"not a list")
    events = [e for e in stage.events.events if e.kind in (
        EventKind.REVOCATIONS_APPLIED, EventKind.REVOCATIONS_REFUSED)]
    assert [e.kind for e in events] == [
        EventKind.REVOCATIONS_APPLIED, EventKind.REVOCATIONS_REFUSED]
    assert events[0].reason is None
    assert "v1" in events[0].detail
    assert events[1].reason is Reason.MALFORMED
    assert all(e.at == stage.world.now for e in events)
    assert stage.events.gaps == []


def test_trust_update_rotates_the_root_and_persists(stage: Stage) -> None:
    now = stage.world.now
    new_root = SigningKey.generate()
    update = sign_trust_update(
        stage.world.carmaker_key, version=1, issued_at=now,
        set_keys=[
            KeyEntry(role=Role.ROOT, name="root-2", key=new_root.public_key,
                     not_before=now, not_after=now + 365 * DAY),
            KeyEntry(role=Role.ROOT, name="root-1", key=stage.world.carmaker_key.public_key,
                     not_before=0, not_after=now + DAY),
        ],
    )
    outcome = stage.car.unit.apply_trust_update(update)
    assert outcome.applied, outcome.detail
    assert stage.events.kinds()[-1] is EventKind.TRUST_UPDATED
    assert stage.car.unit.apply_trust_update(update).reason is Reason.ROLLBACK
    assert stage.events.kinds()[-1] is EventKind.TRUST_UPDATE_REFUSED
    # The new root's list is accepted; after the overlap the old root's grants end.
    by_new = sign_revocation_list(new_root, version=1, issued_at=now)
    assert stage.car.unit.apply_revocations(by_new).applied
    stage.world.reboot(stage.car)
    assert stage.car.unit.apply_trust_update(update).reason is Reason.ROLLBACK
    token = stage.token()
    assert stage.present(token) is Reason.ALLOWED
    stage.close_trunk()
    stage.world.advance(DAY)
    assert stage.present(stage.token()) is Reason.KEY_NOT_VALID


def test_updates_need_trusted_time(stage: Stage) -> None:
    stage.car.clock.advance(-3600)
    outcome = stage.car.unit.apply_revocations(stage.revocation_list())
    assert outcome.reason is Reason.CLOCK_UNTRUSTED
    assert stage.car.unit.revocations_version == 0


def test_boot_with_roots_persists_revocations(tmp_path: Path) -> None:
    from trunkkey import ManualClock, TrustStore

    root = SigningKey.generate()
    vehicle_key = SigningKey.generate()
    kwargs: dict[str, object] = {
        "vehicle_id": "VIN-BOOT-1", "vehicle_key": vehicle_key, "trust_store": TrustStore(),
        "carmaker_key": root.public_key, "clock": ManualClock(START),
        "actuator": SimulatedBody(), "gps": SimulatedGps(PARKED),
    }
    unit = VehicleUnit.boot(tmp_path, roots=[RootKey(key=root.public_key)], **kwargs)
    listing = sign_revocation_list(root, version=3, issued_at=START, tokens=[bytes(16)])
    assert unit.apply_revocations(listing).applied
    unit.close()
    again = VehicleUnit.boot(tmp_path, roots=[RootKey(key=root.public_key)], **kwargs)
    assert again.revocations_version == 3
    assert (tmp_path / "revocations.cbor").read_bytes()
    again.close()


def test_consent_anchors_must_be_this_cars(tmp_path: Path) -> None:
    from trunkkey import ManualClock, MemoryLedger, TrustStore

    root = SigningKey.generate()
    key = SigningKey.generate()
    common: dict[str, object] = {
        "trust_store": TrustStore(), "carmaker_key": root.public_key,
        "ledger": MemoryLedger(), "time_store": MemoryTimeStore(),
        "clock": ManualClock(START), "actuator": SimulatedBody(), "gps": SimulatedGps(),
    }
    other_car = consent_verifier(
        vehicle_id="VIN-OTHER", vehicle_key=key, roots=[RootKey(key=root.public_key)]
    )
    with pytest.raises(InvalidRequest):
        VehicleUnit(vehicle_id="VIN-MINE", vehicle_key=key, consent=other_car, **common)  # type: ignore[arg-type]
    other_key = consent_verifier(
        vehicle_id="VIN-MINE", vehicle_key=SigningKey.generate(),
        roots=[RootKey(key=root.public_key)],
    )
    with pytest.raises(InvalidRequest):
        VehicleUnit(vehicle_id="VIN-MINE", vehicle_key=key, consent=other_key, **common)  # type: ignore[arg-type]
