"""The consent story's world: one car, its carmaker, a retailer, a carrier, a courier.

The car trusts only the carmaker's root; the owner's consent (root ->
retailer) and the retailer's delegation (retailer -> carrier) are signed
through the library's own checked paths. ``examples/world.py`` plays the
documented scenes in it; the tests and the benchmarks build on it too.
Every key here is generated fresh; nothing is meant for production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..claims import Action, Purpose
from ..clock import ManualClock
from ..consent.anchors import RootKey, VehicleAnchors
from ..consent.chain import ConsentVerifier, GrantCache
from ..consent.grant import (
    Grant,
    Scope,
    access_mask,
    encode_chain,
    grant_digest,
    make_grant,
    root_scope,
    sign_delegation,
    sign_root_grant,
)
from ..consent.revocation import RevocationState
from ..geo import Geofence, Location
from ..issuer import Issuer
from ..keys import Algorithm, SigningKey
from ..ledger.memory import MemoryLedger
from ..proof import make_proof
from ..sealed import CarKemKey, CarKeyring, seal
from ..trust import TrustStore
from ..verifier import Decision, Verifier

START = 1_800_000_000
VEHICLE = "1HGCM82633A004352"
HOME = Geofence.from_degrees(48.137154, 11.576124, 300)  # where the owner parks
ORDER = b"order-4711"
DAY = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentWorld:
    clock: ManualClock
    root: SigningKey
    retailer: SigningKey
    carrier: SigningKey
    courier: SigningKey
    anchors: VehicleAnchors
    revocations: RevocationState
    consent: ConsentVerifier
    ledger: MemoryLedger
    verifier: Verifier
    #: carmaker -> retailer (the owner's consent), and retailer -> carrier
    root_grant: bytes
    carrier_grant: bytes
    retailer_scope: Scope
    #: The car's KEM key, in a world built with ``sealed=True``.
    car_key: CarKemKey | None = None

    @property
    def chain(self) -> bytes:
        return encode_chain([self.root_grant, self.carrier_grant])

    def sealed_token(self, chain: bytes | None = None, **overrides: object) -> bytes:
        """A courier's token sealed to the car with its chain inside (:attr:`chain`
        unless given): all the courier carries, bytes it cannot read."""
        if self.car_key is None:
            raise AssertionError("build the world with sealed=True")
        return seal(self.token(**overrides), self.car_key.public_key,
                    chain=self.chain if chain is None else chain)

    @property
    def carrier_issuer(self) -> Issuer:
        return Issuer(self.carrier, "dhl", clock=self.clock)

    def token(self, **overrides: object) -> bytes:
        """A courier's token, minted by the carrier under the chain."""
        now = self.clock.now()
        request: dict[str, object] = {
            "vehicle_id": VEHICLE,
            "action": Action.TRUNK,
            "not_before": now,
            "expires": now + 4 * 3600,
            "geofence": Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=100),
            "courier_key": self.courier.public_key,
            "order_ref": ORDER,
        }
        request.update(overrides)
        return self.carrier_issuer.mint(**request)  # type: ignore[arg-type]

    def present(
        self, token: bytes, chain: bytes | None, *, action: Action = Action.TRUNK,
        location: Location | None = None,
    ) -> Decision:
        """The courier at the car: a fresh challenge, a proof, the car decides offline."""
        challenge = os.urandom(16)
        proof = make_proof(self.courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
        return self.verifier.verify_at(
            token, now=self.clock.now(), vehicle_id=VEHICLE, action=action,
            purpose=Purpose.DELIVERY, location=location if location is not None else HOME.centre,
            proof=proof, challenge=challenge, chain=chain,
        )

    def presentation_size(self) -> dict[str, int]:
        token = self.token()
        proof = make_proof(self.courier, token=token, vehicle_id=VEHICLE, challenge=bytes(16))
        chain = self.chain
        return {
            "root_grant": len(self.root_grant),
            "carrier_grant": len(self.carrier_grant),
            "chain": len(chain),
            "token": len(token),
            "proof": len(proof),
            "total": len(chain) + len(token) + len(proof),
            "total_by_reference": len(
                encode_chain([grant_digest(self.root_grant), grant_digest(self.carrier_grant)])
            ) + len(token) + len(proof),
        }


def minimal_presentation_size(w: ConsentWorld) -> dict[str, int]:
    """Sizes for the leanest two-link chain: no places, no limits, a token without fence or order.

    This is the figure to compare with the 512-byte target; :meth:`ConsentWorld.presentation_size`
    measures the story's richer consent (places in both grants, a daily limit, a fenced token).
    """
    now = w.clock.now()
    trunk = access_mask([Action.TRUNK], [Purpose.DELIVERY])
    consent = make_grant(grantee=w.retailer.public_key, grantee_name="amazon", access=trunk,
                         not_before=now, expires=now + 30 * DAY, depth=1, vehicle_ids=[VEHICLE])
    scope = root_scope(consent)
    if not isinstance(scope, Scope):
        raise AssertionError(scope)
    delegation = make_grant(grantee=w.carrier.public_key, grantee_name="dhl", access=trunk,
                            not_before=now, expires=now + 7 * DAY, depth=0)
    root_grant = sign_root_grant(w.root, consent)
    carrier_grant = sign_delegation(w.retailer, scope, delegation)
    chain = encode_chain([root_grant, carrier_grant])
    token = w.token(geofence=None, order_ref=None)
    proof = make_proof(w.courier, token=token, vehicle_id=VEHICLE, challenge=bytes(16))
    by_reference = encode_chain([grant_digest(root_grant), grant_digest(carrier_grant)])
    return {
        "root_grant": len(root_grant),
        "carrier_grant": len(carrier_grant),
        "chain": len(chain),
        "token": len(token),
        "proof": len(proof),
        "total": len(chain) + len(token) + len(proof),
        "total_by_reference": len(by_reference) + len(token) + len(proof),
    }


def retailer_consent(retailer: SigningKey, now: int, *, daily_limit: int | None = 5) -> Grant:
    """What the owner agreed to: trunk or unlock-relock, deliveries and returns, 30 days."""
    return make_grant(
        grantee=retailer.public_key, grantee_name="amazon",
        access=access_mask(
            [Action.TRUNK, Action.UNLOCK_RELOCK], [Purpose.DELIVERY, Purpose.RETURN_PICKUP]
        ),
        not_before=now - DAY, expires=now + 30 * DAY, depth=1, vehicle_ids=[VEHICLE],
        places=[Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=HOME.radius_m)],
        daily_limit=daily_limit,
    )


