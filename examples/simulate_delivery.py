"""The whole happy path of a delivery into a parked car, a return pickup, then consent.

The last part is the consent flow (issue 4): the owner consents once in the
carmaker's app, the carmaker signs a grant to the retailer, the retailer
delegates to its carrier, the carrier mints the courier's token, and a car
that trusts only its carmaker verifies the whole chain offline. Then the
owner withdraws consent and a courier's handheld carries the revocation to
the car, parked where there is no signal. Last, a delivery bound to the
parcels of its order (issue 19): a courier with the wrong parcel is refused
and the token stays unspent; the right parcel opens, and the receipt says
which of the order's parcels went in. Then a car that keeps its secrets (issue 15):
its carmaker root becomes a hybrid Ed25519 + ML-DSA-65 key, which signs in the
retailer's token key; a token sealed to the car opens it, and an eavesdropper
records bytes it can name nothing in. Last of all, a car that makes its own
KEM keys: the carmaker endorses each one the car proposes in a trust update
bound to that car, and the old key stops opening tokens when its overlap ends.

Run it with no arguments:  python examples/simulate_delivery.py

Everything runs on simulated time and simulated locks; the keys, the
signatures, the proofs and the durable ledger are real.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from trunkkey import (
    Action,
    Algorithm,
    CarPublicKey,
    Geofence,
    Issuer,
    Location,
    Purpose,
    Reason,
    SigningKey,
    make_proof,
    seal,
)
from trunkkey.audit import audit_log
from trunkkey.consent import (
    KemKeyEntry,
    KeyEntry,
    Role,
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
from trunkkey.logentry import EntryKind
from trunkkey.testing.vehicle import RETAILER, Car, World, courier_gossip, courier_present
from trunkkey.vehicle import (
    Event,
    EventKind,
    GapDetector,
    UnitState,
    parcels_in_receipt,
    verify_kem_proposal,
    verify_receipt,
)

#: 2027-06-01 08:00 UTC: the morning of delivery day.
START = int(datetime(2027, 6, 1, 8, 0, tzinfo=UTC).timestamp())
MUNICH_CAR_PARK = Location.from_degrees(48.137154, 11.576124)
CARRIER = "carrier.example"
DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One claim the story makes, with what actually happened."""

    label: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


