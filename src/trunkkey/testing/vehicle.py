"""A simulated car world for tests and examples: carmaker, retailer, cars, couriers.

Everything here runs on simulated time (``ManualClock``) and simulated
hardware; only the cryptography, the ledger and the vehicle unit are real.
:class:`SimulatedBody` and :class:`SimulatedGps` implement the unit's
:class:`~trunkkey.vehicle.Actuator` and :class:`~trunkkey.vehicle.Positioning`
protocols, the way a carmaker's body controller and GPS receiver would.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..claims import Action, Purpose
from ..clock import ManualClock
from ..consent.anchors import RootKey
from ..errors import AccessDenied, InvalidRequest
from ..geo import Geofence, Location
from ..history import CheckpointStore, HistoryOutcome
from ..issuer import Issuer
from ..keys import SigningKey
from ..ledger.base import Ledger
from ..ledger.memory import MemoryLedger
from ..ledger.sqlite import SqliteLedger
from ..observe import DecisionHook
from ..proof import make_proof
from ..sealed import CarKemKey, CarKeyring, CarPublicKey, seal
from ..trust import TrustedKey, TrustStore
from ..vehicle.kemkeys import CarKemKeys
from ..vehicle.presence import PresenceBeacon, PresenceSecret, PresenceWindow, presence_ids
from ..vehicle.state import Outcome, UnitConfig
from ..vehicle.timekeeping import (
    FileTimeStore,
    MemoryTimeStore,
    SyncOutcome,
    TimeStateStore,
    make_time_sync,
)
from ..vehicle.unit import VehicleUnit
from ..vehicle.updates import TRUST_FILE, consent_verifier

RETAILER = "retailer.example"


class SimulatedBody:
    """The car's locks as hardware would hold them, with fault injection."""

    def __init__(self) -> None:
        self.trunk_unlatched = False
        self.doors_unlocked = False
        self.trunk_openings = 0
        self.door_unlocks = 0
        #: Name of the next operation that should raise (``"open_trunk"`` …).
        self.fail_next: str | None = None

    def __repr__(self) -> str:
        return (
            f"SimulatedBody(trunk_unlatched={self.trunk_unlatched}, "
            f"doors_unlocked={self.doors_unlocked})"
        )

    def _maybe_fail(self, operation: str) -> None:
        if self.fail_next == operation:
            self.fail_next = None
            raise OSError(f"simulated {operation} fault")

    @property
    def locked(self) -> bool:
        return not (self.trunk_unlatched or self.doors_unlocked)

    def open_trunk(self) -> None:
        self._maybe_fail("open_trunk")
        self.trunk_unlatched = True
        self.trunk_openings += 1

    def unlock_doors(self) -> None:
        self._maybe_fail("unlock_doors")
        self.doors_unlocked = True
        self.door_unlocks += 1

    def lock_all(self) -> None:
        self._maybe_fail("lock_all")
        self.trunk_unlatched = False
        self.doors_unlocked = False


class SimulatedGps:
    """A GPS receiver that reports whatever ``position`` is set to (or no fix)."""

    def __init__(self, position: Location | None = None) -> None:
        self.position = position

    def __call__(self) -> Location | None:
        return self.position

    def __repr__(self) -> str:
        return f"SimulatedGps({self.position!r})"



@dataclass(slots=True, kw_only=True)
class Car:
    """A car the carmaker enrolled: its hardware, its own clock, and its unit."""

    vehicle_id: str
    vehicle_key: SigningKey
    body: SimulatedBody
    gps: SimulatedGps
    clock: ManualClock
    ledger: Ledger
    time_store: TimeStateStore
    unit: VehicleUnit
    parked_at: Location | None = None
    #: Enrolled with the carmaker's root as its consent anchor (chains, revocations).
    consent: bool = False
    #: Where the unit's durable state lives (None: in memory).
    state_dir: Path | None = None
    #: This car's own trust store (a consent car's trust updates change only its own).
    trust_store: TrustStore | None = None
    #: The car's KEM key, provisioned beside its anchors: it opens tokens sealed to it.
    kem_key: CarKemKey | None = None
    #: Or KEM keys the car makes itself and the carmaker endorses by signed trust
    #: updates (enrolled with ``kem_rotation``); a new object at every boot.
    kem_keys: CarKemKeys | None = None
    #: What the car advertises over BLE while it waits for a delivery (nothing else).
    beacon: PresenceBeacon | None = None


