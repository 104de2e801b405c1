"""One scene per attack on a delivery into a parked car, each with its outcome and reason.

Run it with no arguments:  python examples/attacks.py

Every scene builds a fresh world (carmaker, retailer, one car with a durable
ledger; for the consent scenes, a car whose only anchor is its carmaker's
root, the owner's consent and a carrier under the retailer) on simulated
time, plays the attack, and compares the reason the car gave with the reason
it should give. The car must stay locked throughout, except for the honest
openings each scene uses as a control.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from world import sign_unchecked

from trunkkey import (
    Action,
    Algorithm,
    Geofence,
    Issuer,
    Location,
    Purpose,
    Reason,
    SigningKey,
    cbor,
    make_proof,
    seal,
)
from trunkkey.checkpoint import LogBundle
from trunkkey.consent import (
    Grant,
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
from trunkkey.cose import Typ, parse_sign1, protected_header, sign1
from trunkkey.history import HistoryOutcome
from trunkkey.logentry import EntryKind, LogEntry, decode_entry
from trunkkey.testing.vehicle import RETAILER, Car, World, courier_gossip, courier_present
from trunkkey.vehicle import AccessLog, MemoryJournal, make_time_sync

START = int(datetime(2027, 6, 1, 9, 0, tzinfo=UTC).timestamp())
PARKED = Location.from_degrees(52.520008, 13.404954)  # Berlin, Alexanderplatz
REFUSED, ACCEPTED = "refused", "accepted"
CARRIER = "carrier.example"
DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    label: str
    expected: str
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual


@dataclass(slots=True, kw_only=True)
class Scene:
    key: str
    title: str
    story: str
    attempts: list[Attempt] = field(default_factory=list)
    #: The car's locks were closed at the end and never opened by the attacker.
    car_safe: bool = True

    @property
    def ok(self) -> bool:
        return self.car_safe and all(a.ok for a in self.attempts)

    def expect(self, label: str, expected: Reason | str, actual: Reason | str) -> None:
        self.attempts.append(Attempt(label=label, expected=str(expected), actual=str(actual)))


class Stage:
    """A fresh world with one parked car, a courier and the means to play a scene."""

    def __init__(self, state_dir: Path, *, consent: bool = False) -> None:
        self.world = World(start=START, state_dir=state_dir)
        self.car: Car = self.world.enrol_car("VIN-BER-0001", consent=consent, sealed=True)
        self.place = self.world.park(self.car, PARKED, radius_m=50)
        self.courier = SigningKey.generate()
        self.attacker = SigningKey.generate()
        self.consent: Consent | None = Consent(self) if consent else None

    def token(self, **kwargs: object) -> bytes:
        kwargs.setdefault("courier", self.courier)
        kwargs.setdefault("geofence", self.place)
        return self.world.mint(self.car, **kwargs)  # type: ignore[arg-type]

    def sealed(self, **kwargs: object) -> bytes:
        """A token sealed to this car's KEM key: the courier carries bytes it cannot read."""
        kem = self.car.kem_key
        if kem is None:
            raise AssertionError("the stage's car has a KEM key")
        return self.token(seal_to=kem.public_key, **kwargs)

    def present(self, token: bytes, key: SigningKey | None = None, **kw: object) -> Reason:
        return courier_present(self.car, token, key or self.courier, **kw).reason  # type: ignore[arg-type]

    def deliver(self, token: bytes) -> Reason:
        """The honest courier's whole visit: open, put the parcel in, close."""
        reason = self.present(token)
        self.world.advance(30)
        self.car.unit.trunk_closed()
        return reason


