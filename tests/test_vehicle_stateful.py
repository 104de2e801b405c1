"""A hypothesis state machine of the vehicle unit.

Couriers and attackers mint, present, replay and relay tokens while time
moves, trunks close, the unit reboots over the same ledger file — cleanly, or
by a power cut that keeps only what it stored, with the clock set back while
it is off — and the clock is stepped back within and beyond the skew, run
fast, and re-synchronised. After every step:

* the trunk never opens without a valid, unused token and a proof from the
  device key in its ``cnf``;
* the cabin is never unlocked by a trunk token;
* every opening is relocked within the timeout (the unit is ticked as time
  moves, so an opening still in progress is always younger than the timeout);
* no token opens twice, across reboots and power cuts included;
* a token once refused as ``expired`` is never allowed afterwards;
* the car's trusted time never runs back: every decision is made at a time
  no earlier than the one before it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from trunkkey import Action, Location, Reason, SigningKey, SqliteLedger, inspect_unverified
from trunkkey.testing.vehicle import World, courier_present
from trunkkey.vehicle import Outcome, UnitState

T0 = 1_800_000_000
PLACE = Location.from_degrees(59.329323, 18.068581)
SKEW = 60
TIMEOUT = 120
#: A RAM-backed directory when there is one: the ledger is still a real SQLite
#: file (reopened on "reboot"), only the fsyncs stop costing disk latency.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


@dataclass(frozen=True, slots=True)
class Minted:
    token: bytes
    token_id: bytes
    action: Action
    vehicle_id: str
    not_before: int
    expires: int


class UnitMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    @initialize()
    def boot(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tk-stateful-", dir=SCRATCH))
        self.world = World(start=T0, state_dir=self.dir)
        self.car = self.world.enrol_car("VIN-S")
        self.fence = self.world.park(self.car, PLACE, radius_m=50)
        self.courier = SigningKey.generate()
        self.thief = SigningKey.generate()
        self.opened: set[bytes] = set()  # token ids that ever opened anything
        self.current: Minted | None = None  # the token of the opening in progress
        self.opened_true_at = 0  # true time of that opening (the car's clock may differ)
        self.refused_expired: set[bytes] = set()
        self.decided_at = 0  # the car's trusted time at its latest verifier decision

    def teardown(self) -> None:
        if hasattr(self, "car"):
            opened = len(self.opened)
            event(f"tokens that opened: {min(opened, 3)}{'+' if opened > 2 else ''}")
            event(f"boots: {min(self.car.unit.boot_number, 3)}")
            event(f"refused as expired: {min(len(self.refused_expired), 2)}")
            self.car.unit.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- retailer -------------------------------------------------------------
    @rule(target=tokens, action=st.sampled_from(list(Action)),
          window=st.sampled_from([30, 100, 300, 3600]), elsewhere=st.booleans())
    def mint(self, action: Action, window: int, elsewhere: bool) -> Minted:
        return self._mint(action, window, elsewhere)

    def _mint(self, action: Action, window: int, elsewhere: bool) -> Minted:
        vehicle = "VIN-OTHER" if elsewhere else self.car.vehicle_id
        token = self.world.mint(vehicle, courier=self.courier, geofence=self.fence,
                                action=action, window=window)
        claims = inspect_unverified(token).claims
        return Minted(token, claims.token_id, action, vehicle, claims.not_before,
                      claims.expires)

    @rule(target=tokens, action=st.sampled_from(list(Action)),
          window=st.sampled_from([100, 3600]))
    def honest_delivery(self, action: Action, window: int) -> Minted:
        """The common case: a fresh token for this car, presented at once with its proof."""
        minted = self._mint(action, window, False)
        self._present(minted, "proof", action)
        return minted

    # -- presentations ----------------------------------------------------------
    def _present(self, minted: Minted, how: str, action: Action) -> None:
        if how == "proof":
            outcome = courier_present(self.car, minted.token, self.courier, action=action)
        elif how == "bare":
            outcome = self.car.unit.present(minted.token, action=action)
        elif how == "thief":
            outcome = courier_present(self.car, minted.token, self.thief, action=action)
        else:  # a proof for a challenge that went stale in a relay
            outcome = courier_present(self.car, minted.token, self.courier, action=action,
                                      delay=lambda: self.world.advance(31))
        self._judge_time(minted, outcome)
        if not outcome.allowed:
            return
        # The trunk (or doors) opened: everything about the token must be right.
        assert how == "proof", f"opened without a fresh proof ({how})"
        assert outcome.token_id == minted.token_id
        assert minted.vehicle_id == self.car.vehicle_id
        assert minted.action is action
        assert self.car.unit.clock_trusted
        self._record(minted, outcome.token_id)

    def _judge_time(self, minted: Minted, outcome: Outcome) -> None:
        """What the car's time decided: never back, never an expired token revived."""
        decision = outcome.decision
        if outcome.reason is Reason.EXPIRED:
            self.refused_expired.add(minted.token_id)
        if outcome.allowed:
            assert minted.token_id not in self.refused_expired, (
                "a token refused as expired was allowed later")
            # Judged on the car's own trusted time, which a clock set back within
            # the skew (or held back while the unit was off) can leave behind
            # true time; the floor only keeps it from running back.
            assert decision is not None
            assert minted.not_before - SKEW <= decision.at < minted.expires + SKEW
        if decision is not None:
            assert decision.at >= self.decided_at, "the car decided at an earlier time"
            self.decided_at = decision.at

    @rule(minted=tokens, how=st.sampled_from(["proof", "bare", "thief", "relay"]))
    def present(self, minted: Minted, how: str) -> None:
        self._present(minted, how, minted.action)

    @rule(minted=tokens)
    def present_for_the_cabin(self, minted: Minted) -> None:
        self._present(minted, "proof", Action.UNLOCK_RELOCK)

    @rule(minted=tokens)
    def replay(self, minted: Minted) -> None:
        """Present again whatever was presented: a spent token must say so."""
        was_spent = minted.token_id in self.opened
        outcome = courier_present(self.car, minted.token, self.courier, action=minted.action)
        self._judge_time(minted, outcome)
        if was_spent:
            assert not outcome.allowed
            assert outcome.reason in {Reason.ALREADY_USED, Reason.UNIT_BUSY,
                                      Reason.CLOCK_UNTRUSTED, Reason.EXPIRED}
        elif outcome.allowed:
            self._record(minted, outcome.token_id)

    def _record(self, minted: Minted, token_id: bytes | None) -> None:
        assert token_id == minted.token_id
        assert minted.token_id not in self.opened, "a token opened twice"
        self.opened.add(minted.token_id)
        self.current = minted
        self.opened_true_at = self.world.now

    # -- the car and time ---------------------------------------------------------
    @rule(seconds=st.integers(min_value=1, max_value=400))
    def advance(self, seconds: int) -> None:
        self.world.advance(seconds)

    @rule(minted=tokens, before=st.integers(min_value=0, max_value=SKEW - 1),
          after=st.integers(min_value=0, max_value=SKEW - 1),
          then=st.sampled_from(["leave", "retry", "power_cut"]),
          below_stored_floor=st.integers(min_value=0, max_value=SKEW))
    def late_courier(
        self, minted: Minted, before: int, after: int, then: str, below_stored_floor: int,
    ) -> None:
        """True time reaches ``before`` s short of the end of a token's window (skew
        included), then ``after`` s past it, in two ticks, and the courier presents
        it; then leaves, tries again, or tries again after the car lost power (its
        clock set back while off). The floor stored at the first tick need not
        cover the refusal: the edge where a refused token could come back."""
        edge = minted.expires + SKEW
        if self.world.now < edge - before:
            self.world.advance(edge - before - self.world.now)
        self.world.advance(before + after)
        self._present(minted, "proof", minted.action)
        if then == "power_cut":
            self.power_cut(below_stored_floor)
        if then != "leave":
            self._present(minted, "proof", minted.action)

    @rule()
    def close(self) -> None:
        self.car.unit.trunk_closed()
        self.car.unit.doors_closed()

    @rule()
    def reboot(self) -> None:
        """A clean shutdown and boot: ``close()`` stores the floor first."""
        self.world.reboot(self.car)

    @rule(below_stored_floor=st.one_of(st.none(), st.integers(min_value=0, max_value=SKEW)))
    def power_cut(self, below_stored_floor: int | None) -> None:
        """The unit dies without a word, and its clock may be set back while it is off.

        Only what the unit stored survives: the ledger's commits and the time
        file as last written (no ``close()``, so no checkpoint). The attacker
        who sets the clock back aims as low as the stored floor lets it go
        unnoticed: ``below_stored_floor`` seconds under it, at most the skew.
        """
        car = self.car
        path = car.ledger.path  # type: ignore[attr-defined]
        car.ledger.close()  # the connection dies with the process; its commits stay
        stored = car.time_store.load()
        if below_stored_floor is not None and stored is not None:
            target = stored.floor - below_stored_floor - stored.offset
            car.clock.set(min(car.clock.now(), target))
        car.ledger = SqliteLedger(path)
        car.unit = self.world._boot(car)

    @rule(seconds=st.integers(min_value=1, max_value=SKEW))
    def step_clock_back_within_the_skew(self, seconds: int) -> None:
        self.car.clock.advance(-seconds)
        self.car.unit.tick()

    @rule(seconds=st.integers(min_value=1, max_value=6 * 3600))
    def roll_clock_back(self, seconds: int) -> None:
        self.car.clock.advance(-seconds)
        self.car.unit.tick()
        if seconds > SKEW:
            assert not self.car.unit.clock_trusted

    @rule(seconds=st.integers(min_value=1, max_value=120))
    def run_clock_fast(self, seconds: int) -> None:
        """The car's clock jumps ahead of true time (not detectable; true time catches up)."""
        self.car.clock.advance(seconds)
        self.car.unit.tick()

    @rule()
    def resync(self) -> None:
        floor = self.car.unit.trusted_time_floor
        outcome = self.world.time_sync(self.car)
        # True time is refused only when a fast clock left the floor beyond the skew.
        assert outcome.accepted is (self.world.now >= floor - SKEW), outcome.detail

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def hardware_matches_the_unit(self) -> None:
        if not hasattr(self, "car"):
            return
        body, unit = self.car.body, self.car.unit
        assert body.trunk_unlatched == (unit.state is UnitState.TRUNK_OPEN)
        assert body.doors_unlocked == (unit.state is UnitState.DOORS_UNLOCKED)
        if unit.opening is None:
            self.current = None

    @invariant()
    def cabin_never_unlocked_by_a_trunk_token(self) -> None:
        if not hasattr(self, "car") or not self.car.body.doors_unlocked:
            return
        opening = self.car.unit.opening
        assert opening is not None
        assert opening.action is Action.UNLOCK_RELOCK
        assert self.current is not None
        assert self.current.action is Action.UNLOCK_RELOCK

    @invariant()
    def every_opening_relocks_within_the_timeout(self) -> None:
        if not hasattr(self, "car"):
            return
        opening = self.car.unit.opening
        if opening is not None:
            # In true time: the car's own clock may have been set back before the opening.
            assert self.world.now - self.opened_true_at < TIMEOUT
            assert opening.relock_deadline - opening.opened_at == TIMEOUT

    @invariant()
    def openings_match_spent_tokens(self) -> None:
        if not hasattr(self, "car"):
            return
        body = self.car.body
        # Count only hardware openings of this boot's body: one per token, never more.
        assert body.trunk_openings + body.door_unlocks == len(self.opened)


TestVehicleUnit = UnitMachine.TestCase
TestVehicleUnit.settings = settings(
    max_examples=1000 if os.environ.get("CI") else 400,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