class World:
    """Parties and shared true time. ``ledger`` is ``"sqlite"`` (durable) or ``"memory"``."""

    def __init__(
        self,
        *,
        start: int,
        state_dir: str | os.PathLike[str] | None = None,
        ledger: str = "sqlite",
        config: UnitConfig | None = None,
        randomness: Callable[[int], bytes] = secrets.token_bytes,
        on_decision: DecisionHook[Outcome] | None = None,
    ) -> None:
        """``on_decision`` is given to every car's unit (see :mod:`trunkkey.observe`)."""
        if ledger == "sqlite" and state_dir is None:
            raise InvalidRequest("a sqlite world needs a state_dir")
        self.true_clock = ManualClock(start)
        self.state_dir = None if state_dir is None else Path(state_dir)
        self.ledger_kind = ledger
        self.config = config
        self.randomness = randomness
        self.on_decision = on_decision
        self.carmaker_key = SigningKey.generate()
        self.retailer_key = SigningKey.generate()
        self.retailer = Issuer(self.retailer_key, RETAILER, clock=self.true_clock)
        self.trust_store = TrustStore([TrustedKey.create(self.retailer_key.public_key, RETAILER)])
        self.cars: dict[str, Car] = {}
        #: The backend's copy of each car's presence secret.
        self.presence_secrets: dict[str, PresenceSecret] = {}
        #: The backend's store of every car's access-log checkpoints.
        self.history = CheckpointStore(backend_key=SigningKey.generate())

    @property
    def now(self) -> int:
        return self.true_clock.now()

    # -- carmaker -------------------------------------------------------------
    def enrol_car(
        self, vehicle_id: str, *, position: Location | None = None, consent: bool = False,
        sealed: bool = False, kem_rotation: bool = False,
    ) -> Car:
        """The carmaker provisions a car: its key, its trust anchors, its unit.

        With ``consent`` the car's anchors are the carmaker's root key (this
        world's ``carmaker_key``) and its own vehicle key: it verifies consent
        chains offline and applies the carmaker's signed revocation lists.
        With ``sealed`` the car also gets a KEM key, whose public half the
        backend seals its tokens to (``mint(..., seal_to=car.kem_key.public_key)``).
        With ``kem_rotation`` (a consent car in a durable world) it keeps
        :class:`~trunkkey.vehicle.CarKemKeys` in its state directory instead:
        none open anything until the carmaker endorses one
        (``car.kem_keys.propose(...)``, then a trust update bound to the car).
        """
        directory = None
        if self.state_dir is not None and self.ledger_kind == "sqlite":
            directory = self.state_dir / vehicle_id
            directory.mkdir(parents=True, exist_ok=True)
            ledger: Ledger = SqliteLedger(directory / "ledger.sqlite")
            store: TimeStateStore = FileTimeStore(directory / "time.json")
        else:
            ledger, store = MemoryLedger(), MemoryTimeStore()
        if kem_rotation and (not consent or directory is None):
            raise InvalidRequest("a car rotating its KEM keys needs consent and a durable world")
        car = Car(
            vehicle_id=vehicle_id, vehicle_key=SigningKey.generate(), body=SimulatedBody(),
            gps=SimulatedGps(position), clock=ManualClock(self.now), ledger=ledger,
            time_store=store, unit=None,  # type: ignore[arg-type]
            consent=consent, state_dir=directory,
            trust_store=TrustStore(list(self.trust_store)) if consent else None,
            kem_key=CarKemKey(self.randomness(32)) if sealed else None,
        )
        if kem_rotation and directory is not None:
            car.kem_keys = CarKemKeys(directory, vehicle_id=vehicle_id,
                                      vehicle_key=car.vehicle_key, randomness=self.randomness)
        # The presence secret: the car's copy in its beacon, the backend's in the world.
        secret = self.presence_secrets[vehicle_id] = PresenceSecret(self.randomness(32))
        car.beacon = PresenceBeacon(secret)
        car.unit = self._boot(car)
        self.cars[vehicle_id] = car
        self.history.enrol(vehicle_id, car.vehicle_key.public_key)
        return car

    def _boot(self, car: Car) -> VehicleUnit:
        consent = None
        if car.consent:
            consent = consent_verifier(
                vehicle_id=car.vehicle_id, vehicle_key=car.vehicle_key,
                roots=[RootKey(key=self.carmaker_key.public_key)], state_dir=car.state_dir,
            )
        return VehicleUnit(
            vehicle_id=car.vehicle_id, vehicle_key=car.vehicle_key,
            trust_store=car.trust_store if car.trust_store is not None else self.trust_store,
            carmaker_key=self.carmaker_key.public_key,
            ledger=car.ledger, time_store=car.time_store, clock=car.clock,
            actuator=car.body, gps=car.gps, randomness=self.randomness, config=self.config,
            consent=consent,
            trust_state=None if car.state_dir is None or not car.consent
            else car.state_dir / TRUST_FILE,
            log_ack_key=self.history.public_key, on_decision=self.on_decision,
            car_keys=self._car_keys(car),
        )

    def _car_keys(self, car: Car) -> CarKeyring | None:
        if car.kem_keys is not None and car.state_dir is not None:
            # Rebooted too: the keys come back from the car's own directory.
            car.kem_keys = CarKemKeys(car.state_dir, vehicle_id=car.vehicle_id,
                                      vehicle_key=car.vehicle_key, randomness=self.randomness)
            return car.kem_keys
        return None if car.kem_key is None else CarKeyring([car.kem_key])

    def reboot(self, car: Car) -> VehicleUnit:
        """Power-cycle the unit: a new one over the same ledger and time files."""
        if isinstance(car.ledger, SqliteLedger):
            path = car.ledger.path
            car.unit.close()
            car.ledger = SqliteLedger(path)
        car.unit = self._boot(car)
        return car.unit

    def time_sync(self, car: Car) -> SyncOutcome:
        """The carmaker's time server answers the car's nonce with true time."""
        nonce = car.unit.time_sync_nonce()
        message = make_time_sync(
            self.carmaker_key, vehicle_id=car.vehicle_id, nonce=nonce, time=self.now
        )
        return car.unit.apply_time_sync(message)

    # -- owner ------------------------------------------------------------------
    def park(self, car: Car, where: Location, *, radius_m: int = 50) -> Geofence:
        """The owner parks and confirms the place: that place becomes the geofence."""
        car.gps.position = where
        car.parked_at = where
        return Geofence(lat_e7=where.lat_e7, lon_e7=where.lon_e7, radius_m=radius_m)

    # -- retailer ---------------------------------------------------------------
    def mint(
        self,
        car: Car | str,
        *,
        courier: SigningKey | None,
        geofence: Geofence | None = None,
        action: Action = Action.TRUNK,
        purpose: Purpose = Purpose.DELIVERY,
        starts_in: int = 0,
        window: int = 4 * 3600,
        order_ref: bytes | None = None,
        parcels: Sequence[str] | None = None,
        seal_to: CarPublicKey | None = None,
        chain: bytes | None = None,
    ) -> bytes:
        """``parcels``: the order's parcel identifiers the token commits to;
        ``seal_to``: a car's KEM public key to seal the token to, with ``chain``
        (the consent chain it hangs from) inside it if given."""
        if chain is not None and seal_to is None:
            raise InvalidRequest("a chain is sealed with the token: give seal_to")
        vehicle_id = car if isinstance(car, str) else car.vehicle_id
        token = self.retailer.mint(
            vehicle_id=vehicle_id, action=action, purpose=purpose,
            not_before=self.now + starts_in, expires=self.now + starts_in + window,
            geofence=geofence, courier_key=None if courier is None else courier.public_key,
            order_ref=order_ref, parcels=parcels,
        )
        return token if seal_to is None else seal(token, seal_to, chain=chain)

    def book(self, car: Car, *, starts_in: int = 0, window: int = 4 * 3600) -> PresenceWindow:
        """The backend books a delivery: the car is told to advertise for the window,
        and the courier is given the window's presence identifiers, never the secret."""
        not_before = self.now + starts_in
        if car.beacon is not None:
            car.beacon.expect(not_before=not_before, expires=not_before + window)
        return presence_ids(self.presence_secrets[car.vehicle_id], not_before=not_before,
                            expires=not_before + window)

    # -- time -------------------------------------------------------------------
    def advance(self, seconds: int) -> None:
        """True time moves; every car's clock follows and every unit ticks."""
        self.true_clock.advance(seconds)
        for car in self.cars.values():
            car.clock.advance(seconds)
            car.unit.tick()