def _clock(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _show(value: object) -> str:
    """Enums by their stable string value, containers element-wise."""
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return str(value.value) if isinstance(value, Enum) else str(value)


_CUSTOMER_TEXT = {
    EventKind.TRUNK_OPENED: "Your courier has opened your trunk.",
    EventKind.TRUNK_CLOSED: "The trunk is closed.",
    EventKind.RELOCKED: "Your car is locked again.",
    EventKind.ACCESS_DENIED: "Someone tried to open your car and was refused.",
}


def run(state_dir: str, say: Callable[[str], None] = print) -> list[Check]:
    checks: list[Check] = []

    def check(label: str, expected: object, actual: object) -> None:
        c = Check(label=label, expected=_show(expected), actual=_show(actual))
        checks.append(c)
        say(f"      {'ok ' if c.ok else 'BAD'} {label}: expected {c.expected}, got {c.actual}")

    def step(text: str) -> None:
        say(f"[{_clock(world.now)}] {text}")

    world = World(start=START, state_dir=state_dir)
    step("Carmaker enrols car VIN-MUC-0001: vehicle key made, retailer key trusted, unit booted.")
    car = world.enrol_car("VIN-MUC-0001")
    notifications = GapDetector()
    car.unit.subscribe(notifications)

    def notify_customer(event: Event) -> None:
        text = _CUSTOMER_TEXT.get(event.kind)
        if text is not None and event.at is not None:
            say(f"      customer's phone <- {_clock(event.at)} {text}")

    car.unit.subscribe(notify_customer)
    step("Owner parks in the Munich car park and confirms the place (50 m geofence).")
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    step("Courier's handheld has a fresh device key for today's route.")
    token = world.mint(
        car, courier=courier, geofence=place, starts_in=3600, window=4 * 3600,
        order_ref=b"order-1001",
    )
    step(f"Retailer mints a trunk token for 09:00-13:00, {len(token)} bytes, bound to the device.")
    world.advance(2 * 3600 + 17 * 60)
    step("Courier arrives at the car; the handheld asks for a challenge and signs it.")
    outcome = courier_present(car, token, courier)
    check("courier's token opens the trunk", Reason.ALLOWED, outcome.reason)
    check(
        "only the trunk is open (trunk, doors)", (True, False),
        (car.body.trunk_unlatched, car.body.doors_unlocked),
    )
    check("unit state", UnitState.TRUNK_OPEN, car.unit.state)
    world.advance(40)
    step("Package in; the courier closes the trunk.")
    car.unit.trunk_closed()
    check("car relocked", True, car.body.locked)
    receipt_bytes = car.unit.receipts[-1]
    receipt = verify_receipt(
        receipt_bytes, car.unit.public_key, vehicle_id=car.vehicle_id,
        token_id=outcome.token_id,
    )
    step(
        f"Retailer verifies the signed receipt ({len(receipt_bytes)} bytes): "
        f"{receipt.purpose.value}, opened {_clock(receipt.opened_at)}, closed "
        f"{_clock(receipt.closed_at or 0)}, relocked {_clock(receipt.relocked_at)}."
    )
    check("receipt purpose", Purpose.DELIVERY, receipt.purpose)
    check("receipt relock cause", "closed", receipt.relock_cause)
    step("The car's event log, as the backend received it:")
    for event in notifications.events:
        say(f"        #{event.boot}.{event.seq} {_clock(event.at or 0)} {event.kind.value}")
    check("no gap in the event sequence", [], notifications.gaps)
    check(
        "customer saw the delivery",
        [EventKind.TRUNK_OPENED, EventKind.TRUNK_CLOSED, EventKind.RELOCKED],
        [k for k in notifications.kinds() if k in
         (EventKind.TRUNK_OPENED, EventKind.TRUNK_CLOSED, EventKind.RELOCKED)],
    )

    step("The core checks: each of these must be refused.")
    world.advance(60)
    check("a second try with the same token", Reason.ALREADY_USED,
          courier_present(car, token, courier).reason)
    cabin = world.mint(car, courier=courier, geofence=place)
    check("a cabin unlock with a trunk token", Reason.WRONG_ACTION,
          courier_present(car, cabin, courier, action=Action.UNLOCK_RELOCK).reason)
    other = world.mint("VIN-HAM-0002", courier=courier)
    check("a token for another car", Reason.WRONG_VEHICLE,
          courier_present(car, other, courier).reason)
    late = world.mint(car, courier=courier, geofence=place, window=600)
    world.advance(601 + 60)
    check("a late token (window over)", Reason.EXPIRED, courier_present(car, late, courier).reason)
    check("car still locked after every refusal", True, car.body.locked)

    _return_pickup(world, car, place, step, check)
    _consent_delivery(world, step, check)
    _owner_verifies_history(world, car, step, check)
    _parcel_delivery(world, step, check)
    _sealed_delivery(world, step, check)
    _kem_rotation(world, step, check)
    return checks


def _kem_rotation(
    world: World, step: Callable[[str], None], check: Callable[[str, object, object], None],
) -> None:
    """A car makes its own KEM keys; the carmaker endorses each by a signed, bound update."""
    world.advance(DAY)
    step("VIN-MUC-0005 makes its own KEM keys: only their public halves leave the car.")
    car = world.enrol_car("VIN-MUC-0005", consent=True, kem_rotation=True)
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    version = 0

    def endorse(*keys: tuple[CarPublicKey, int, int]) -> Reason:
        nonlocal version
        version += 1
        update = sign_trust_update(
            world.carmaker_key, version=version, issued_at=world.now, vehicle=car.vehicle_id,
            kem_keys=[KemKeyEntry(name=f"kem-{i}", key=key, not_before=nbf, not_after=naf)
                      for i, (key, nbf, naf) in enumerate(keys)])
        return car.unit.apply_trust_update(update).reason

    def proposed() -> CarPublicKey:
        if car.kem_keys is None:
            raise AssertionError("a car enrolled with kem_rotation keeps its KEM keys")
        signed = car.kem_keys.propose("x25519", now=world.now)  # the car's side
        key = verify_kem_proposal(signed, car.vehicle_key.public_key, vehicle_id=car.vehicle_id)
        if not isinstance(key, CarPublicKey):
            raise AssertionError("the car proposed an X25519 key")
        return key

    def delivery(key: CarPublicKey) -> Reason:
        token = world.mint(car, courier=courier, geofence=place, seal_to=key)
        reason = courier_present(car, token, courier).reason
        if reason is Reason.ALLOWED:
            world.advance(30)
            car.unit.trunk_closed()
        return reason

    first = proposed()
    check("a token sealed to a proposed, unendorsed key", Reason.CANNOT_OPEN, delivery(first))
    year = 365 * DAY
    check("the carmaker endorses the car's first KEM key", Reason.ALLOWED,
          endorse((first, world.now, world.now + year)))
    check("a token sealed to the endorsed key opens the trunk", Reason.ALLOWED, delivery(first))
    second = proposed()
    check("rotation: the new key from now, the old one for a day more", Reason.ALLOWED,
          endorse((second, world.now, world.now + year), (first, world.now - DAY,
                                                          world.now + DAY)))
    world.advance(DAY)
    world.reboot(car)
    check("after the overlap (and a reboot), a token sealed to the old key", Reason.CANNOT_OPEN,
          delivery(first))
    check("a token sealed to the new key opens the trunk", Reason.ALLOWED, delivery(second))
    step("The car proposed two keys, signed by its vehicle key; the carmaker endorsed each "
         "in a trust update bound to VIN-MUC-0005; the old key stopped opening when its "
         "day of overlap ended.")


def _sealed_delivery(
    world: World, step: Callable[[str], None], check: Callable[[str, object, object], None],
) -> None:
    """A sealed token to a hybrid-rooted car, and a rotating presence identifier:
    the eavesdropper's view."""
    world.advance(DAY)
    step("A car that keeps its secrets: VIN-MUC-0004 gets a KEM key and a presence secret.")
    car = world.enrol_car("VIN-MUC-0004", consent=True, sealed=True)
    token_key, root = _hybrid_root(world, car, step, check)
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    if car.kem_key is None or car.beacon is None:
        raise AssertionError("a sealed car has a KEM key and a beacon")
    stale = world.mint(car, courier=courier, geofence=place, seal_to=car.kem_key.public_key)
    check("a sealed token under the retailer's replaced key", Reason.UNKNOWN_KEY,
          courier_present(car, stale, courier).reason)
    presence = world.book(car, window=4 * 3600)
    signed = Issuer(token_key, RETAILER, clock=world.true_clock).mint(
        vehicle_id=car.vehicle_id, action=Action.TRUNK, not_before=world.now,
        expires=world.now + 4 * 3600, geofence=place, courier_key=courier.public_key,
        order_ref=b"order-4004",
    )
    token = seal(signed, car.kem_key.public_key)
    step(f"Retailer signs the token with the key the hybrid root installed and seals it "
         f"to the car "
         f"({len(token)} bytes); the courier's handheld gets it and the window's "
         f"{len(presence.ids)} presence identifiers, no secret.")
    world.advance(25 * 60)
    advertised = car.beacon.advertisement(world.now)
    check("the courier finds the car by its advertisement", True,
          advertised is not None and presence.matches(advertised, world.now))
    outcome = courier_present(car, token, courier)
    check("the sealed token opens the trunk", Reason.ALLOWED, outcome.reason)
    world.advance(30)
    car.unit.trunk_closed()
    recorded = token + (advertised or b"")
    names = (car.vehicle_id.encode(), RETAILER.encode(), b"order-4004")
    check("what an eavesdropper can name in what it recorded", "nothing",
          "nothing" if not any(name in recorded for name in names) else "something")
    step(f"The eavesdropper recorded {len(token)} bytes starting {token[:11].hex()} (a sealed "
         f"token, suite HPKE-4, to a car whose root is hybrid, {root.name}: Ed25519 + ML-DSA-65) "
         f"and the "
         f"advertisement {(advertised or b'').hex()}: bytes only.")
    world.advance(DAY)
    check("the next day, waiting for nobody, the car advertises", None,
          car.beacon.advertisement(world.now))


def _sealed_chain_delivery(  # noqa: PLR0917 -- one scene of the consent story
    world: World, car: Car, carrier: Issuer, courier: SigningKey, chain: bytes,
    place: Geofence, step: Callable[[str], None],
    check: Callable[[str, object, object], None],
) -> None:
    """The carrier seals its next token with the chain inside: the courier carries
    nothing else, and the grants that name the car travel encrypted too."""
    world.advance(3600)
    if car.kem_key is None:
        raise AssertionError("a sealed car has a KEM key")
    signed = carrier.mint(
        vehicle_id=car.vehicle_id, action=Action.TRUNK, not_before=world.now,
        expires=world.now + 4 * 3600, geofence=place, courier_key=courier.public_key,
        order_ref=b"order-2004",
    )
    sealed = seal(signed, car.kem_key.public_key, chain=chain)
    step(f"Carrier seals its next token to the car with the chain inside ({len(sealed)} "
         "bytes): the courier presents those bytes and nothing beside them.")
    outcome = courier_present(car, sealed, courier)
    check("a sealed token carrying its chain opens the trunk", Reason.ALLOWED, outcome.reason)
    world.advance(30)
    car.unit.trunk_closed()
    names = (car.vehicle_id.encode(), RETAILER.encode(), CARRIER.encode(), b"order-2004",
             *(chain[i:i + 16] for i in range(0, len(chain) - 15, 16)))
    check("what an eavesdropper can name in a sealed token and its chain", "nothing",
          "nothing" if not any(name in sealed for name in names) else "something")
    step(f"The eavesdropper recorded {len(sealed)} bytes starting {sealed[:11].hex()} (a "
         "sealed token with its consent chain inside, suite HPKE-4): bytes only.")


def _hybrid_root(
    world: World, car: Car, step: Callable[[str], None],
    check: Callable[[str, object, object], None],
) -> tuple[SigningKey, Algorithm]:
    """The carmaker hands the car to its hybrid root, which installs the retailer's new
    token key: the only key the sealed delivery verifies under.

    The token key stays Ed25519: an ML-DSA-44 token (2.4 kB of signature) is larger
    than the largest sealed bucket; the hybrid root guards which token keys the car
    trusts, and that is what a broken Ed25519 must not forge."""
    now, year = world.now, 365 * DAY
    classical = world.carmaker_key
    hybrid = SigningKey.generate(Algorithm.EDDSA_MLDSA65)
    to_hybrid = sign_trust_update(
        classical, version=1, issued_at=now, remove=[classical.kid],
        set_keys=[KeyEntry(role=Role.ROOT, name="carmaker", key=hybrid.public_key,
                           not_before=now - 60, not_after=now + 10 * year)],
    )
    check("the car's root becomes the hybrid root", Reason.ALLOWED,
          car.unit.apply_trust_update(to_hybrid).reason)
    token_key = SigningKey.generate()
    to_new_key = sign_trust_update(
        hybrid, version=2, issued_at=now, remove=[world.retailer_key.kid],
        set_keys=[KeyEntry(role=Role.ISSUER, name=RETAILER, key=token_key.public_key,
                           not_before=now, not_after=now + year)],
    )
    check("the hybrid root installs the retailer's new token key", Reason.ALLOWED,
          car.unit.apply_trust_update(to_new_key).reason)
    step(f"The carmaker's Ed25519 root hands the car to its hybrid root "
         f"({hybrid.public_key.algorithm.name}, {len(to_hybrid)} bytes); the hybrid root "
         f"swaps in the retailer's new token key ({len(to_new_key)} bytes).")
    return token_key, hybrid.public_key.algorithm


def _parcel_delivery(
    world: World, step: Callable[[str], None], check: Callable[[str, object, object], None],
) -> None:
    world.advance(DAY)
    step("Another day, another car: VIN-MUC-0003, and an order of two parcels.")
    car = world.enrol_car("VIN-MUC-0003")
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    order = ["1Z999AA10123456784", "1Z999AA10123456785"]
    token = world.mint(car, courier=courier, geofence=place, order_ref=b"order-3003",
                       parcels=order)
    step(f"Retailer mints a token bound to the order's two parcels ({len(token)} bytes): "
         "salted commitments, no identifier in it.")
    world.advance(20 * 60)
    step("The courier arrives holding a parcel of another order, and the handheld scans it.")
    wrong = courier_present(car, token, courier, scan=["1Z999AA10123456799"])
    check("the wrong parcel is refused", Reason.WRONG_PARCEL, wrong.reason)
    check("the car stays locked", True, car.body.locked)
    check("the token stays unspent", 0, car.ledger.count())
    step("The courier fetches the right parcel from the van; only one of the two was loaded.")
    world.advance(5 * 60)
    right = courier_present(car, token, courier, scan=order[:1])
    check("the right parcel opens the trunk", Reason.ALLOWED, right.reason)
    world.advance(30)
    car.unit.trunk_closed()
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key, token_id=right.token_id)
    delivered = parcels_in_receipt(receipt, token=token, parcels=order)
    partial = receipt.parcels is not None and receipt.parcels.partial
    step(f"Retailer reads the receipt against its order: delivered {', '.join(delivered)}"
         f"{' (partial delivery)' if partial else ''}.")
    check("the receipt records a partial delivery of the first parcel",
          (order[0], True), (*delivered, partial))


