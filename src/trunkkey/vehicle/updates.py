"""Consent on the car: its anchors, and the signed updates that change what it trusts.

A unit built with a :class:`~trunkkey.consent.ConsentVerifier` verifies
consent chains offline (carmaker root -> retailer -> carrier -> token) and
accepts two kinds of signed, versioned update from its carmaker:

* **revocation lists** (:class:`~trunkkey.consent.RevocationState`): a list
  is applied only if it is validly signed by a current root and strictly
  newer than the one held; from then on everything under a revoked grant,
  key or token id, and every superseded token, is refused;
* **trust updates** (:class:`~trunkkey.consent.TrustUpdater`): roots and
  directly trusted issuer keys, with overlap periods — and, in an update
  bound to this car, its own KEM keys (:class:`~.kemkeys.CarKemKeys`).

Any channel may carry them, because they are signed end to end: the
carmaker's cloud over LTE, or a courier's handheld alongside a presentation,
which is how a revocation reaches a car parked where there is no signal.
:class:`ConsentUpdates` turns each attempt into an :class:`UpdateOutcome`
(never an exception): a refused update changes nothing on the car.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..consent.anchors import RootKey, VehicleAnchors
from ..consent.chain import ConsentVerifier, GrantCache
from ..consent.errors import UpdateRefused
from ..consent.revocation import RevocationState
from ..consent.rotation import TrustUpdater
from ..errors import InvalidRequest
from ..reasons import Reason
from ..sealed import CarKeyring
from ..signing import SigningBackend
from ..trust import TrustStore
from .kemkeys import CarKemKeys

#: File names under a unit's state directory (next to the ledger and time.json).
REVOCATIONS_FILE = "revocations.cbor"
TRUST_FILE = "trust.cbor"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateOutcome:
    """What the unit did with one signed update. Test ``.applied``, not the object.

    ``reason`` is ``allowed`` when the update was applied, otherwise why not
    (``rollback`` for a version not newer than the one held, ``bad_signature``,
    ``unknown_key`` — also for a KEM key the car does not hold —,
    ``wrong_vehicle`` for an update bound to another car, ``malformed``,
    ``clock_untrusted``, ...). ``version`` is
    the version the car holds afterwards.
    """

    reason: Reason
    detail: str
    version: int

    @property
    def applied(self) -> bool:
        return self.reason is Reason.ALLOWED

    def __bool__(self) -> NoReturn:
        raise TypeError("test outcome.applied, not the outcome itself")


def consent_verifier(
    *,
    vehicle_id: str,
    vehicle_key: SigningBackend,
    roots: Iterable[RootKey],
    state_dir: str | os.PathLike[str] | None = None,
    cache: GrantCache | None = None,
    max_list_age: int | None = None,
) -> ConsentVerifier:
    """The consent side of a car's enrolment: anchors = carmaker root(s) + its own key.

    With ``state_dir`` the revocation list (and its version floor) is persisted
    there, so a reboot forgets nothing. Daily-limit counts live in the unit's
    replay ledger, counted in the same atomic step that spends a token.
    """
    directory = None if state_dir is None else Path(state_dir)
    anchors = VehicleAnchors(vehicle_id=vehicle_id, vehicle_key=vehicle_key, roots=roots)
    return ConsentVerifier(
        anchors=anchors,
        revocations=RevocationState(
            path=None if directory is None else directory / REVOCATIONS_FILE
        ),
        cache=cache if cache is not None else GrantCache(),
        max_list_age=max_list_age,
    )


class ConsentUpdates:
    """Applies signed revocation lists and trust updates to one car's consent state."""

    def __init__(
        self,
        *,
        consent: ConsentVerifier,
        trust_store: TrustStore,
        vehicle_id: str,
        vehicle_key: SigningBackend,
        trust_state: str | os.PathLike[str] | None = None,
        car_keys: CarKeyring | None = None,
    ) -> None:
        """``car_keys``: the unit's KEM keys; a :class:`CarKemKeys` is then set by
        trust updates bound to this car (any other keyring stays as given)."""
        anchors = consent.anchors
        # The anchors are the car's own: a verifier provisioned for another car
        # (or with another vehicle key) would check chains for the wrong vehicle.
        if anchors.vehicle_id != vehicle_id:
            raise InvalidRequest("consent anchors are for another vehicle")
        if anchors.vehicle_key.public_key != vehicle_key.public_key:
            raise InvalidRequest("consent anchors hold another vehicle key")
        kem = car_keys if isinstance(car_keys, CarKemKeys) else None
        if kem is not None and kem.vehicle_id != vehicle_id:
            raise InvalidRequest("car_keys are another vehicle's KEM keys")
        if kem is not None and kem.vehicle_public_key != vehicle_key.public_key:
            # Its proposals would fail the carmaker's check, every one of them.
            raise InvalidRequest("car_keys sign proposals with another vehicle key")
        if kem is not None and trust_state is None:
            # The keys persist, what endorsed them would not: every boot would
            # start from no key endorsed (and delete their files), and from
            # version 0, which an old update replays.
            raise InvalidRequest("CarKemKeys need trust_state, where their endorsement persists")
        self._consent = consent
        self._trust = TrustUpdater(
            anchors=anchors, trust_store=trust_store,
            path=None if trust_state is None else Path(trust_state), kem=kem,
        )
        #: Digest of the last list this car already holds: a handheld that
        #: carries the same list to every car costs no signature check.
        self._held_list: bytes | None = None

    @property
    def consent(self) -> ConsentVerifier:
        return self._consent

    @property
    def revocations_version(self) -> int:
        return self._consent.revocations.version

    @property
    def trust_version(self) -> int:
        return self._trust.version

    def already_held(self, signed: bytes) -> bool:
        held = self._held_list
        return (
            type(signed) is bytes and held is not None
            and hmac.compare_digest(hashlib.sha256(signed).digest(), held)
        )

    def apply_revocations(self, signed: bytes, *, now: int) -> UpdateOutcome:
        state = self._consent.revocations
        try:
            applied = state.apply(signed, self._consent.anchors, now=now)
        except UpdateRefused as exc:
            return UpdateOutcome(reason=exc.reason, detail=exc.detail, version=state.version)
        except OSError as exc:
            # Not persisted means not applied (RevocationState swaps in memory last).
            return UpdateOutcome(
                reason=Reason.MALFORMED, detail=f"could not persist: {type(exc).__name__}",
                version=state.version,
            )
        self._held_list = hashlib.sha256(signed).digest()
        return UpdateOutcome(
            reason=Reason.ALLOWED,
            detail=(
                f"revocation list v{applied.version}: {len(applied.grants)} grants, "
                f"{len(applied.keys)} keys, {len(applied.tokens)} tokens, "
                f"{len(applied.supersede)} orders"
            ),
            version=applied.version,
        )

    def apply_trust_update(self, signed: bytes, *, now: int) -> UpdateOutcome:
        try:
            update = self._trust.apply(signed, now=now)
        except UpdateRefused as exc:
            return UpdateOutcome(reason=exc.reason, detail=exc.detail, version=self._trust.version)
        except InvalidRequest as exc:
            return UpdateOutcome(
                reason=Reason.MALFORMED, detail=str(exc), version=self._trust.version
            )
        except OSError as exc:
            return UpdateOutcome(
                reason=Reason.MALFORMED, detail=f"could not persist: {type(exc).__name__}",
                version=self._trust.version,
            )
        kem = f", {len(update.kem_keys)} car KEM keys" if update.kem_keys else ""
        return UpdateOutcome(
            reason=Reason.ALLOWED,
            detail=f"trust update v{update.version}: {len(update.set)} set, "
            f"{len(update.remove)} removed{kem}",
            version=update.version,
        )
