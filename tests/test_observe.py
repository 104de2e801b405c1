"""Observability: the decision hook, the ``trunkkey`` loggers, counters, sanitised errors.

What these tests protect: every decision reaches the hook (allowed, denied,
and an exception turned into a denial); a hook that raises changes no
decision and opens nothing; the log records carry the documented fields and
never a key, a token, a token id or a password; the counters count exactly
under threads; and a ledger failure keeps its cause, sanitised.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support import NOW, VEHICLE, make_world
from support import LogRecords as Records
from trunkkey import (
    Action,
    Decision,
    DecisionCounters,
    DecisionHook,
    Location,
    MemoryLedger,
    Reason,
    SigningKey,
    TrustStore,
    Verifier,
    fan_out,
    token_ref,
)
from trunkkey.inspect import inspect_unverified
from trunkkey.observe import MAX_ERROR_TEXT, describe_error, sanitise
from trunkkey.testing.vehicle import World, courier_present
from trunkkey.vehicle import Outcome

PARKED = Location.from_degrees(52.520008, 13.404954)


class _FailingLedger(MemoryLedger):
    def spend(self, *args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("disk on fire at postgresql://svc:hunter2-pw@db.internal/ledger")


class _ExplodingStore(TrustStore):
    def token_signer(self, *args: object, **kwargs: object) -> NoReturn:
        raise KeyError("boom")


# -- the verifier's hook ------------------------------------------------------------

def test_the_verifier_hook_receives_every_decision_allowed_and_denied() -> None:
    world = make_world()
    seen: list[Decision] = []
    v = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                 on_decision=seen.append)
    token = world.mint()
    returned = [
        v.verify(token, vehicle_id=VEHICLE, action="trunk"),
        v.verify(token, vehicle_id=VEHICLE, action="trunk"),
        v.verify(b"\x00garbage", vehicle_id=VEHICLE, action="trunk"),
        v.verify_at(world.mint(), now=NOW + 10**6, vehicle_id=VEHICLE, action="trunk"),
    ]
    assert [d.reason for d in seen] == [
        Reason.ALLOWED, Reason.ALREADY_USED, Reason.MALFORMED, Reason.EXPIRED]
    assert all(a is b for a, b in zip(seen, returned, strict=True))


def test_exceptions_turned_into_denials_reach_the_hook_with_their_cause(
    records: Records,
) -> None:
    world = make_world()
    seen: list[Decision] = []
    failing = Verifier(trust_store=world.store, ledger=_FailingLedger(), clock=world.clock,
                       on_decision=seen.append)
    d = failing.verify(world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.LEDGER_UNAVAILABLE
    # The cause is kept (class and message), the DSN's password is not.
    assert d.detail == "ledger failed: RuntimeError: disk on fire at postgresql://***@db.internal/ledger"
    exploding = Verifier(trust_store=_ExplodingStore(), ledger=MemoryLedger(),
                         clock=world.clock, on_decision=seen.append)
    e = exploding.verify(world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert (e.reason, e.detail) == (Reason.MALFORMED, "unexpected error while checking: KeyError")
    assert seen == [d, e]
    (ledger_record,) = records.named("trunkkey.ledger")
    assert ledger_record.levelno == logging.WARNING
    assert ledger_record.error_type == "RuntimeError"  # type: ignore[attr-defined]
    (error,) = [r for r in records.named("trunkkey.verifier") if r.levelno == logging.ERROR]
    assert error.error_type == "KeyError"  # type: ignore[attr-defined]
    assert error.where.startswith("test_observe.py:")  # type: ignore[attr-defined]
    assert error.exc_info is None  # no traceback: its text would quote the message raw
    assert all("hunter2" not in r.getMessage() for r in records.records)


def test_a_raising_hook_changes_no_verifier_decision_and_is_logged(records: Records) -> None:
    world = make_world()

    def broken(decision: Decision) -> None:
        raise ValueError(f"hook bug, token was {decision.reason}")

    v = Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock,
                 on_decision=broken)
    token = world.mint()
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").allowed
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").reason is Reason.ALREADY_USED
    assert v.verify(b"junk", vehicle_id=VEHICLE, action="trunk").reason is Reason.MALFORMED
    failures = [r for r in records.records if "decision hook failed" in r.getMessage()]
    assert [r.reason for r in failures] == ["allowed", "already_used", "malformed"]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.ERROR for r in failures)


def test_a_broken_log_handler_changes_no_decision() -> None:
    class Exploding(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 -- logging's name
            raise RuntimeError("and its error handling too")

    logger = logging.getLogger("trunkkey.verifier")
    handler, level = Exploding(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        world = make_world()
        assert world.verifier.verify(world.mint(), vehicle_id=VEHICLE, action="trunk").allowed
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_hook_that_is_not_callable_is_refused_at_construction() -> None:
    world = make_world()
    with pytest.raises(TypeError, match="on_decision"):
        Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock,
                 on_decision="print")  # type: ignore[arg-type]


# -- the vehicle unit's hook ----------------------------------------------------------

def _car_world(tmp_path: Path, hook: DecisionHook[Outcome]) -> World:
    return World(start=NOW, state_dir=tmp_path, on_decision=hook)


def test_the_unit_hook_receives_every_outcome_including_the_unit_s_own_denials(
    tmp_path: Path,
) -> None:
    seen: list[Outcome] = []
    world = _car_world(tmp_path, seen.append)
    car = world.enrol_car("VIN-OBS-0001")
    world.park(car, PARKED)
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier)
    returned = [
        courier_present(car, token, courier),
        courier_present(car, world.mint(car, courier=courier), courier),  # trunk still open
    ]
    world.advance(30)
    car.unit.trunk_closed()
    returned.append(courier_present(car, token, courier))
    returned.append(car.unit.present(token, action="start-engine"))
    assert [o.reason for o in seen] == [
        Reason.ALLOWED, Reason.UNIT_BUSY, Reason.ALREADY_USED, Reason.WRONG_ACTION]
    assert all(a is b for a, b in zip(seen, returned, strict=True))


def test_a_raising_unit_hook_opens_nothing_more_and_denies_nothing_allowed(
    tmp_path: Path, records: Records,
) -> None:
    calls: list[Reason] = []

    def broken(outcome: Outcome) -> None:
        calls.append(outcome.reason)
        raise RuntimeError("dashboard unreachable")

    world = _car_world(tmp_path, broken)
    car = world.enrol_car("VIN-OBS-0002")
    world.park(car, PARKED)
    courier = SigningKey.generate()
    token = world.mint(car, courier=courier)
    assert courier_present(car, token, courier).allowed
    assert car.body.trunk_openings == 1
    world.advance(30)
    car.unit.trunk_closed()
    assert courier_present(car, token, courier).reason is Reason.ALREADY_USED
    assert courier_present(car, world.mint(car, courier=None), None).allowed  # a bare token
    assert (car.body.trunk_openings, calls) == (
        2, [Reason.ALLOWED, Reason.ALREADY_USED, Reason.ALLOWED])
    failed = [r for r in records.named("trunkkey.vehicle") if r.levelno == logging.ERROR]
    assert len(failed) == 3


# -- log records --------------------------------------------------------------------

def test_decision_records_carry_the_documented_fields(records: Records) -> None:
    world = make_world()
    token = world.mint()
    token_id = inspect_unverified(token).claims.token_id
    world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
    world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
    world.verifier.verify(b"junk", vehicle_id=VEHICLE, action="trunk")
    allowed, replayed, junk = records.named("trunkkey.verifier")
    fields = ("reason", "allowed", "detail", "vehicle_id", "token_ref", "at")
    assert [getattr(allowed, f) for f in fields] == [
        "allowed", True, "all checks passed", VEHICLE, token_ref(token_id), NOW]
    assert (replayed.reason, replayed.allowed, replayed.token_ref) == (  # type: ignore[attr-defined]
        "already_used", False, token_ref(token_id))
    assert (junk.reason, junk.token_ref) == ("malformed", None)  # type: ignore[attr-defined]
    assert {r.levelno for r in (allowed, replayed, junk)} == {logging.INFO}
    assert len(token_ref(token_id)) == 16
    assert token_id.hex() not in allowed.getMessage()


def test_faults_log_as_warnings_and_ordinary_denials_as_info(records: Records) -> None:
    world = make_world()
    failing = Verifier(trust_store=world.store, ledger=_FailingLedger(), clock=world.clock)
    failing.verify(world.mint(), vehicle_id=VEHICLE, action="trunk")
    world.verifier.verify(world.mint(), vehicle_id=VEHICLE, action="unlock-relock")
    levels = {r.reason: r.levelno for r in records.named("trunkkey.verifier")}  # type: ignore[attr-defined]
    assert levels == {"ledger_unavailable": logging.WARNING, "wrong_action": logging.INFO}


def test_with_logging_unconfigured_nothing_reaches_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    world = make_world()
    failing = Verifier(trust_store=world.store, ledger=_FailingLedger(), clock=world.clock)
    assert failing.verify(world.mint(), vehicle_id=VEHICLE, action="trunk").reason is (
        Reason.LEDGER_UNAVAILABLE)
    assert capsys.readouterr().err == ""  # the library's NullHandler, not logging's last resort


# -- counters -------------------------------------------------------------------------

def test_counters_list_every_reason_and_count_exactly_under_threads() -> None:
    counters = DecisionCounters()
    assert counters.snapshot() == dict.fromkeys((r.value for r in Reason), 0)
    world = make_world()
    token = world.mint()
    v = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                 on_decision=counters)
    v.verify(token, vehicle_id=VEHICLE, action="trunk")
    v.verify(token, vehicle_id=VEHICLE, action="trunk")
    one_denial = v.verify(token, vehicle_id=VEHICLE, action="trunk")

    def hammer() -> None:
        for _ in range(2000):
            counters(one_denial)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = counters.snapshot()
    assert (snap["allowed"], snap["already_used"]) == (1, 2 + 8 * 2000)
    assert sum(snap.values()) == 3 + 8 * 2000
    assert all(type(k) is str and type(n) is int for k, n in snap.items())
    snap["allowed"] = 99  # a copy: the exporter cannot change the counts
    assert counters.snapshot()["allowed"] == 1


def test_one_counter_serves_the_verifier_and_the_unit(tmp_path: Path) -> None:
    counters = DecisionCounters()
    world = _car_world(tmp_path, counters)
    car = world.enrol_car("VIN-OBS-0003")
    token = world.mint(car, courier=None)
    courier_present(car, token, None)
    world.advance(30)
    car.unit.trunk_closed()
    courier_present(car, token, None)
    snap = counters.snapshot()
    assert (snap["allowed"], snap["already_used"]) == (1, 1)


def test_fan_out_calls_every_hook_even_after_one_raises() -> None:
    world = make_world()
    first, last = DecisionCounters(), DecisionCounters()

    def broken(decision: Decision) -> None:
        raise RuntimeError("one hook down")

    both = fan_out(first, broken, last)
    v = Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock,
                 on_decision=both)
    assert v.verify(world.mint(), vehicle_id=VEHICLE, action="trunk").allowed
    assert first.snapshot()["allowed"] == last.snapshot()["allowed"] == 1
    with pytest.raises(RuntimeError, match="one hook down"):
        both(v.verify(b"junk", vehicle_id=VEHICLE, action=Action.TRUNK))


# -- sanitising ----------------------------------------------------------------------

_SECRETS = st.text(
    alphabet=st.sampled_from("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!$%^&*()-+~"),
    min_size=12, max_size=40,
).map(lambda s: "Zq" + s)


@given(password=_SECRETS, user=st.sampled_from(["postgres", "svc", ""]))
def test_sanitised_text_never_holds_a_url_or_dsn_password(password: str, user: str) -> None:
    texts = [
        f"could not connect to postgresql://{user}:{password}@db:5432/x",
        f"redis://{user}:{password}@cache:6379/0 refused",
        f"connection failed: host=db port=5432 user={user} password={password} dbname=x",
        f"AUTH failed; password: '{password}'",
        f"bad config {{'password': \"{password}\"}}",
    ]
    for text in texts:
        clean = sanitise(text)
        assert password not in clean, (text, clean)
        assert len(clean) <= MAX_ERROR_TEXT


# Key material is high-entropy: the redaction of runs is a heuristic for exactly that.
@given(key=st.binary(min_size=16, max_size=64).filter(lambda k: len(set(k)) >= 8))
def test_sanitised_text_never_holds_key_like_runs(key: bytes) -> None:
    import base64

    for form in (key.hex(), base64.b64encode(key).decode(), repr(key)):
        clean = sanitise(f"Error with key {form} in command SET")
        # A run of random bytes this long is redacted in each encoding.
        assert form not in clean


def test_sanitising_keeps_the_cause_readable_and_on_one_line() -> None:
    text = ('connection failed: connection to server at "127.0.0.1", port 1 failed: '
            "Connection refused\n\tIs the server running on that host?")
    assert sanitise(text) == (
        'connection failed: connection to server at "127.0.0.1", port 1 failed: '
        "Connection refused Is the server running on that host?")
    long = "word " * 2_000
    assert sanitise(long).endswith("…")
    assert len(sanitise(long)) == MAX_ERROR_TEXT
    assert describe_error(OSError()) == "OSError"
    assert describe_error(TimeoutError("timed out")) == "TimeoutError: timed out"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_error(Unprintable()) == "Unprintable"


_LATE_LOGGING = """
import sys
from trunkkey import Issuer, ManualClock, MemoryLedger, SigningKey, TrustedKey, TrustStore, Verifier
clock = ManualClock(1_800_000_000)
key = SigningKey.generate()
issuer = Issuer(key, "r", clock=clock)
seen = []
v = Verifier(trust_store=TrustStore([TrustedKey.create(key.public_key, "r")]),
             ledger=MemoryLedger(), clock=clock, on_decision=seen.append)
mint = lambda: issuer.mint(vehicle_id="V", action="trunk", not_before=clock.now(),
                           expires=clock.now() + 60)
assert v.verify(mint(), vehicle_id="V", action="trunk").allowed
assert "logging" not in sys.modules
import logging
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(reason)s")
assert v.verify(mint(), vehicle_id="V", action="trunk").allowed
assert len(seen) == 2
"""


def test_decisions_before_logging_is_imported_are_decided_and_later_ones_logged() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", _LATE_LOGGING], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["trunkkey.verifier allowed"]