def _owner_verifies_history(
    world: World, car: Car, step: Callable[[str], None],
    check: Callable[[str, object, object], None],
) -> None:
    world.advance(3600)
    step("Evening: a courier's handheld carries the car's access log to the backend.")
    outcome = courier_gossip(world, car)
    check("the backend accepts the car's log", None, outcome.reason)
    check("the car pruned what the backend acknowledged", car.unit.access_log.size,
          car.unit.access_log.pruned)
    step("The owner downloads the car's history and checks it against the car's key alone.")
    export = world.history.export(car.vehicle_id, car.unit.receipts)
    evidence = [r.log for r in (verify_receipt(data, car.unit.public_key)
                                for data in export.receipts) if r.log is not None]
    audit = audit_log(
        vehicle_id=car.vehicle_id, vehicle_key=car.unit.public_key,
        checkpoints=export.checkpoints, entries=export.entries, evidence=evidence,
    )
    for finding in audit.findings:
        say_mark = "proven" if finding.proven else "NOT proven"
        step(f"  {say_mark}: {finding.text}")
    attempts = [e.entry for e in audit.entries if e.entry is not None
                and e.entry.kind in (EntryKind.TOKEN_ALLOWED, EntryKind.TOKEN_DENIED)]
    check("the owner's history is proven in full", True, audit.ok)
    check("attempts in the history (allowed, refused)", (2, 4), (
        sum(1 for a in attempts if a.kind is EntryKind.TOKEN_ALLOWED),
        sum(1 for a in attempts if a.kind is EntryKind.TOKEN_DENIED),
    ))


