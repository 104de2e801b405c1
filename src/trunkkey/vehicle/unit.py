"""The car's telematics unit: a state machine around the core verifier.

The unit can do three things to the car — open the trunk, unlock the doors, lock
everything — through an injected :class:`Actuator`. It has no operation that starts or drives
the car or touches its keys, so no token, proof or message can reach one (the 2022 key-card
enrolment window is the warning).

One opening at a time, in this order:

1. trusted time (:mod:`.timekeeping`), with the floor that covers it on the store first, or
   ``clock_untrusted``;
2. the challenge the courier's device answered (:mod:`.challenge`): issued here, unused,
   younger than its time to live;
3. the core :class:`~trunkkey.Verifier`, which spends the token in the durable ledger as its
   last step;
4. only then the actuator. If it fails — or the unit dies — between the ledger write and the
   actuation, the token is spent and the car stays locked: the safe way round (a failed
   delivery, never a second opening).

With a :class:`~trunkkey.consent.ConsentVerifier` the unit also verifies consent chains
offline (step 3 then runs from the carmaker root through every grant), and applies signed
revocation lists and trust updates (:mod:`.updates`) — including a newer list a courier's
handheld carries with its presentation, applied before that presentation is verified. With
``car_keys`` (beside its anchors) it opens tokens sealed to it (:mod:`trunkkey.sealed`).

The trunk or doors relock (:mod:`.latch`) when closed, or by themselves when ``tick()`` finds
the relock timeout passed, or at once if the clock stops being trustworthy. Time only moves
through the injected clock: no threads, no sleeps.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from ..claims import Action, Purpose, TokenClaims, check_name
from ..clock import Clock
from ..consent.anchors import RootKey
from ..consent.chain import ConsentVerifier
from ..errors import AccessDenied, InvalidRequest
from ..geo import Location
from ..keys import VerificationKey
from ..ledger.base import Ledger
from ..logentry import EntryKind, LogEntry
from ..observe import DecisionHook, DecisionLog
from ..parcels import ParcelRecord
from ..reasons import Reason
from ..sealed import CarKeyring
from ..signing import SigningBackend, signing_backend
from ..trust import TrustStore
from ..verifier import Decision, Verifier
from . import _statelock
from .accesslog import AccessLog, attach_log
from .challenge import ChallengeBook
from .events import EventBus, EventKind, Subscriber
from .latch import Actuator, Latch
from .logevents import recorder_for
from .state import Opening, Outcome, UnitConfig, UnitState, refine
from .timekeeping import SyncOutcome, TimeKeeper, TimeStateStore
from .updates import TRUST_FILE, ConsentUpdates, UpdateOutcome, consent_verifier

_WENT_BACK = "clock went back; awaiting time sync"
_UNPERSISTED = "trusted time could not be persisted; refusing to decide"
_UNREADABLE = "the clock cannot be read; refusing to decide"


Positioning = Callable[[], Location | None]


class VehicleUnit:
    """One car's telematics unit. See the module docstring for the order of checks."""

    def __init__(
        self,
        *,
        vehicle_id: str,
        vehicle_key: SigningBackend,
        trust_store: TrustStore,
        carmaker_key: VerificationKey,
        ledger: Ledger,
        time_store: TimeStateStore,
        clock: Clock,
        actuator: Actuator,
        gps: Positioning,
        randomness: Callable[[int], bytes] = secrets.token_bytes,
        config: UnitConfig | None = None,
        consent: ConsentVerifier | None = None,
        trust_state: str | os.PathLike[str] | None = None,
        log_ack_key: VerificationKey | None = None,
        on_decision: DecisionHook[Outcome] | None = None,
        car_keys: CarKeyring | None = None,
    ) -> None:
        """``consent``: verify consent chains against these anchors (carmaker
        root(s) and this car's own key) and accept signed revocation lists and
        trust updates; ``trust_state``: where the trust-update version floor
        and key set persist. Without ``consent`` the unit trusts only
        ``trust_store`` and refuses every chain and update. ``log_ack_key``:
        the backend key whose acknowledgements let the access log prune. ``car_keys``:
        the car's KEM keys, which open tokens sealed to it (a ``CarKemKeys``: set by trust updates).
        ``on_decision``: called with the outcome of every presentation, after
        the unit has acted on it (:mod:`trunkkey.observe`); if it raises, the
        outcome stands and nothing more is opened."""
        self._vehicle = check_name(vehicle_id, "vehicle_id")
        signing_backend(vehicle_key, "vehicle_key")
        if consent is not None and not isinstance(consent, ConsentVerifier):
            raise InvalidRequest("consent must be a trunkkey.consent.ConsentVerifier")
        self._key = vehicle_key
        self._decisions: DecisionLog[Outcome] = DecisionLog("vehicle", on_decision)
        self._config = config if config is not None else UnitConfig()
        self._ledger = ledger
        self._updates = None if consent is None else ConsentUpdates(
            consent=consent, trust_store=trust_store, vehicle_id=self._vehicle,
            vehicle_key=vehicle_key, trust_state=trust_state, car_keys=car_keys,
        )
        self._time = TimeKeeper(
            clock=clock, store=time_store, carmaker_key=carmaker_key, vehicle_id=vehicle_id,
            max_skew=self._config.policy.max_skew, randomness=randomness,
        )
        # Every spend goes through the log, so an opening's entry commits with it.
        self._log, self._spends = attach_log(
            ledger, vehicle_id=self._vehicle, vehicle_key=vehicle_key, boot=self._time.boot,
            time=lambda: self._time.floor, ack_key=log_ack_key,
        )
        self._verifier = Verifier(
            trust_store=trust_store, ledger=self._spends, clock=clock,
            policy=self._config.policy, consent=consent, car_keys=car_keys,
        )
        self._challenges = ChallengeBook(randomness=randomness, ttl=self._config.challenge_ttl)
        self._gps = gps
        self._events = EventBus(
            vehicle_id=vehicle_id, boot=self._time.boot, recorder=recorder_for(self._log)
        )
        self._latch = Latch(
            actuator=actuator, time=self._time, events=self._events, vehicle_id=self._vehicle,
            vehicle_key=vehicle_key, relock_timeout=self._config.relock_timeout, log=self._log,
        )
        self._clock_alarm_raised = False
        self._held: int | None = None  # the state directory's lock (boot only)
        # Whatever the car was doing when the last unit died, it starts locked.
        self._latch.lock_at_boot()

    @classmethod
    def boot(
        cls,
        state_dir: str | os.PathLike[str],
        *,
        roots: Iterable[RootKey] | None = None,
        **kwargs: object,
    ) -> VehicleUnit:
        """A unit whose ledger and trusted time live in ``state_dir`` (durable).

        Booting again over the same directory is a reboot: every token the
        previous unit accepted stays spent, and the time floor stays; a boot
        over the directory of a unit still running raises ``LedgerError``. With
        ``roots`` (the carmaker root keys provisioned at enrolment) the unit
        verifies consent chains, and its revocation list, daily-limit counts
        and trust updates persist in ``state_dir`` too.
        """
        path = Path(state_dir)
        path.mkdir(parents=True, exist_ok=True)
        def build() -> VehicleUnit:  # with the directory held, until close() (_statelock)
            if roots is not None:
                kwargs["consent"] = consent_verifier(
                    vehicle_id=kwargs["vehicle_id"],  # type: ignore[arg-type]
                    vehicle_key=kwargs["vehicle_key"],  # type: ignore[arg-type]
                    roots=roots, state_dir=path,
                )
                kwargs.setdefault("trust_state", path / TRUST_FILE)
            ledger = _statelock.open_ledger(path)  # neither is a first install's after a loss
            return cls(
                ledger=ledger, time_store=_statelock.time_store(path, ledger),
                **kwargs,  # type: ignore[arg-type]
            )
        unit, held = _statelock.holding(path, build)
        unit._held = held
        return unit

    def close(self) -> None:
        """Shut down cleanly: the floor goes to the store, the ledger and (booted) the
        directory are released. Nothing is unlocked. A power cut (no ``close()``) loses
        only floor that no decision relied on."""
        self._time.checkpoint()
        self._ledger.close()
        held, self._held = self._held, None
        _statelock.release(held)

    def __repr__(self) -> str:
        return f"VehicleUnit({self._vehicle!r}, {self.state.value}, boot={self._time.boot})"

    # -- what the outside may see --------------------------------------------
    @property
    def vehicle_id(self) -> str:
        return self._vehicle

    @property
    def public_key(self) -> VerificationKey:
        """The vehicle key that signs receipts (the retailer verifies with it)."""
        return self._key.public_key

    @property
    def state(self) -> UnitState:
        opening = self._latch.opening
        if opening is None:
            return UnitState.LOCKED
        if opening.action is Action.TRUNK:
            return UnitState.TRUNK_OPEN
        return UnitState.DOORS_UNLOCKED

    @property
    def opening(self) -> Opening | None:
        return self._latch.opening

    @property
    def clock_trusted(self) -> bool:
        return self._time.trusted

    @property
    def trusted_time_floor(self) -> int:
        return self._time.floor

    @property
    def boot_number(self) -> int:
        return self._time.boot

    @property
    def receipts(self) -> tuple[bytes, ...]:
        return tuple(self._latch.receipts)

    @property
    def config(self) -> UnitConfig:
        return self._config

    @property
    def revocations_version(self) -> int:
        """Version of the revocation list the unit holds (0: none; no consent: 0)."""
        return 0 if self._updates is None else self._updates.revocations_version

    @property
    def access_log(self) -> AccessLog:
        """The car's access log: entries, signed checkpoints, proofs, pruning."""
        return self._log

    def checkpoint(self) -> bytes:
        """A checkpoint of the access log now, signed by the vehicle key."""
        return self._log.checkpoint()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Receive every event from now on (the first subscriber also gets those
        emitted at boot, before anyone listened)."""
        return self._events.subscribe(subscriber)

    @property
    def boot_lock_failed(self) -> bool:
        """True if locking everything at boot raised and no lock has succeeded since
        (``tick()`` retries it): the car may not be locked."""
        return self._latch.boot_lock_failed

    # -- the courier's exchange ---------------------------------------------
    def challenge(self) -> bytes:
        """A fresh challenge for the courier's device to sign."""
        now, why = self._decision_time()
        if now is None:
            self._events.emit(
                EventKind.ACCESS_DENIED, at=None, reason=Reason.CLOCK_UNTRUSTED,
                detail="no challenge while the clock is untrusted" if why != _UNPERSISTED
                else "no challenge while trusted time cannot be persisted",
            )
            raise AccessDenied(Reason.CLOCK_UNTRUSTED, why)
        challenge = self._challenges.issue(self._time.monotonic())
        self._events.emit(EventKind.CHALLENGE_ISSUED, at=now)
        return challenge

    def present(
        self,
        token: bytes,
        *,
        action: Action | str,
        proof: bytes | None = None,
        challenge: bytes | None = None,
        purpose: Purpose | str | None = None,
        chain: bytes | None = None,
        revocations: bytes | None = None,
    ) -> Outcome:
        """Decide on a token from the courier's device and, if allowed, actuate once.

        ``chain``: the consent chain the token hangs from, unless it is sealed inside the
        token (see :func:`trunkkey.seal`). ``revocations``: a signed
        revocation list the handheld carries; it is applied first when it is validly signed
        and newer than the one held (otherwise ignored, with an event), so the token is
        judged under the newest list either of them knows.
        """
        now, why = self._decision_time()
        if now is None:
            return self._deny(None, Reason.CLOCK_UNTRUSTED, why)
        if revocations is not None:
            self._carried_revocations(revocations)
        try:
            wanted = Action(action)
            wanted_purpose = None if purpose is None else Purpose(purpose)
        except ValueError:
            # The courier's request is untrusted input: deny, do not raise. No
            # other operation exists, during an opening or at any other time.
            return self._deny(
                now, Reason.WRONG_ACTION,
                "the unit only opens the trunk or unlocks the doors; nothing else exists",
            )
        self._latch.expire(now)
        if self._latch.opening is not None:
            return self._deny(now, Reason.UNIT_BUSY, "an opening is already in progress")
        if challenge is not None:
            refusal = self._challenges.redeem(challenge, self._time.monotonic())
            if refusal is not None:
                return self._deny(now, refusal.reason, refusal.detail)
        location = self._position()
        self._spends.expect(wanted.value)
        decision = self._verifier.verify_at(
            token, now=now, vehicle_id=self._vehicle, action=wanted, purpose=wanted_purpose,
            location=location, proof=proof, challenge=challenge, chain=chain,
        )
        claims = decision.claims
        if not decision.allowed or claims is None:
            reason, detail = refine(decision, location, self._config.moved_margin_m)
            return self._deny(now, reason, detail, claims, decision)
        # The ledger has recorded the token as spent (durably) by now, and the
        # floor this decision relied on was stored before it was made.
        self._events.emit(EventKind.TOKEN_ACCEPTED, at=now, token_id=claims.token_id)
        parcels = decision.parcels
        if parcels is not None and not self._record_scan(now, claims, parcels):
            return self._deny(
                now, Reason.LEDGER_UNAVAILABLE,
                "the parcels scanned could not be recorded; token spent, car stays locked",
                claims, decision,
            )
        if not self._latch.open(wanted, claims, now, self._spends.last_opening, parcels):
            return self._deny(
                now, Reason.ACTUATOR_FAILED, "actuator failed after the token was spent",
                claims, decision,
            )
        return self._decisions.record(
            Outcome(reason=Reason.ALLOWED, detail="opened", token_id=claims.token_id,
                    decision=decision),
            self._vehicle, claims.token_id, now,
        )

    # -- sensors and time ----------------------------------------------------
    def trunk_closed(self) -> bool:
        """The trunk's latch sensor reports closed; relock. ``False`` if nothing was open."""
        return self._latch.closed(Action.TRUNK, EventKind.TRUNK_CLOSED, self._now)

    def doors_closed(self) -> bool:
        """The doors report closed after an unlock-relock opening; relock."""
        return self._latch.closed(Action.UNLOCK_RELOCK, EventKind.DOORS_CLOSED, self._now)

    def tick(self) -> None:
        """Let time act: relock after the timeout, or at once if the clock is untrusted."""
        self._latch.expire(self._now())

    def time_sync_nonce(self) -> bytes:
        """A nonce to send to the carmaker's time server."""
        return self._time.sync_nonce()

    def apply_time_sync(self, message: bytes) -> SyncOutcome:
        """Re-synchronise trusted time from the carmaker's signed answer."""
        outcome = self._time.apply_sync(message)
        if outcome.accepted:
            self._clock_alarm_raised = False
            self._events.emit(EventKind.CLOCK_SYNCED, at=self._time.floor, detail=outcome.detail)
        else:
            self._events.emit(
                EventKind.ACCESS_DENIED, at=None, reason=Reason.CLOCK_UNTRUSTED,
                detail=f"time sync refused: {outcome.detail}",
            )
        return outcome

    # -- signed updates from the carmaker -------------------------------------
    def apply_revocations(self, signed: bytes) -> UpdateOutcome:
        """Apply a signed revocation list (pushed over LTE, or carried by a handheld).

        Applied only when signed by a current carmaker root and strictly newer
        than the list held (``rollback`` otherwise); from then on, and after
        any reboot over the same state, the car refuses what it revokes.
        """
        return self._update(
            EventKind.REVOCATIONS_APPLIED, EventKind.REVOCATIONS_REFUSED,
            lambda u, now: u.apply_revocations(signed, now=now),
        )

    def apply_trust_update(self, signed: bytes) -> UpdateOutcome:
        """Apply a signed trust update (root, issuer or this car's KEM keys, with overlaps)."""
        return self._update(
            EventKind.TRUST_UPDATED, EventKind.TRUST_UPDATE_REFUSED,
            lambda u, now: u.apply_trust_update(signed, now=now),
        )

    def _update(
        self, applied: EventKind, refused: EventKind,
        apply: Callable[[ConsentUpdates, int], UpdateOutcome],
    ) -> UpdateOutcome:
        now, why = self._decision_time()
        updates = self._updates
        if now is None:
            # A root's validity is judged at stored trusted time, or not at all:
            # a root refused as expired must not be accepted after a power cut.
            outcome = UpdateOutcome(
                reason=Reason.CLOCK_UNTRUSTED, detail=why,
                version=0 if updates is None else updates.revocations_version,
            )
        elif updates is None:
            outcome = UpdateOutcome(
                reason=Reason.CHAIN_INVALID, detail="this unit holds no consent anchors",
                version=0,
            )
        else:
            outcome = apply(updates, now)
        self._events.emit(
            applied if outcome.applied else refused, at=now,
            reason=None if outcome.applied else outcome.reason, detail=outcome.detail,
        )
        return outcome

    def _carried_revocations(self, signed: bytes) -> None:
        updates = self._updates
        if updates is not None and updates.already_held(signed):
            return  # the list every handheld carries today: nothing to do
        # A list that is not newer or not genuine changes nothing; the
        # presentation is then judged under the list the car already holds.
        self.apply_revocations(signed)

    # -- internals -------------------------------------------------------------
    def _now(self) -> int | None:
        """Trusted time held in memory: enough to relock, never to decide."""
        now = self._time.now()
        if now is None:
            self._clock_alarm()
        return now

    def _decision_time(self) -> tuple[int | None, str]:
        """Trusted time whose floor is on the store, or ``None`` and why not.

        Everything the unit decides goes through here first: a refusal at a
        time the store does not hold could be reversed after a power cut with
        the clock set back within the skew (an expired token allowed again).
        """
        now = self._time.decision_time()
        if now is not None:
            return now, ""
        if not self._time.trusted:
            self._clock_alarm()
            return None, _WENT_BACK
        return None, _UNREADABLE if self._time.unreadable else _UNPERSISTED

    def _clock_alarm(self) -> None:
        if not self._clock_alarm_raised:
            self._clock_alarm_raised = True
            self._events.emit(
                EventKind.CLOCK_UNTRUSTED, at=None,
                detail=f"clock below trusted floor {self._time.floor}",
            )

    def _position(self) -> Location | None:
        try:
            where = self._gps()
        except Exception:  # noqa: BLE001 -- no fix is an unknown position, not a crash
            return None
        return where if isinstance(where, Location) else None

    def _record_scan(self, now: int, claims: TokenClaims, parcels: ParcelRecord) -> bool:
        """Write which parcels were scanned, durably, before the actuator moves; ``False``
        if the log cannot: the car then stays locked (the token is spent, as after a failed
        actuator) rather than open with no record of what the courier claimed to bring or take."""
        try:
            self._log.append(LogEntry(
                kind=EntryKind.PARCELS_SCANNED, at=now, boot=self._time.boot,
                token_id=claims.token_id, parcels=parcels,
            ))
        except Exception:  # noqa: BLE001 -- any storage fault keeps the car locked
            return False
        return True

    def _deny(
        self, now: int | None, reason: Reason, detail: str,
        claims: TokenClaims | None = None, decision: Decision | None = None,
    ) -> Outcome:
        token_id = None if claims is None else claims.token_id
        self._events.emit(
            EventKind.ACCESS_DENIED, at=now, token_id=token_id, reason=reason, detail=detail
        )
        return self._decisions.record(
            Outcome(reason=reason, detail=detail, token_id=token_id, decision=decision),
            self._vehicle, token_id, now,
        )
