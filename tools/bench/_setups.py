"""What the benchmark verifies: trunkkey's tokens, presentations and consent chains.

Every ``*_pool`` function pre-makes fresh presentations, so that each timed
verification is a first use (nothing can be served from a replay cache), and
returns the operation that checks one of them, raising if it is not allowed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from trunkkey import (
    Action,
    Algorithm,
    Geofence,
    Issuer,
    ManualClock,
    MemoryLedger,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
    make_proof,
)
from trunkkey.ledger.base import Ledger

VEHICLE = "1HGCM82633A004352"  # a 17-character VIN
ISSUER = "amazon"  # a 6-character issuer name
NOW = 1_800_000_000
WINDOW = 4 * 3600
DAY = 86_400
HOME = Geofence.from_degrees(48.137154, 11.576124, 100)
#: Parcels in the benchmark's parcel-bound order: a typical multi-parcel delivery.
PARCELS = 3

#: One presentation: (token, proof, challenge, chain); absent parts are None.
Presentation = tuple[bytes, bytes | None, bytes | None, bytes | None]
Check = Callable[[Presentation], None]


class ConsentMissing(RuntimeError):
    """The consent package (``trunkkey.consent``) is not available in this checkout."""


@dataclass(slots=True, kw_only=True)
class Direct:
    """A retailer trusted directly by the car (no consent chain)."""

    clock: ManualClock
    key: SigningKey
    issuer: Issuer
    store: TrustStore

    @classmethod
    def create(cls, algorithm: Algorithm = Algorithm.EDDSA) -> Direct:
        clock = ManualClock(NOW)
        key = SigningKey.generate(algorithm)
        return cls(clock=clock, key=key, issuer=Issuer(key, ISSUER, clock=clock),
                   store=TrustStore([TrustedKey.create(key.public_key, ISSUER)]))

    def verifier(self, ledger: Ledger) -> Verifier:
        return Verifier(trust_store=self.store, ledger=ledger, clock=self.clock)

    def mint(self) -> bytes:
        return self.issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                                expires=NOW + WINDOW)

    def plain(self, count: int) -> list[Presentation]:
        return [(self.mint(), None, None, None) for _ in range(count)]

    def with_proof(self, count: int) -> list[Presentation]:
        """Delivery tokens bound to a courier's device, inside a geofence, with proofs."""
        out: list[Presentation] = []
        for _ in range(count):
            courier = SigningKey.generate()
            token = self.issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                                     expires=NOW + WINDOW, geofence=HOME,
                                     courier_key=courier.public_key)
            challenge = os.urandom(16)
            proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
            out.append((token, proof, challenge, None))
        return out


    def with_parcels(self, count: int, parcels: int = PARCELS) -> list[Presentation]:
        """As :meth:`with_proof`, each token bound to an order of ``parcels`` parcels,
        each proof carrying a scan of all of them (issue 19)."""
        order = [f"1Z999AA1012345{i:04}" for i in range(parcels)]
        out: list[Presentation] = []
        for _ in range(count):
            courier = SigningKey.generate()
            token = self.issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                                     expires=NOW + WINDOW, geofence=HOME,
                                     courier_key=courier.public_key, parcels=order)
            challenge = os.urandom(16)
            proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=challenge,
                               scan=order)
            out.append((token, proof, challenge, None))
        return out


def checker(verifier: Verifier) -> Check:
    """Verify one presentation at the car's home, as a trunk opening; raise if refused."""
    centre = HOME.centre

    def check(item: Presentation) -> None:
        token, proof, challenge, chain = item
        decision = verifier.verify(token, vehicle_id=VEHICLE, action=Action.TRUNK,
                                   location=centre, proof=proof, challenge=challenge,
                                   chain=chain)
        if not decision.allowed:
            raise SystemExit(f"benchmark presentation denied: {decision.reason}: "
                             f"{decision.detail}")

    return check


@dataclass(slots=True, kw_only=True)
class Chained:
    """A carrier's key reached from the carmaker root through ``links`` grants."""

    verifier: Verifier
    issuer: Issuer
    chain: bytes

    def with_proof(self, count: int) -> list[Presentation]:
        out: list[Presentation] = []
        for _ in range(count):
            courier = SigningKey.generate()
            token = self.issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=NOW,
                                     expires=NOW + WINDOW, geofence=HOME,
                                     courier_key=courier.public_key)
            challenge = os.urandom(16)
            proof = make_proof(courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
            out.append((token, proof, challenge, self.chain))
        return out


def chained(links: int, *, cache: bool, ledger: Ledger | None = None) -> Chained:
    """A chain of ``links`` grants (1 to 4): root -> g0 -> ... -> the token's signer."""
    try:
        from trunkkey.claims import Purpose
        from trunkkey.consent import (
            ConsentVerifier,
            GrantCache,
            RevocationState,
            RootKey,
            Scope,
            VehicleAnchors,
            access_mask,
            encode_chain,
            make_grant,
            narrow,
            root_scope,
            sign_delegation,
            sign_root_grant,
        )
    except ImportError as exc:
        raise ConsentMissing(str(exc)) from exc
    clock = ManualClock(NOW)
    root = SigningKey.generate()
    grantees = [SigningKey.generate() for _ in range(links)]
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(),
                             roots=[RootKey(key=root.public_key)])
    consent = ConsentVerifier(anchors=anchors, revocations=RevocationState(),
                              cache=GrantCache() if cache else None)
    access = access_mask([Action.TRUNK], [Purpose.DELIVERY])
    first = make_grant(grantee=grantees[0].public_key, grantee_name="g0", access=access,
                       not_before=NOW - DAY, expires=NOW + 30 * DAY, depth=links - 1,
                       vehicle_ids=[VEHICLE], places=[HOME_AREA])
    grants = [sign_root_grant(root, first)]
    scope = root_scope(first)
    for i in range(1, links):
        grant = make_grant(grantee=grantees[i].public_key, grantee_name=f"g{i}", access=access,
                           not_before=NOW - DAY, expires=NOW + 7 * DAY, depth=links - 1 - i)
        if not isinstance(scope, Scope):
            raise AssertionError(scope)
        grants.append(sign_delegation(grantees[i - 1], scope, grant))
        scope = narrow(scope, grant)
    verifier = Verifier(trust_store=TrustStore(), ledger=ledger or MemoryLedger(), clock=clock,
                        consent=consent)
    return Chained(verifier=verifier, chain=encode_chain(grants),
                   issuer=Issuer(grantees[-1], f"g{links - 1}", clock=clock))


#: The owner's consented place: wider than any token's geofence.
HOME_AREA = Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=300)


def story_sizes() -> dict[str, int]:
    """Sizes of the documented two-link presentation (``trunkkey.testing.consent``),
    with ``lean_*`` for the leanest two-link chain (no places, no limit, no fence)."""
    try:
        from trunkkey.testing.consent import build_world, minimal_presentation_size
    except ImportError as exc:
        raise ConsentMissing(str(exc)) from exc
    world = build_world(daily_limit=None)
    lean = minimal_presentation_size(world)
    return world.presentation_size() | {f"lean_{k}": v for k, v in lean.items()}