def _return_pickup(
    world: World, car: Car, place: object, step: Callable[[str], None],
    check: Callable[[str, object, object], None],
) -> None:
    world.advance(3 * 3600)
    step("Afternoon: the owner left a return in the trunk; the retailer mints a pickup token.")
    courier = SigningKey.generate()
    token = world.mint(
        car, courier=courier, geofence=place,  # type: ignore[arg-type]
        purpose=Purpose.RETURN_PICKUP, window=2 * 3600, order_ref=b"return-77",
    )
    world.advance(25 * 60)
    outcome = courier_present(car, token, courier)
    check("pickup token opens the trunk", Reason.ALLOWED, outcome.reason)
    step("Courier takes the parcel and walks away without closing the trunk.")
    world.advance(car.unit.config.relock_timeout)
    check("car relocked by itself after the timeout", True, car.body.locked)
    receipt = verify_receipt(car.unit.receipts[-1], car.unit.public_key, token_id=outcome.token_id)
    step(
        f"Receipt: {receipt.purpose.value}, relocked {_clock(receipt.relocked_at)} "
        f"({receipt.relock_cause}), closed_at={receipt.closed_at}."
    )
    check("pickup receipt", (Purpose.RETURN_PICKUP, "timeout"),
          (receipt.purpose, receipt.relock_cause))