class Consent:
    """The owner's consent (carmaker -> retailer, 30 days) and its delegation to a carrier."""

    def __init__(self, stage: Stage) -> None:
        world, now = stage.world, stage.world.now
        self.stage = stage
        self.home = Geofence(lat_e7=PARKED.lat_e7, lon_e7=PARKED.lon_e7, radius_m=300)
        self.grant = make_grant(
            grantee=world.retailer_key.public_key, grantee_name=RETAILER,
            access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=now - 60,
            expires=now + 30 * DAY, depth=1, vehicle_ids=[stage.car.vehicle_id],
            places=[self.home],
        )
        scope = root_scope(self.grant)
        if not isinstance(scope, Scope):
            raise AssertionError(scope)
        self.scope = scope
        self.root_grant = sign_root_grant(world.carmaker_key, self.grant)
        self.carrier_key = SigningKey.generate()
        self.carrier_grant = sign_delegation(world.retailer_key, scope, self.delegation())
        self.chain = encode_chain([self.root_grant, self.carrier_grant])
        self.carrier = Issuer(self.carrier_key, CARRIER, clock=world.true_clock)
        self.version = 0

    def delegation(self, **kw: object) -> Grant:
        now = self.stage.world.now
        request: dict[str, object] = {
            "grantee": self.carrier_key.public_key, "grantee_name": CARRIER,
            "access": access_mask([Action.TRUNK], [Purpose.DELIVERY]),
            "not_before": now - 60, "expires": now + 7 * DAY, "depth": 0,
        }
        request.update(kw)
        return make_grant(**request)  # type: ignore[arg-type]

    def token(self, **kw: object) -> bytes:
        """The carrier mints the courier's token under the chain."""
        now = self.stage.world.now
        request: dict[str, object] = {
            "vehicle_id": self.stage.car.vehicle_id, "action": Action.TRUNK,
            "not_before": now, "expires": now + 4 * 3600, "geofence": self.stage.place,
            "courier_key": self.stage.courier.public_key, "order_ref": b"order-77",
        }
        request.update(kw)
        return self.carrier.mint(**request)  # type: ignore[arg-type]

    def present(self, token: bytes, chain: bytes | None = None, **kw: object) -> Reason:
        return courier_present(
            self.stage.car, token, self.stage.courier,
            chain=self.chain if chain is None else chain, **kw,  # type: ignore[arg-type]
        ).reason

    def deliver(self, token: bytes, revocations: bytes | None = None) -> Reason:
        reason = self.present(token, revocations=revocations)
        self.stage.world.advance(30)
        self.stage.car.unit.trunk_closed()
        return reason

    def revocation_list(self, version: int | None = None, **kw: object) -> bytes:
        """The carmaker signs a revocation snapshot (the next version unless told)."""
        self.version = self.version + 1 if version is None else version
        return sign_revocation_list(
            self.stage.world.carmaker_key, version=self.version,
            issued_at=self.stage.world.now, **kw,  # type: ignore[arg-type]
        )


def _consent(stage: Stage) -> Consent:
    if stage.consent is None:
        raise AssertionError("a consent scene needs a consent stage")
    return stage.consent