def carrier_delegation(carrier: SigningKey, now: int) -> Grant:
    """What the retailer lets its carrier do: trunk deliveries this week, near home."""
    return make_grant(
        grantee=carrier.public_key, grantee_name="dhl",
        access=access_mask([Action.TRUNK], [Purpose.DELIVERY]),
        not_before=now - 3600, expires=now + 7 * DAY, depth=0,
        places=[Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=200)],
    )


def build_world(
    *, start: int = START, cache: bool = True, algorithm: Algorithm = Algorithm.EDDSA,
    daily_limit: int | None = 5, root_algorithm: Algorithm | None = None, sealed: bool = False,
) -> ConsentWorld:
    """The world; ``root_algorithm`` (``algorithm`` if not given) is the carmaker root's.

    ``Algorithm.EDDSA_MLDSA65`` or ``Algorithm.ES256_MLDSA65`` gives a hybrid-rooted car;
    ``sealed`` gives the car a KEM key, so that it opens tokens sealed to it
    (:meth:`ConsentWorld.sealed_token`).
    """
    clock = ManualClock(start)
    retailer, carrier, courier = (SigningKey.generate(algorithm) for _ in range(3))
    root = SigningKey.generate(algorithm if root_algorithm is None else root_algorithm)
    anchors = VehicleAnchors(
        vehicle_id=VEHICLE, vehicle_key=SigningKey.generate(), roots=[RootKey(key=root.public_key)]
    )
    revocations = RevocationState()
    consent = ConsentVerifier(
        anchors=anchors, revocations=revocations, cache=GrantCache() if cache else None,
    )
    ledger = MemoryLedger()
    # The car trusts no retailer directly: its trust store is empty.
    car_key = CarKemKey.generate() if sealed else None
    verifier = Verifier(trust_store=TrustStore(), ledger=ledger, clock=clock, consent=consent,
                        car_keys=None if car_key is None else CarKeyring([car_key]))
    consent_grant = retailer_consent(retailer, start, daily_limit=daily_limit)
    scope = root_scope(consent_grant)
    if not isinstance(scope, Scope):
        raise AssertionError(scope)
    return ConsentWorld(
        clock=clock, root=root, retailer=retailer, carrier=carrier, courier=courier,
        anchors=anchors, revocations=revocations, consent=consent, ledger=ledger,
        verifier=verifier,
        root_grant=sign_root_grant(root, consent_grant),
        carrier_grant=sign_delegation(retailer, scope, carrier_delegation(carrier, start)),
        retailer_scope=scope, car_key=car_key,
    )