def _consent_delivery(
    world: World, step: Callable[[str], None], check: Callable[[str, object, object], None],
) -> None:
    world.advance(3600)
    step("Carmaker enrols car VIN-MUC-0002: its only anchors are the carmaker root and its "
         "own key.")
    car = world.enrol_car("VIN-MUC-0002", consent=True, sealed=True)
    home = Geofence(lat_e7=MUNICH_CAR_PARK.lat_e7, lon_e7=MUNICH_CAR_PARK.lon_e7, radius_m=300)
    now = world.now
    consent = make_grant(
        grantee=world.retailer_key.public_key, grantee_name=RETAILER,
        access=access_mask([Action.TRUNK], [Purpose.DELIVERY, Purpose.RETURN_PICKUP]),
        not_before=now, expires=now + 30 * DAY, depth=1, vehicle_ids=[car.vehicle_id],
        places=[home], daily_limit=3,
    )
    root_grant = sign_root_grant(world.carmaker_key, consent)
    step(f"Owner consents once in the carmaker's app: trunk only, deliveries and returns, "
         f"30 days, near home, 3 a day. Carmaker signs the grant to the retailer "
         f"({len(root_grant)} bytes).")
    carrier_key = SigningKey.generate()
    scope = root_scope(consent)
    if not isinstance(scope, Scope):
        raise AssertionError(scope)
    delegation = make_grant(
        grantee=carrier_key.public_key, grantee_name=CARRIER,
        access=access_mask([Action.TRUNK], [Purpose.DELIVERY]),
        not_before=now, expires=now + 7 * DAY, depth=0,
    )
    carrier_grant = sign_delegation(world.retailer_key, scope, delegation)
    chain = encode_chain([root_grant, carrier_grant])
    step(f"Retailer delegates trunk deliveries for a week to its carrier "
         f"({len(carrier_grant)} bytes); the chain is {len(chain)} bytes.")
    place = world.park(car, MUNICH_CAR_PARK, radius_m=50)
    courier = SigningKey.generate()
    carrier = Issuer(carrier_key, CARRIER, clock=world.true_clock)
    token = carrier.mint(
        vehicle_id=car.vehicle_id, action=Action.TRUNK, not_before=world.now,
        expires=world.now + 4 * 3600, geofence=place, courier_key=courier.public_key,
        order_ref=b"order-2002",
    )
    step(f"Carrier mints the courier's token ({len(token)} bytes); the car has never "
         "heard of the retailer or the carrier.")
    world.advance(45 * 60)
    challenge = car.unit.challenge()
    proof = make_proof(courier, token=token, vehicle_id=car.vehicle_id, challenge=challenge)
    step(f"Courier at the car, offline: presentation = chain {len(chain)} + token "
         f"{len(token)} + proof {len(proof)} = {len(chain) + len(token) + len(proof)} bytes.")
    outcome = car.unit.present(
        token, action=Action.TRUNK, proof=proof, challenge=challenge, chain=chain
    )
    check("token under carrier -> retailer -> consent -> root opens the trunk",
          Reason.ALLOWED, outcome.reason)
    world.advance(30)
    car.unit.trunk_closed()
    check("consent car relocked", True, car.body.locked)
    _sealed_chain_delivery(world, car, carrier, courier, chain, place, step, check)

    world.advance(DAY)
    step("Next day the owner withdraws consent; the carmaker signs revocation list v1.")
    revocation = sign_revocation_list(
        world.carmaker_key, version=1, issued_at=world.now, grants=[grant_digest(root_grant)]
    )
    step("The car is parked in a garage with no signal; a courier's handheld brings the list.")
    second = carrier.mint(
        vehicle_id=car.vehicle_id, action=Action.TRUNK, not_before=world.now,
        expires=world.now + 4 * 3600, geofence=place, courier_key=courier.public_key,
        order_ref=b"order-2003",
    )
    refused = courier_present(car, second, courier, chain=chain, revocations=revocation)
    check("the car applies the carried list, then refuses the chain", Reason.GRANT_REVOKED,
          refused.reason)
    check("revocation list held by the car", 1, car.unit.revocations_version)
    check("consent car still locked", True, car.body.locked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line)

    with tempfile.TemporaryDirectory(prefix="trunkkey-sim-") as state_dir:
        checks = run(state_dir, say)
    bad = [c for c in checks if not c.ok]
    print(f"\n{len(checks) - len(bad)}/{len(checks)} checks as expected.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