def scene_replay(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    challenge = stage.car.unit.challenge()
    proof = make_proof(stage.courier, token=token, vehicle_id=stage.car.vehicle_id,
                       challenge=challenge)
    scene.expect("honest delivery (control)", Reason.ALLOWED,
                 stage.car.unit.present(token, action=Action.TRUNK, proof=proof,
                                        challenge=challenge).reason)
    stage.world.advance(30)
    stage.car.unit.trunk_closed()
    stage.world.advance(60)
    scene.expect("recorded token + proof + challenge replayed", Reason.CHALLENGE_UNKNOWN,
                 stage.car.unit.present(token, action=Action.TRUNK, proof=proof,
                                        challenge=challenge).reason)
    scene.expect("token replayed with a fresh challenge", Reason.ALREADY_USED,
                 stage.present(token))


def scene_other_car(stage: Stage, scene: Scene) -> None:
    token = stage.world.mint("VIN-BER-0099", courier=stage.courier, geofence=stage.place)
    scene.expect("token for VIN-BER-0099 at VIN-BER-0001", Reason.WRONG_VEHICLE,
                 stage.present(token))


def scene_sniffed(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("bare sniffed token", Reason.PROOF_MISSING,
                 courier_present(stage.car, token, None).reason)
    scene.expect("sniffed token, proof from the thief's own key", Reason.PROOF_INVALID,
                 stage.present(token, stage.attacker))
    scene.expect("the real courier still delivers (token unspent)", Reason.ALLOWED,
                 stage.deliver(token))


def scene_relay(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    ttl = stage.car.unit.config.challenge_ttl
    scene.expect(f"relay adds {ttl + 15} s between challenge and answer",
                 Reason.CHALLENGE_EXPIRED,
                 stage.present(token, delay=lambda: stage.world.advance(ttl + 15)))
    scene.expect("courier at the car, answer in 2 s (token unspent)", Reason.ALLOWED,
                 stage.present(token, delay=lambda: stage.world.advance(2)))
    stage.car.unit.trunk_closed()


def scene_window(stage: Stage, scene: Scene) -> None:
    early = stage.token(starts_in=3600, window=3600)
    scene.expect("an hour before the window opens", Reason.NOT_YET_VALID, stage.present(early))
    late = stage.token(window=1800)
    stage.world.advance(1800 + 120)
    scene.expect("two minutes after the window (beyond the 60 s skew)", Reason.EXPIRED,
                 stage.present(late))


def scene_moved(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    stage.car.gps.position = Location.from_degrees(52.54, 13.404954)  # ~2.2 km north
    scene.expect("car 2.2 km from the owner's confirmed place", Reason.CAR_MOVED,
                 stage.present(token))
    stage.car.gps.position = Location.from_degrees(52.5207, 13.404954)  # ~77 m
    scene.expect("car reads 77 m from the centre of a 50 m fence", Reason.OUTSIDE_GEOFENCE,
                 stage.present(token))
    stage.car.gps.position = None
    scene.expect("no GPS fix", Reason.LOCATION_UNKNOWN, stage.present(token))


def scene_cabin(stage: Stage, scene: Scene) -> None:
    token = stage.token(action=Action.TRUNK)
    scene.expect("trunk token asked to unlock the doors", Reason.WRONG_ACTION,
                 stage.present(token, action=Action.UNLOCK_RELOCK))
    scene.expect("trunk token opens the trunk (control)", Reason.ALLOWED, stage.present(token))
    scene.expect("doors stayed locked during the opening", "locked",
                 "unlocked" if stage.car.body.doors_unlocked else "locked")
    stage.car.unit.trunk_closed()


def scene_clock(stage: Stage, scene: Scene) -> None:
    world, car = stage.world, stage.car
    # An old time-sync message, captured yesterday from the carmaker's server.
    old_nonce = car.unit.time_sync_nonce()
    captured = make_time_sync(world.carmaker_key, vehicle_id=car.vehicle_id,
                              nonce=old_nonce, time=world.now)
    world.time_sync(car)  # the real answer, consumed by the car
    token = stage.token(window=1800)
    world.advance(3 * 3600)
    car.clock.advance(-3 * 3600)  # the attacker sets the car's clock back into the window
    scene.expect("expired token after the clock was set back 3 h", Reason.CLOCK_UNTRUSTED,
                 stage.present(token))
    car.unit.time_sync_nonce()
    scene.expect("attacker replays a captured time-sync message", REFUSED,
                 ACCEPTED if car.unit.apply_time_sync(captured).accepted else REFUSED)
    forged = make_time_sync(stage.attacker, vehicle_id=car.vehicle_id,
                            nonce=car.unit.time_sync_nonce(), time=world.now - 3 * 3600)
    scene.expect("attacker signs his own time-sync", REFUSED,
                 ACCEPTED if car.unit.apply_time_sync(forged).accepted else REFUSED)
    scene.expect("still refusing before a genuine sync", Reason.CLOCK_UNTRUSTED,
                 stage.present(token))
    scene.expect("carmaker's signed, nonce-bound sync", ACCEPTED,
                 ACCEPTED if world.time_sync(car).accepted else REFUSED)
    scene.expect("the token, at the true time", Reason.EXPIRED, stage.present(token))


def scene_forged(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    parts = parse_sign1(token)
    tampered = bytearray(token)
    at = token.index(parts.payload) + len(parts.payload) - 3
    tampered[at] ^= 0x01
    scene.expect("one byte of the claims changed", Reason.BAD_SIGNATURE,
                 stage.present(bytes(tampered)))
    resigned = sign1(stage.attacker, parts.payload, typ=Typ.TOKEN)
    scene.expect(f"claims re-signed by the attacker as {RETAILER!r}", Reason.UNKNOWN_KEY,
                 stage.present(resigned))
    receipt_key = stage.car.vehicle_key  # the car signs receipts; not tokens
    as_receipt = sign1(receipt_key, parts.payload, typ=Typ.RECEIPT)
    scene.expect("a signed receipt passed off as a token", Reason.WRONG_TYPE,
                 stage.present(as_receipt))
    scene.expect("the genuine token still works (control)", Reason.ALLOWED, stage.deliver(token))


def scene_reboot(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("honest delivery (control)", Reason.ALLOWED, stage.deliver(token))
    stage.world.reboot(stage.car)
    scene.expect("same token after a reboot over the same ledger file", Reason.ALREADY_USED,
                 stage.present(token))


def scene_crash(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    stage.car.body.fail_next = "open_trunk"
    scene.expect("actuator fails after the token was spent", Reason.ACTUATOR_FAILED,
                 stage.present(token))
    scene.expect("car after the fault", "locked",
                 "locked" if stage.car.body.locked else "open")
    stage.world.reboot(stage.car)
    scene.expect("the same token after a reboot", Reason.ALREADY_USED, stage.present(token))


def scene_enrol(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("honest opening (control)", Reason.ALLOWED, stage.present(token))
    for request in ("enrol-key", "remove-key", "start-engine", "drive"):
        scene.expect(f"{request!r} while the trunk is open", Reason.WRONG_ACTION,
                     stage.present(token, action=request))
    stage.car.unit.trunk_closed()


def scene_widened_scope(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    now = stage.world.now
    wide = c.delegation(
        access=access_mask([Action.TRUNK, Action.UNLOCK_RELOCK], [Purpose.DELIVERY]),
        expires=now + 365 * DAY,
    )
    chain = encode_chain([c.root_grant, sign_unchecked(stage.world.retailer_key, wide)])
    scene.expect("retailer delegates a year and the cabin (consent: 30 days, trunk)",
                 Reason.SCOPE_WIDENED, c.present(c.token(), chain))
    deeper = c.delegation(depth=1)
    chain = encode_chain([c.root_grant, sign_unchecked(stage.world.retailer_key, deeper)])
    scene.expect("retailer lets the carrier delegate further", Reason.SCOPE_WIDENED,
                 c.present(c.token(), chain))
    scene.expect("the honest chain (control)", Reason.ALLOWED, c.deliver(c.token()))


def scene_expired_consent(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    short = make_grant(
        grantee=stage.world.retailer_key.public_key, grantee_name=RETAILER,
        access=c.grant.access, not_before=stage.world.now - 60,
        expires=stage.world.now + 3600, depth=1, vehicle_ids=[stage.car.vehicle_id],
    )
    scope = root_scope(short)
    if not isinstance(scope, Scope):
        raise AssertionError(scope)
    chain = encode_chain([
        sign_root_grant(stage.world.carmaker_key, short),
        sign_delegation(stage.world.retailer_key, scope,
                        c.delegation(expires=stage.world.now + 3600)),
    ])
    token = c.token(expires=stage.world.now + 3 * 3600)
    stage.world.advance(2 * 3600)
    scene.expect("token still in its window; the owner's consent ended an hour ago",
                 Reason.GRANT_EXPIRED, c.present(token, chain))


def scene_revoked_consent(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    token = c.token()
    pushed = stage.car.unit.apply_revocations(
        c.revocation_list(grants=[grant_digest(c.root_grant)]))
    scene.expect("carmaker pushes the owner's withdrawal over LTE", ACCEPTED,
                 ACCEPTED if pushed.applied else REFUSED)
    scene.expect("courier's token under the withdrawn consent", Reason.GRANT_REVOKED,
                 c.present(token))
    stage.world.reboot(stage.car)
    scene.expect("the same token after a reboot", Reason.GRANT_REVOKED, c.present(token))


def scene_dead_zone(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    revocation = c.revocation_list(keys=[c.carrier_key.public_key.kid])
    scene.expect("carrier key revoked; the list rides on the courier's handheld",
                 Reason.KEY_REVOKED, c.present(c.token(), revocations=revocation))
    scene.expect("the car now holds list version", "1", str(stage.car.unit.revocations_version))


def scene_carrier_outside_grant(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    cabin = c.token(action=Action.UNLOCK_RELOCK)
    scene.expect("carrier mints an unlock-relock token (granted: trunk only)",
                 Reason.SCOPE_WIDENED, c.present(cabin, action=Action.UNLOCK_RELOCK))
    elsewhere = c.token(geofence=Geofence.from_degrees(52.55, 13.40, 50))
    scene.expect("carrier mints a token for a place the owner never named",
                 Reason.SCOPE_WIDENED, c.present(elsewhere))
    pickup = c.token(purpose=Purpose.RETURN_PICKUP)
    scene.expect("carrier mints a return pickup (granted: deliveries)",
                 Reason.SCOPE_WIDENED, c.present(pickup))
    other = c.token(vehicle_id="VIN-BER-0099")
    scene.expect("carrier mints a token for a car outside the consent",
                 Reason.WRONG_VEHICLE, c.present(other))


def scene_rolled_back_list(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    old = c.revocation_list(version=1)
    new = c.revocation_list(version=2, grants=[grant_digest(c.carrier_grant)])
    applied = [stage.car.unit.apply_revocations(data).applied for data in (old, new)]
    scene.expect("lists v1 then v2 (revoking the carrier's grant) applied", ACCEPTED,
                 ACCEPTED if all(applied) else REFUSED)
    scene.expect("attacker replays the older, empty v1", Reason.ROLLBACK,
                 stage.car.unit.apply_revocations(old).reason)
    scene.expect("...slipped in alongside a presentation", Reason.GRANT_REVOKED,
                 c.present(c.token(), revocations=old))
    stage.world.reboot(stage.car)
    scene.expect("v1 again after a reboot", Reason.ROLLBACK,
                 stage.car.unit.apply_revocations(old).reason)


def scene_superseded(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    captured = c.token()  # jammed and recorded on the way to the courier
    stage.world.advance(60)
    reissued = c.token()
    supersede = c.revocation_list(supersede={b"order-77": stage.world.now})
    scene.expect("the re-issued token, carrying the supersession (control)", Reason.ALLOWED,
                 c.deliver(reissued, revocations=supersede))
    scene.expect("the captured, never-used older token", Reason.SUPERSEDED,
                 c.present(captured))


def _ed25519_half(hybrid: SigningKey) -> SigningKey:
    """What breaking Ed25519 gives an attacker: the Ed25519 half of a hybrid root."""
    seed = cbor.decode(hybrid.private_cose_key())[-2]  # AKP priv: ML-DSA-65 seed || Ed25519 seed
    return SigningKey.from_cose_key(
        cbor.encode({1: 1, -1: 6, -2: hybrid.public_key.raw[-32:], -4: seed[32:]}))


def scene_classical_update_to_hybrid_car(stage: Stage, scene: Scene) -> None:
    world, unit = stage.world, stage.car.unit
    now, year = world.now, 365 * DAY
    classical = world.carmaker_key
    hybrid = SigningKey.generate(Algorithm.EDDSA_MLDSA65)
    to_hybrid = sign_trust_update(
        classical, version=1, issued_at=now, remove=[classical.kid],
        set_keys=[KeyEntry(role=Role.ROOT, name="carmaker", key=hybrid.public_key,
                           not_before=now - 60, not_after=now + 10 * year)])
    scene.expect("the carmaker makes the car hybrid (Ed25519 root signs it, control)",
                 ACCEPTED, ACCEPTED if unit.apply_trust_update(to_hybrid).applied else REFUSED)
    # Years later Ed25519 falls: the attacker signs with the old classical root, and with
    # the hybrid root's own Ed25519 half, an update trusting the attacker's token key.
    takeover = [KeyEntry(role=Role.ISSUER, name=RETAILER, key=stage.attacker.public_key,
                         not_before=now, not_after=now + year)]
    old_root = sign_trust_update(classical, version=2, issued_at=now, set_keys=takeover)
    scene.expect("attacker signs with the retired Ed25519 root", Reason.UNKNOWN_KEY,
                 unit.apply_trust_update(old_root).reason)
    half = _ed25519_half(hybrid)
    payload = parse_sign1(sign_trust_update(half, version=2, issued_at=now,
                                            set_keys=takeover)).payload
    header = protected_header(Algorithm.EDDSA, Typ.TRUST_UPDATE, hybrid.kid)
    forged = _envelope(header, payload, half)
    scene.expect("attacker signs with the hybrid root's Ed25519 half, under its kid",
                 Reason.ALG_MISMATCH, unit.apply_trust_update(forged).reason)
    token_key = SigningKey.generate(Algorithm.MLDSA44)
    to_mldsa = sign_trust_update(
        hybrid, version=2, issued_at=now,
        set_keys=[KeyEntry(role=Role.ISSUER, name=RETAILER, key=token_key.public_key,
                           not_before=now, not_after=now + year)])
    scene.expect("the carmaker's hybrid update: token keys to ML-DSA-44 (control)", ACCEPTED,
                 ACCEPTED if unit.apply_trust_update(to_mldsa).applied else REFUSED)


def _envelope(header: bytes, payload: bytes, key: SigningKey) -> bytes:
    """A COSE_Sign1 with any protected header, signed by ``key``: an attacker's tool."""
    protected = cbor.encode(header)
    body = cbor.encode(payload)
    to_sign = b"\x84\x6aSignature1" + protected + b"\x40" + body
    return b"\xd2\x84" + protected + b"\xa0" + body + cbor.encode(key.sign(to_sign))


def _verdict(outcome: HistoryOutcome) -> str:
    return ACCEPTED if outcome.reason is None else outcome.reason.value


def _visits(stage: Stage) -> None:
    """An honest delivery, a refused attempt, and the handheld's gossip of both."""
    late = stage.token(window=60)
    stage.world.advance(120)
    stage.present(late)


def _rewritten(stage: Stage, keep: Callable[[int], bool], extra: int = 0) -> LogBundle:
    """A log rebuilt by someone holding the car's key: some entries kept, some new."""
    car = stage.car
    log = AccessLog(vehicle_id=car.vehicle_id, vehicle_key=car.vehicle_key,
                    store=MemoryJournal(), time=lambda: stage.world.now)
    for index, entry in enumerate(stage.world.history.raw_entries(car.vehicle_id)):
        if keep(index):
            log.append_bytes(entry)
    for _ in range(extra):
        log.append(LogEntry(kind=EntryKind.BOOT, at=None, boot=99))
    return log.bundle()


def scene_deleted_entry(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("honest delivery (control)", Reason.ALLOWED, stage.deliver(token))
    _visits(stage)
    honest = stage.car.unit.access_log.bundle()
    entries = [e for e in honest.entries
               if decode_entry(e).kind is not EntryKind.TOKEN_DENIED]
    dropped = LogBundle(honest.checkpoint, honest.start, tuple(entries), honest.consistency)
    scene.expect("the handheld drops the refused attempt on its way", Reason.LOG_GAP,
                 _verdict(stage.world.history.receive(stage.car.vehicle_id, dropped)))
    scene.expect("the next honest handheld carries the whole log", ACCEPTED,
                 _verdict(courier_gossip(stage.world, stage.car)))


def scene_forked_log(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("honest delivery (control)", Reason.ALLOWED, stage.deliver(token))
    _visits(stage)
    scene.expect("the car's log reaches the backend", ACCEPTED,
                 _verdict(courier_gossip(stage.world, stage.car)))
    # A tampered head unit holding the vehicle key re-signs history without
    # the refused attempt, then carries on writing.
    history = stage.world.history.entries(stage.car.vehicle_id)
    denied = next(i for i, e in enumerate(history) if e.kind is EntryKind.TOKEN_DENIED)
    forged = _rewritten(stage, lambda i: i != denied, extra=3)
    scene.expect("a re-signed log without the refused attempt", Reason.LOG_FORK,
                 _verdict(stage.world.history.receive(stage.car.vehicle_id, forged)))


def scene_rolled_back_log(stage: Stage, scene: Scene) -> None:
    token = stage.token()
    scene.expect("honest delivery (control)", Reason.ALLOWED, stage.deliver(token))
    _visits(stage)
    scene.expect("the car's log reaches the backend", ACCEPTED,
                 _verdict(courier_gossip(stage.world, stage.car)))
    # The head unit is restored from an image taken before the delivery.
    old = _rewritten(stage, lambda i: i < 2)
    scene.expect("the restored unit's smaller log", Reason.LOG_ROLLBACK,
                 _verdict(stage.world.history.receive(stage.car.vehicle_id, old)))


def scene_replayed_scan(stage: Stage, scene: Scene) -> None:
    first = stage.token(parcels=["PKG-BER-1"])
    challenge = stage.car.unit.challenge()
    # The attacker records the handheld's signed scan at the first delivery.
    recorded = make_proof(stage.courier, token=first, vehicle_id=stage.car.vehicle_id,
                          challenge=challenge, scan=["PKG-BER-1"])
    scene.expect("honest delivery of order 1 (control)", Reason.ALLOWED,
                 stage.car.unit.present(first, action=Action.TRUNK, proof=recorded,
                                        challenge=challenge).reason)
    stage.world.advance(30)
    stage.car.unit.trunk_closed()
    second = stage.token(parcels=["PKG-BER-2"])
    fresh = stage.car.unit.challenge()
    scene.expect("order 1's signed scan replayed with order 2's token", Reason.PROOF_INVALID,
                 stage.car.unit.present(second, action=Action.TRUNK, proof=recorded,
                                        challenge=fresh).reason)
    scene.expect("order 1's parcel scanned afresh for order 2", Reason.WRONG_PARCEL,
                 stage.present(second, scan=["PKG-BER-1"]))
    scene.expect("order 2's own parcel (token unspent)", Reason.ALLOWED,
                 stage.present(second, scan=["PKG-BER-2"]))
    stage.world.advance(30)
    stage.car.unit.trunk_closed()


def scene_tampered_sealed(stage: Stage, scene: Scene) -> None:
    sealed = stage.sealed(order_ref=b"order-4711")
    seen = "nothing" if not any(
        name in sealed for name in (b"VIN-BER-0001", RETAILER.encode(), b"order-4711")
    ) else "the car, issuer or order"
    scene.expect("what the courier's handheld can name in the sealed bytes", "nothing", seen)
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 0x01
    scene.expect("one bit of the ciphertext flipped", Reason.CANNOT_OPEN,
                 stage.present(bytes(flipped)))
    scene.expect("the encapsulated key swapped for the attacker's", Reason.CANNOT_OPEN,
                 stage.present(sealed[:11] + bytes(32) + sealed[43:]))
    scene.expect("cut to the first bucket's length", Reason.CANNOT_OPEN,
                 stage.present(sealed[:253]))
    scene.expect("the genuine sealed token delivers (control)", Reason.ALLOWED,
                 stage.deliver(sealed))


def scene_sealed_other_car(stage: Stage, scene: Scene) -> None:
    neighbour = stage.world.enrol_car("VIN-BER-0099", sealed=True)
    if neighbour.kem_key is None:
        raise AssertionError("the neighbour has a KEM key")
    to_neighbour = stage.token(seal_to=neighbour.kem_key.public_key)
    scene.expect("a token for this car sealed to the car next to it", Reason.CANNOT_OPEN,
                 stage.present(to_neighbour))
    kem = stage.car.kem_key
    if kem is None:
        raise AssertionError("the stage's car has a KEM key")
    for_neighbour = stage.world.mint(neighbour, courier=stage.courier, geofence=stage.place,
                                     seal_to=kem.public_key)
    scene.expect("the neighbour's token sealed to this car: opens, still not for it",
                 Reason.WRONG_VEHICLE, stage.present(for_neighbour))
    scene.expect("a token sealed to this car (control)", Reason.ALLOWED,
                 stage.deliver(stage.sealed()))


def scene_resealed_chain(stage: Stage, scene: Scene) -> None:
    c = _consent(stage)
    kem = stage.car.kem_key
    if kem is None:
        raise AssertionError("the stage's car has a KEM key")
    token = c.token()
    sealed = seal(token, kem.public_key, chain=c.chain)
    seen = "nothing" if not any(
        name in sealed for name in (b"VIN-BER-0001", CARRIER.encode(), c.root_grant[:16])
    ) else "the car, carrier or a grant"
    scene.expect("what the handheld can name in a token sealed with its chain", "nothing", seen)
    # Anyone can seal to the car's public key: the attacker seals the token with a
    # delegation it signed itself in place of the retailer's.
    forged = sign_delegation(stage.attacker, c.scope, c.delegation())
    resealed = seal(token, kem.public_key, chain=encode_chain([c.root_grant, forged]))
    scene.expect("re-sealed with a delegation the attacker signed", Reason.CHAIN_INVALID,
                 courier_present(stage.car, resealed, stage.courier).reason)
    scene.expect("the sealed chain and a chain in the clear beside it", Reason.MALFORMED,
                 courier_present(stage.car, sealed, stage.courier, chain=c.chain).reason)
    scene.expect("the genuine sealed token and chain deliver (control)", Reason.ALLOWED,
                 courier_present(stage.car, sealed, stage.courier).reason)
    stage.world.advance(30)
    stage.car.unit.trunk_closed()


#: Scenes played on a car whose only anchor is its carmaker's root.
CONSENT_SCENES = frozenset({
    "widened_scope", "expired_consent", "revoked_consent", "dead_zone",
    "carrier_outside_grant", "rolled_back_list", "superseded", "classical_update_to_hybrid",
    "resealed_chain",
})

SCENES: list[tuple[str, str, str, Callable[[Stage, Scene], None]]] = [
    ("replay", "Replay after delivery",
     "An eavesdropper recorded the courier's whole exchange and plays it back later.",
     scene_replay),
    ("other_car", "A token for another car",
     "A courier's token for one car is tried on the car parked next to it.", scene_other_car),
    ("sniffed", "Sniffed token without the device key",
     "The token was copied off the radio link; the courier's device key was not.",
     scene_sniffed),
    ("relay", "Relay slower than the challenge lifetime",
     "A relay stretches the link from a courier far away to the car; it takes time.",
     scene_relay),
    ("window", "Outside the delivery window",
     "Tokens tried before their window opens and after it has closed.", scene_window),
    ("moved", "The car was moved",
     "The owner confirmed a place; the car is elsewhere (towed, lent, or GPS spoofed).",
     scene_moved),
    ("cabin", "Cabin unlock with a trunk token",
     "A trunk-only token is used to ask for the doors.", scene_cabin),
    ("clock", "Clock rolled back",
     "An attacker sets the car's clock back to revive an expired token (a freeze attack).",
     scene_clock),
    ("forged", "Forged or re-signed token",
     "The claims are edited, re-signed with another key, or another signed object is "
     "passed off as a token.", scene_forged),
    ("reboot", "Reboot, then replay",
     "The unit is power-cycled in the hope that it forgets what it spent.", scene_reboot),
    ("crash", "Crash between consume and actuation",
     "The unit spends the token, then the actuator fails before the trunk opens.",
     scene_crash),
    ("enrol", "Key enrolment during an opening",
     "While the trunk is open, the handheld asks to enrol a key or start the car.",
     scene_enrol),
    ("replayed_scan", "A parcel scan replayed from another delivery",
     "The scan the handheld signed at one delivery is played back to open for another "
     "order, and the first order's parcel is scanned again for the second.",
     scene_replayed_scan),
    ("widened_scope", "Consent: a delegation wider than the consent",
     "The retailer signs its carrier more than the owner consented to.", scene_widened_scope),
    ("expired_consent", "Consent: expired",
     "The owner's consent ran out; the carrier still holds a token minted before.",
     scene_expired_consent),
    ("revoked_consent", "Consent: withdrawn",
     "The owner withdraws consent; the carmaker pushes a signed revocation list.",
     scene_revoked_consent),
    ("dead_zone", "Consent: revocation for a car without signal",
     "A carrier key is compromised; the car is in a garage; a handheld brings the list.",
     scene_dead_zone),
    ("carrier_outside_grant", "Consent: carrier acting outside the retailer's grant",
     "The carrier mints tokens its grant does not cover.", scene_carrier_outside_grant),
    ("rolled_back_list", "Consent: rolled-back revocation list",
     "An attacker replays an older, emptier revocation list to the car.",
     scene_rolled_back_list),
    ("superseded", "Consent: superseded token (RollJam)",
     "A token captured unused on the way; the order was re-issued with a newer token.",
     scene_superseded),
    ("classical_update_to_hybrid", "Trust: a classical-only update to a hybrid car",
     "Ed25519 is broken; the car's root is hybrid (Ed25519 and ML-DSA-65).",
     scene_classical_update_to_hybrid_car),
    ("deleted_entry", "Access log: an entry deleted on its way",
     "The handheld that carries the car's log to the backend drops a refused attempt.",
     scene_deleted_entry),
    ("forked_log", "Access log: history re-signed (a fork)",
     "A tampered head unit with the vehicle key signs a history without an attempt.",
     scene_forked_log),
    ("tampered_sealed", "Sealed token: altered on the way",
     "The courier's handheld carries a sealed token it cannot read; someone on the way flips "
     "a bit, swaps the encapsulated key, or cuts it short.", scene_tampered_sealed),
    ("sealed_other_car", "Sealed token: sealed to another car",
     "A token is sealed to the car next to it, or the neighbour's token is sealed to this "
     "car.", scene_sealed_other_car),
    ("resealed_chain", "Sealed token: its chain altered and re-sealed",
     "A delegated token travels sealed with its consent chain; anyone can seal to the "
     "car's public key, so an attacker re-seals the token with a chain of its own.",
     scene_resealed_chain),
    ("rolled_back_log", "Access log: rolled back",
     "The head unit is restored from an old image, its log shorter than one already seen.",
     scene_rolled_back_log),
]


def run(state_dir: str, only: Sequence[str] = ()) -> list[Scene]:
    scenes = []
    for key, title, story, play in SCENES:
        if only and key not in only:
            continue
        stage = Stage(Path(state_dir) / key, consent=key in CONSENT_SCENES)
        scene = Scene(key=key, title=title, story=story)
        body = stage.car.body
        openings_before = body.trunk_openings + body.door_unlocks
        play(stage, scene)
        controls = sum(1 for a in scene.attempts if a.expected == Reason.ALLOWED)
        openings = body.trunk_openings + body.door_unlocks - openings_before
        # Safe: locked at the end, and nothing opened beyond the honest controls.
        scene.car_safe = body.locked and openings == controls
        stage.car.unit.close()
        scenes.append(scene)
    return scenes


def render(scenes: Sequence[Scene], say: Callable[[str], None] = print) -> None:
    for number, scene in enumerate(scenes, 1):
        say(f"Scene {number}: {scene.title}")
        say(f"  {scene.story}")
        for a in scene.attempts:
            mark = "ok " if a.ok else "BAD"
            say(f"    {mark} {a.label:<58} -> {a.actual}"
                + ("" if a.ok else f" (expected {a.expected})"))
        say(f"  => {'DEFENDED' if scene.ok else 'NOT DEFENDED'}"
            f"{'' if scene.car_safe else ' (the car was left open or opened!)'}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Play each attack against a parked car.")
    parser.add_argument("scenes", nargs="*", help=f"scenes to play (default all): "
                        f"{', '.join(k for k, *_ in SCENES)}")
    args = parser.parse_args(argv)
    unknown = set(args.scenes) - {k for k, *_ in SCENES}
    if unknown:
        parser.error(f"unknown scenes: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="trunkkey-attacks-") as state_dir:
        scenes = run(state_dir, args.scenes)
    render(scenes)
    bad = [s for s in scenes if not s.ok]
    print(f"{len(scenes) - len(bad)}/{len(scenes)} attacks defended.")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