def courier_present(
    car: Car,
    token: bytes,
    device_key: SigningKey | None,
    *,
    action: Action | str = Action.TRUNK,
    delay: Callable[[], None] | None = None,
    chain: bytes | None = None,
    revocations: bytes | None = None,
    scan: Sequence[str] | None = None,
) -> Outcome:
    """The courier's handheld: ask for a challenge, sign it, present the token.

    ``delay`` runs between the challenge and the answer (a relay's latency).
    With no device key the handheld presents the bare token (a sniffer's copy).
    ``chain`` is the consent chain the token hangs from; ``revocations`` a
    signed revocation list the handheld carries to the car; ``scan`` the
    parcel identifiers its scanner read, signed with the challenge.
    """
    try:
        challenge = car.unit.challenge()
    except AccessDenied:
        # No challenge while the car distrusts its clock: the bare token is
        # still presented, and the unit says why it refuses.
        return car.unit.present(token, action=action, chain=chain, revocations=revocations)
    if delay is not None:
        delay()
    if device_key is None:
        return car.unit.present(token, action=action, chain=chain, revocations=revocations)
    proof = make_proof(
        device_key, token=token, vehicle_id=car.vehicle_id, challenge=challenge, scan=scan
    )
    return car.unit.present(
        token, action=action, proof=proof, challenge=challenge, chain=chain,
        revocations=revocations,
    )


def courier_gossip(world: World, car: Car) -> HistoryOutcome:
    """The courier's handheld carries the car's log to the backend, and its answer back.

    The handheld picks up the car's newest checkpoint with the entries since
    the last acknowledgement; the backend judges them against every
    checkpoint it has seen from the car; an acknowledgement (when accepted)
    goes back to the car, which prunes what it covers.
    """
    carried = car.unit.access_log.bundle().encode()
    outcome = world.history.receive(car.vehicle_id, carried)
    if outcome.ack is not None:
        car.unit.access_log.apply_ack(outcome.ack)
    return outcome
