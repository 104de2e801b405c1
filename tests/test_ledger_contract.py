"""One contract, run for every ledger: memory, SQLite, Redis, PostgreSQL, and the
asyncio Redis, Redis Cluster and PostgreSQL ledgers (through
``tools.faults.ledgers.SyncOverAsync``, which awaits each call on an event loop
of its own).

``TestSpendContract`` holds every ledger to the one atomic step of
``Ledger.spend``: the order of its outcomes, nothing written on a refusal,
daily-limit counters per vehicle, per grant and per UTC day, and the same
refusal of malformed requests everywhere.

The Redis and PostgreSQL cases run against the real servers that
``tools/start-services.sh`` starts (``TRUNKKEY_REDIS_URL``,
``TRUNKKEY_POSTGRES_DSN``, and the ``*_REPLICA_*`` read-only replicas; the
cluster of ``--replicated``, ``TRUNKKEY_REDIS_CLUSTER_URL``). When a server is
missing they skip with the reason locally, and fail under ``CI``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from support import NOW, VEHICLE, World, make_world
from tools.faults.faults import fault_proxy
from tools.faults.growth import run_growth, run_redis_growth
from tools.faults.ledgers import (
    ASYNC_KINDS,
    CLUSTER_ASYNC_KINDS,
    DEAD,
    KINDS,
    REPLICA_ENV,
    SERVER_ENV,
    SyncOverAsync,
    drop_namespace,
    new_namespace,
    open_async_ledger,
    open_ledger,
    server_of,
    server_problem,
)
from trunkkey import LedgerError, Reason, Verifier
from trunkkey.errors import InvalidRequest
from trunkkey.ledger.base import (
    DAY_SECONDS,
    MAX_LIMITS,
    MAX_TOKEN_ID_BYTES,
    MAX_VEHICLE_ID_BYTES,
    DailyLimit,
    Ledger,
    SpendOutcome,
)
from trunkkey.ledger.memory import MemoryLedger
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger
from trunkkey.ledger.redis_cluster import RedisClusterLedger
from trunkkey.ledger.sqlite import SqliteLedger

SERVER_KINDS = ("redis", "postgres", *ASYNC_KINDS)
EVERY_KIND = KINDS + ASYNC_KINDS
#: The Redis Cluster ledgers (``TRUNKKEY_REDIS_CLUSTER_URL``): held to the contract
#: and the verifier over it, not to the one-server fault tests below.
CLUSTER_KINDS = ("redis_cluster", *CLUSTER_ASYNC_KINDS)
#: Every kind the contract (and the verifier over it) holds.
CONTRACT_KINDS = EVERY_KIND + CLUSTER_KINDS
_problems: dict[str, str | None] = {}


def require_server(kind: str) -> str:
    """The server's URL, or skip (locally) / fail (CI) saying why it is missing."""
    if kind not in _problems:
        _problems[kind] = server_problem(kind)
    problem = _problems[kind]
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the {kind} ledger tests: {problem}")
        pytest.skip(f"no {kind} server: {problem}")
    return os.environ[SERVER_ENV[kind]]


@dataclass
class Backend:
    """How to open one kind of ledger, and what that kind promises."""

    kind: str
    tmp: Path
    namespace: str = field(default_factory=new_namespace)
    opened: list[Ledger] = field(default_factory=list)

    @property
    def persistent(self) -> bool:
        return self.kind != "memory"

    @property
    def self_expiring(self) -> bool:
        """Redis drops entries by itself at keep_until; prune has nothing to do."""
        return server_of(self.kind) in {"redis", "redis_cluster"}

    def open(self, url: str | None = None) -> Ledger:
        ledger = open_ledger(
            self.kind, namespace=self.namespace, path=self.tmp / "ledger.db", url=url
        )
        self.opened.append(ledger)
        return ledger

    def close_all(self) -> None:
        for ledger in self.opened:
            ledger.close()
        if self.kind in SERVER_KINDS + CLUSTER_KINDS:
            drop_namespace(self.kind, self.namespace)


def make_backend(kind: str, tmp: Path) -> Backend:
    if kind in SERVER_KINDS + CLUSTER_KINDS:
        require_server(kind)
    return Backend(kind, tmp)


@pytest.fixture(params=CONTRACT_KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def ledger(backend: Backend) -> Ledger:
    return backend.open()


def real_future() -> int:
    """A keep_until far ahead of real time too (Redis expires by its own clock)."""
    return int(time.time()) + 86_400


class TestLedgerContract:
    def test_satisfies_protocol(self, ledger: Ledger) -> None:
        assert isinstance(ledger, Ledger)

    def test_first_consume_wins_second_loses(self, ledger: Ledger) -> None:
        until = real_future()
        assert ledger.consume(VEHICLE, b"t" * 16, until) is True
        assert ledger.consume(VEHICLE, b"t" * 16, until) is False
        assert ledger.consume(VEHICLE, b"t" * 16, until + 999) is False
        assert ledger.count() == 1

    def test_vehicle_and_token_are_independent(self, ledger: Ledger) -> None:
        until = real_future()
        assert ledger.consume("car-a", b"same-id", until) is True
        assert ledger.consume("car-b", b"same-id", until) is True
        assert ledger.consume("car-a", b"other-id", until) is True
        assert ledger.consume("car-b", b"same-id", until) is False
        assert ledger.count() == 3

    def test_key_encoding_is_unambiguous(self, ledger: Ledger) -> None:
        # A naive concatenation would make ("ab", b"c") and ("a", b"bc") one key.
        until = real_future()
        assert ledger.consume("ab", b"c", until) is True
        assert ledger.consume("a", b"bc", until) is True
        assert ledger.consume("a\u00e9", b"x", until) is True
        assert ledger.consume("a", "\u00e9x".encode(), until) is True

    def test_reopen_keeps_spent_tokens(self, backend: Backend) -> None:
        until = real_future()
        first = backend.open()
        assert first.consume(VEHICLE, b"survivor", until) is True
        first.close()
        # The memory ledger is documented to forget with its process; every other keeps.
        expected = not backend.persistent
        assert backend.open().consume(VEHICLE, b"survivor", until) is expected

    def test_prune_keeps_until_keep_until_then_removes(self, backend: Backend) -> None:
        ledger = backend.open()
        if backend.self_expiring:
            assert isinstance(ledger, RedisLedger | RedisClusterLedger | SyncOverAsync)
            until = real_future()
            assert ledger.consume(VEHICLE, b"exp", until) is True
            # Kept through the whole second keep_until, gone right after it.
            assert ledger.expire_time_ms(VEHICLE, b"exp") == (until + 1) * 1000
            assert ledger.prune(until + 10) == 0
            return
        assert ledger.consume(VEHICLE, b"a", NOW + 100) is True
        assert ledger.consume(VEHICLE, b"b", NOW + 200) is True
        assert ledger.prune(NOW) == 0
        assert ledger.prune(NOW + 100) == 0  # keep_until itself is still kept
        assert ledger.consume(VEHICLE, b"a", NOW + 100) is False
        assert ledger.prune(NOW + 101) == 1
        assert ledger.count() == 1
        assert ledger.consume(VEHICLE, b"b", NOW + 200) is False
        assert ledger.prune(NOW + 10_000) == 1
        assert ledger.count() == 0

    def test_prune_limit_is_honoured(self, backend: Backend) -> None:
        ledger = backend.open()
        if backend.self_expiring:  # Redis expires by itself: prune never removes anything
            ledger.consume(VEHICLE, b"x", real_future())
            assert ledger.prune(real_future() * 2, limit=1) == 0
            assert ledger.count() == 1
            return
        for i in range(25):
            assert ledger.consume(VEHICLE, i.to_bytes(2, "big"), NOW + i)
        assert ledger.prune(NOW + 100, limit=10) == 10
        assert ledger.count() == 15
        assert ledger.prune(NOW + 100, limit=0) == 0
        assert ledger.prune(NOW + 100, limit=100) == 15
        assert ledger.count() == 0

    def test_prune_limit_takes_the_oldest_first(self, backend: Backend) -> None:
        ledger = backend.open()
        if backend.self_expiring:  # each key carries its own expiry instead
            for i in range(3):
                ledger.consume(VEHICLE, bytes([i]), real_future() + i)
            assert isinstance(ledger, RedisLedger | RedisClusterLedger | SyncOverAsync)
            times = [ledger.expire_time_ms(VEHICLE, bytes([i])) for i in range(3)]
            assert times == sorted(times)
            assert len(set(times)) == 3
            return
        for i in range(10):
            ledger.consume(VEHICLE, bytes([i]), NOW + i)
        assert ledger.prune(NOW + 100, limit=3) == 3
        for i in range(3):
            assert ledger.consume(VEHICLE, bytes([i]), NOW + 1000) is True
        for i in range(3, 10):
            assert ledger.consume(VEHICLE, bytes([i]), NOW + 1000) is False

    @pytest.mark.parametrize(
        ("now", "limit"),
        [(NOW * 1000, None), (-1, None), (float(NOW), None), (True, None), (str(NOW), None),
         (NOW, -1), (NOW, 1.0), (NOW, True), (NOW, "10")],
        ids=["milliseconds", "negative", "float", "bool", "text",
             "negative-limit", "float-limit", "bool-limit", "text-limit"],
    )
    def test_prune_refuses_a_time_or_limit_it_cannot_trust_and_forgets_nothing(
        self, backend: Backend, now: object, limit: object
    ) -> None:
        # Pruning deletes the only record that a token was spent: a "now" in
        # milliseconds would forget every live token, so every ledger refuses
        # the same requests (ledger.base.check_prune) before touching anything.
        ledger = backend.open()
        until = real_future() if backend.self_expiring else NOW + 100
        assert ledger.consume(VEHICLE, b"live", until) is True
        with pytest.raises(InvalidRequest):
            ledger.prune(now, limit=limit)  # type: ignore[arg-type]
        assert ledger.consume(VEHICLE, b"live", until) is False
        assert ledger.count() == 1

    @pytest.mark.parametrize(
        ("vehicle", "token"),
        [
            ("", b"t"),
            (VEHICLE, b""),
            ("v" * (MAX_VEHICLE_ID_BYTES + 1), b"t"),
            ("\u00e9" * (MAX_VEHICLE_ID_BYTES // 2 + 1), b"t"),  # bound is in bytes
            (VEHICLE, b"t" * (MAX_TOKEN_ID_BYTES + 1)),
            (b"bytes-vehicle", b"t"),
            (VEHICLE, "str-token"),
            (VEHICLE, bytearray(b"t")),
        ],
    )
    def test_key_bounds(self, ledger: Ledger, vehicle: object, token: object) -> None:
        with pytest.raises(InvalidRequest):
            ledger.consume(vehicle, token, real_future())  # type: ignore[arg-type]
        assert ledger.count() == 0

    def test_largest_keys_are_accepted(self, ledger: Ledger) -> None:
        assert ledger.consume("v" * MAX_VEHICLE_ID_BYTES, b"t" * MAX_TOKEN_ID_BYTES, real_future())

    def test_closed_ledger_raises(self, ledger: Ledger) -> None:
        if isinstance(ledger, MemoryLedger):
            # Documented: nothing to release, so closing changes nothing.
            ledger.close()
            assert ledger.consume(VEHICLE, b"after-close", real_future()) is True
            return
        ledger.close()
        with pytest.raises(LedgerError):
            ledger.consume(VEHICLE, b"after-close", real_future())


FIRST, USED, FULL, EARLY = (
    SpendOutcome.FIRST_USE, SpendOutcome.ALREADY_USED, SpendOutcome.LIMIT_REACHED,
    SpendOutcome.ISSUED_BEFORE_LEDGER,
)
GRANT_A = bytes(range(32))
GRANT_B = bytes(range(100, 132))
GRANT_C = bytes(range(200, 232))


def limit(grant: bytes, n: int) -> DailyLimit:
    return DailyLimit(grant, n)


@dataclass(frozen=True)
class Day:
    """A UTC day near real time (Redis keeps what it keeps by its own clock)."""

    start: int

    @classmethod
    def today(cls) -> Day:
        return cls(int(time.time()) // DAY_SECONDS * DAY_SECONDS)

    @property
    def last_second(self) -> int:
        return self.start + DAY_SECONDS - 1

    def next(self) -> Day:
        return Day(self.start + DAY_SECONDS)


class Spender:
    """``ledger.spend`` with the times of one day filled in: tests read as outcomes."""

    def __init__(self, ledger: Ledger, day: Day) -> None:
        self.ledger = ledger
        self.day = day

    def __call__(
        self, token: bytes, *limits: DailyLimit, vehicle: str = VEHICLE, at: int | None = None
    ) -> SpendOutcome:
        when = self.day.start + 60 if at is None else at
        return self.ledger.spend(
            vehicle, token, when + 2 * DAY_SECONDS, issued_at=when - 60, at=when, limits=limits
        )


@pytest.fixture
def spend(ledger: Ledger) -> Spender:
    return Spender(ledger, Day.today())


class TestSpendContract:
    def test_first_spend_wins_and_every_later_one_is_already_used(self, spend: Spender) -> None:
        assert spend(b"tok") is FIRST
        assert spend(b"tok") is USED
        assert spend(b"tok", limit(GRANT_A, 5)) is USED
        assert spend.ledger.count() == 1

    def test_already_used_beats_a_full_limit(self, spend: Spender) -> None:
        assert spend(b"tok", limit(GRANT_A, 1)) is FIRST
        # The limit is full now, but this token's answer is that it was spent.
        assert spend(b"tok", limit(GRANT_A, 1)) is USED

    def test_a_full_limit_refuses_and_records_nothing(self, spend: Spender) -> None:
        assert spend(b"one", limit(GRANT_A, 1)) is FIRST
        assert spend(b"two", limit(GRANT_A, 1)) is FULL
        assert spend(b"two", limit(GRANT_A, 1)) is FULL  # still not recorded
        assert spend.ledger.count() == 1
        assert spend(b"two") is FIRST  # without the limit it was never spent

    def test_a_refused_spend_counts_against_no_limit(self, spend: Spender) -> None:
        assert spend(b"one", limit(GRANT_A, 1), limit(GRANT_B, 2)) is FIRST
        # Refused by A: B must not count it, or "three" below would be refused.
        assert spend(b"two", limit(GRANT_A, 1), limit(GRANT_B, 2)) is FULL
        assert spend(b"three", limit(GRANT_B, 2)) is FIRST
        assert spend(b"four", limit(GRANT_B, 2)) is FULL

    def test_a_limit_of_n_opens_exactly_n_times_a_day(self, spend: Spender) -> None:
        outcomes = [spend(bytes([i]), limit(GRANT_A, 3)) for i in range(6)]
        assert outcomes == [FIRST] * 3 + [FULL] * 3

    def test_every_limit_given_is_counted(self, spend: Spender) -> None:
        assert spend(b"one", limit(GRANT_A, 2), limit(GRANT_B, 1), limit(GRANT_C, 2)) is FIRST
        assert spend(b"two", limit(GRANT_B, 1)) is FULL
        assert spend(b"three", limit(GRANT_A, 2)) is FIRST
        assert spend(b"four", limit(GRANT_A, 2)) is FULL
        assert spend(b"five", limit(GRANT_C, 2)) is FIRST
        assert spend(b"six", limit(GRANT_C, 2)) is FULL

    def test_counters_are_per_vehicle(self, spend: Spender) -> None:
        assert spend(b"tok", limit(GRANT_A, 1), vehicle="car-a") is FIRST
        assert spend(b"tok", limit(GRANT_A, 1), vehicle="car-b") is FIRST
        assert spend(b"other", limit(GRANT_A, 1), vehicle="car-a") is FULL
        assert spend(b"other", limit(GRANT_A, 1), vehicle="car-b") is FULL

    def test_counters_are_per_grant(self, spend: Spender) -> None:
        assert spend(b"one", limit(GRANT_A, 1)) is FIRST
        assert spend(b"two", limit(GRANT_B, 1)) is FIRST
        assert spend(b"three", limit(GRANT_A, 1)) is FULL

    def test_the_limit_resets_on_the_next_utc_day(self, spend: Spender) -> None:
        today, tomorrow = spend.day, spend.day.next()
        assert spend(b"one", limit(GRANT_A, 1), at=today.start) is FIRST
        assert spend(b"two", limit(GRANT_A, 1), at=today.last_second) is FULL
        assert spend(b"two", limit(GRANT_A, 1), at=tomorrow.start) is FIRST
        assert spend(b"three", limit(GRANT_A, 1), at=tomorrow.start + 5) is FULL

    def test_consume_and_spend_share_one_record_and_consume_counts_nothing(
        self, spend: Spender
    ) -> None:
        until = real_future() + 3 * DAY_SECONDS
        assert spend.ledger.consume(VEHICLE, b"consumed", until) is True
        assert spend(b"consumed") is USED
        assert spend(b"spent", limit(GRANT_A, 1)) is FIRST
        assert spend.ledger.consume(VEHICLE, b"spent", until) is False
        assert spend(b"after", limit(GRANT_B, 1)) is FIRST  # consume counted against nothing

    def test_spend_on_another_vehicle_is_another_token(self, spend: Spender) -> None:
        assert spend(b"tok", vehicle="car-a") is FIRST
        assert spend(b"tok", vehicle="car-b") is FIRST

    def test_a_spent_token_is_kept_until_keep_until_then_pruned(self, backend: Backend) -> None:
        if backend.self_expiring:
            return  # Redis expires by its own clock: its prune has nothing to do
        ledger = backend.open()
        assert ledger.spend(VEHICLE, b"a", NOW + 100, issued_at=NOW, at=NOW) is FIRST
        assert ledger.prune(NOW + 100) == 0
        assert ledger.spend(VEHICLE, b"a", NOW + 100, issued_at=NOW, at=NOW) is USED
        assert ledger.prune(NOW + 101) == 1
        assert ledger.count() == 0

    def test_prune_drops_counters_of_days_before_yesterday(self, backend: Backend) -> None:
        if backend.self_expiring:
            return  # Redis expires its counters itself
        ledger = backend.open()
        day = NOW // DAY_SECONDS * DAY_SECONDS
        gate = (limit(GRANT_A, 1),)

        def spend_on(token: bytes) -> SpendOutcome:
            return ledger.spend(VEHICLE, token, NOW + 10**6, issued_at=day, at=day, limits=gate)

        assert spend_on(b"one") is FIRST
        # Yesterday's counters stay (a decision may still be made "yesterday"
        # by a clock a little behind), the day before goes.
        ledger.prune(day + 2 * DAY_SECONDS - 1)
        assert spend_on(b"two") is FULL
        removed = ledger.prune(day + 2 * DAY_SECONDS)
        assert removed == 0  # prune's count is of spent tokens, not of counters
        assert spend_on(b"two") is FIRST
        assert ledger.count() == 2

    @pytest.mark.parametrize(
        "bad",
        [
            pytest.param({"vehicle_id": ""}, id="empty-vehicle"),
            pytest.param({"vehicle_id": "v" * (MAX_VEHICLE_ID_BYTES + 1)}, id="long-vehicle"),
            pytest.param({"vehicle_id": "\u00e9" * (MAX_VEHICLE_ID_BYTES // 2 + 1)},
                         id="vehicle-long-in-utf8"),
            pytest.param({"vehicle_id": b"bytes-vehicle"}, id="bytes-vehicle"),
            pytest.param({"token_id": b""}, id="empty-token"),
            pytest.param({"token_id": b"t" * (MAX_TOKEN_ID_BYTES + 1)}, id="long-token"),
            pytest.param({"token_id": "str-token"}, id="str-token"),
            pytest.param({"token_id": bytearray(b"t")}, id="bytearray-token"),
            pytest.param({"keep_until": -1}, id="negative-keep-until"),
            pytest.param({"keep_until": 2**41}, id="keep-until-too-late"),
            pytest.param({"keep_until": 1.5}, id="float-keep-until"),
            pytest.param({"keep_until": True}, id="bool-keep-until"),
            pytest.param({"issued_at": -1}, id="negative-issued-at"),
            pytest.param({"issued_at": "0"}, id="str-issued-at"),
            pytest.param({"at": 2**41}, id="at-too-late"),
            pytest.param({"at": None}, id="no-at"),
            pytest.param({"limits": [DailyLimit(GRANT_A, 1)]}, id="limits-a-list"),
            pytest.param({"limits": (DailyLimit(GRANT_A, 1), DailyLimit(GRANT_A, 2))},
                         id="one-grant-twice"),
            pytest.param(
                {"limits": tuple(DailyLimit(bytes([i]) * 32, 1) for i in range(MAX_LIMITS + 1))},
                id="too-many-limits",
            ),
            pytest.param({"limits": ((GRANT_A, 1),)}, id="limit-not-a-DailyLimit"),
            pytest.param({"limits": None}, id="limits-none"),
        ],
    )
    def test_malformed_requests_are_refused_alike_and_record_nothing(
        self, spend: Spender, bad: dict[str, object]
    ) -> None:
        at = spend.day.start + 60
        request: dict[str, object] = {
            "vehicle_id": VEHICLE, "token_id": b"tok", "keep_until": at + DAY_SECONDS,
            "issued_at": at, "at": at, "limits": (DailyLimit(GRANT_A, 1),),
        }
        request.update(bad)
        vehicle, token, keep_until = (request.pop(k) for k in ("vehicle_id", "token_id",
                                                                 "keep_until"))
        with pytest.raises(InvalidRequest):
            spend.ledger.spend(vehicle, token, keep_until, **request)  # type: ignore[arg-type]
        assert spend.ledger.count() == 0
        assert spend(b"tok", limit(GRANT_A, 1)) is FIRST  # neither the token nor the counter moved

    @pytest.mark.parametrize(
        ("grant", "n"),
        [(b"short", 1), (GRANT_A * 2, 1), (bytearray(GRANT_A), 1), (GRANT_A, 0),
         (GRANT_A, 1_000_001), (GRANT_A, 1.0), (GRANT_A, True)],
    )
    def test_a_malformed_daily_limit_cannot_be_made(self, grant: object, n: object) -> None:
        with pytest.raises(InvalidRequest):
            DailyLimit(grant, n)  # type: ignore[arg-type]

    def test_a_closed_ledger_raises_on_spend(self, spend: Spender) -> None:
        if isinstance(spend.ledger, MemoryLedger):
            spend.ledger.close()  # documented: nothing to release, nothing changes
            assert spend(b"after-close") is FIRST
            return
        spend.ledger.close()
        with pytest.raises(LedgerError):
            spend(b"after-close")


FLOOR = NOW + 1_000


def _with_floor(kind: str, tmp: Path) -> Ledger:
    """A ledger of ``kind`` that was started afresh with start floor ``FLOOR``."""
    if kind == "memory":
        return MemoryLedger(start_floor=FLOOR)
    afresh = SqliteLedger.start_afresh(tmp / "ledger.db", now=FLOOR - 300)
    if kind == "sqlite":
        return afresh
    afresh.close()
    return open_ledger(kind, path=tmp / "ledger.db")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite_group"])
class TestStartFloor:
    """A ledger started afresh after a loss refuses every token issued before it began."""

    def test_a_token_issued_before_the_floor_is_refused_and_not_recorded(
        self, kind: str, tmp_path: Path
    ) -> None:
        ledger = _with_floor(kind, tmp_path)
        assert ledger.spend(VEHICLE, b"old", FLOOR + 99, issued_at=FLOOR - 1, at=FLOOR) is EARLY
        assert ledger.count() == 0
        assert ledger.spend(VEHICLE, b"new", FLOOR + 99, issued_at=FLOOR, at=FLOOR) is FIRST
        assert ledger.spend(VEHICLE, b"new", FLOOR + 99, issued_at=FLOOR, at=FLOOR) is USED
        ledger.close()

    def test_issued_before_the_ledger_comes_before_every_other_answer(
        self, kind: str, tmp_path: Path
    ) -> None:
        ledger = _with_floor(kind, tmp_path)
        gate = (limit(GRANT_A, 1),)
        assert ledger.spend(VEHICLE, b"t", FLOOR + 9, issued_at=FLOOR, at=FLOOR,
                            limits=gate) is FIRST
        # Spent, and the limit is full: still, its issue time is what is answered.
        assert ledger.spend(VEHICLE, b"t", FLOOR + 9, issued_at=FLOOR - 1, at=FLOOR,
                            limits=gate) is EARLY
        assert ledger.spend(VEHICLE, b"u", FLOOR + 9, issued_at=FLOOR - 1, at=FLOOR,
                            limits=gate) is EARLY
        ledger.close()

    def test_consume_raises_since_it_cannot_tell_the_issue_time(
        self, kind: str, tmp_path: Path
    ) -> None:
        ledger = _with_floor(kind, tmp_path)
        with pytest.raises(LedgerError, match="started afresh"):
            ledger.consume(VEHICLE, b"any", FLOOR + 99)
        assert ledger.count() == 0
        ledger.close()

    def test_a_new_ledger_refuses_nothing_by_issue_time(self, kind: str, tmp_path: Path) -> None:
        ledger = open_ledger(kind, path=tmp_path / "first-install.db")
        assert ledger.spend(VEHICLE, b"t", NOW, issued_at=0, at=NOW) is FIRST
        assert ledger.consume(VEHICLE, b"u", NOW) is True
        ledger.close()


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit(parts._replace(netloc=new))


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = make_backend(request.param, tmp_path)
    yield made
    made.close_all()


def _short(kind: str, url: str, namespace: str) -> Ledger:
    if kind == "redis_async":
        return SyncOverAsync(open_async_ledger(kind, namespace=namespace, url=url, timeout_s=0.3))
    if kind == "postgres_async":
        return SyncOverAsync(open_async_ledger(kind, namespace=namespace, url=url, timeout_s=0.5))
    if kind == "redis":
        return RedisLedger(url, prefix=namespace.encode() + b":", timeout_s=0.3)
    return PostgresLedger(url, table=namespace, timeout_s=0.5)


class TestServerLedgersFailClosed:
    """Connection loss, timeouts and read-only replicas raise; nothing is accepted."""

    def test_unreachable_server_raises(self, server: Backend) -> None:
        def attempt() -> None:
            # PostgreSQL fails while opening (schema check), Redis on first use: both raise.
            ledger = _short(server.kind, DEAD[server.kind], server.namespace)
            ledger.consume(VEHICLE, b"nobody-home", real_future())

        with pytest.raises(LedgerError):
            attempt()

    def test_read_only_replica_raises(self, server: Backend) -> None:
        server.open()  # the primary creates the schema, which replicates
        replica_url = os.environ.get(REPLICA_ENV[server.kind])
        if not replica_url:
            if os.environ.get("CI"):
                pytest.fail(f"CI must run the replica test: {REPLICA_ENV[server.kind]} unset")
            pytest.skip(f"{REPLICA_ENV[server.kind]} is not set")
        replica = _wait_for_schema(server, replica_url)
        with pytest.raises(LedgerError):
            replica.consume(VEHICLE, b"to-a-replica", real_future())
        replica.close()

    @pytest.mark.parametrize("kind", ["postgres", "postgres_async"])
    def test_read_only_transactions_raise(self, kind: str, tmp_path: Path) -> None:
        server = make_backend(kind, tmp_path)
        server.open()
        url = os.environ[SERVER_ENV["postgres"]]
        sep = "&" if "?" in url else "?"
        ro = _short(
            kind, f"{url}{sep}options=-c%20default_transaction_read_only%3Don", server.namespace
        )
        with pytest.raises(LedgerError, match="25006"):
            ro.consume(VEHICLE, b"read-only", real_future())
        ro.close()
        server.close_all()

    @pytest.mark.parametrize("fault", ["hang", "cut"])
    def test_link_failure_mid_request_raises(self, server: Backend, fault: str) -> None:
        server.open()
        url = os.environ[SERVER_ENV[server.kind]]
        port = urlsplit(url).port
        assert port is not None
        with fault_proxy("127.0.0.1", port) as proxy:
            ledger = _short(server.kind, _with_port(url, proxy.port), server.namespace)
            assert ledger.consume(VEHICLE, b"before", real_future()) is True
            proxy.mode = fault
            started = time.monotonic()
            with pytest.raises(LedgerError):
                ledger.consume(VEHICLE, b"during", real_future())
            assert time.monotonic() - started < 3, "a hung server must fail fast, not block"
            ledger.close()
        # Nothing was accepted that is not recorded: the token either is in the
        # ledger (the write landed before the fault) or can still be spent once.
        check = server.open()
        assert check.consume(VEHICLE, b"before", real_future()) is False

    def test_recovers_after_connection_loss(self, server: Backend) -> None:
        server.open()
        url = os.environ[SERVER_ENV[server.kind]]
        port = urlsplit(url).port
        assert port is not None
        with fault_proxy("127.0.0.1", port) as proxy:
            ledger = _short(server.kind, _with_port(url, proxy.port), server.namespace)
            assert ledger.consume(VEHICLE, b"one", real_future()) is True
            proxy.mode = "cut"
            with pytest.raises(LedgerError):
                ledger.consume(VEHICLE, b"two", real_future())
            proxy.mode = "forward"
            # A fresh connection is opened; the spent token stays spent.
            assert ledger.consume(VEHICLE, b"one", real_future()) is False
            ledger.close()

    def test_errors_do_not_leak_credentials(self, server: Backend) -> None:
        url = DEAD[server.kind].replace("://", "://user:hunter2secret@")
        with pytest.raises(LedgerError) as caught:
            _short(server.kind, url, server.namespace).consume(VEHICLE, b"x", real_future())
        assert "hunter2secret" not in str(caught.value)


def _redis(kind: str, url: str, namespace: str, **options: Any) -> Ledger:
    if kind == "redis_async":
        return SyncOverAsync(open_async_ledger(kind, namespace=namespace, url=url, **options))
    return RedisLedger(url, prefix=namespace.encode() + b":", **options)


@pytest.mark.parametrize("kind", ["redis", "redis_async"])
class TestRedisReplicaAcknowledgement:
    """min_replicas: a consume counts only once that many replicas hold it (WAIT)."""

    def test_waits_for_the_replica(self, kind: str, tmp_path: Path) -> None:
        url = require_server("redis")
        if not os.environ.get(REPLICA_ENV["redis"]):
            if os.environ.get("CI"):
                pytest.fail(f"CI must run the replica test: {REPLICA_ENV['redis']} unset")
            pytest.skip("no Redis replica")
        namespace = new_namespace()
        ledger = _redis(kind, url, namespace, min_replicas=1)
        assert ledger.consume(VEHICLE, b"replicated", real_future()) is True
        assert ledger.consume(VEHICLE, b"replicated", real_future()) is False
        ledger.close()
        drop_namespace("redis", namespace)

    def test_too_few_replicas_denies(self, kind: str) -> None:
        url = require_server("redis")
        namespace = new_namespace()
        ledger = _redis(kind, url, namespace, min_replicas=5, timeout_s=0.2)
        with pytest.raises(LedgerError, match="replicas"):
            ledger.consume(VEHICLE, b"unconfirmed", real_future())
        # The write stayed on the primary: the token is spent, never reopened.
        assert ledger.consume(VEHICLE, b"unconfirmed", real_future()) is False
        ledger.close()
        drop_namespace("redis", namespace)


def _wait_for_schema(server: Backend, replica_url: str) -> Ledger:
    """Open the replica once the primary's table has replicated (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return _short(server.kind, replica_url, server.namespace)
        except LedgerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # replication lag of a local standby, not a test clock


class TestVerifierOverEveryLedger:
    """A real Verifier, a real token, each ledger: one opening, then denials."""

    @pytest.fixture
    def world(self) -> World:
        return make_world()

    @staticmethod
    def presenter(world: World, ledger: Ledger) -> Callable[[bytes], Reason]:
        verifier = Verifier(trust_store=world.store, ledger=ledger, clock=world.clock)

        def present(token: bytes) -> Reason:
            return verifier.verify(token, vehicle_id=VEHICLE, action="trunk").reason

        return present

    def test_second_presentation_is_already_used(self, backend: Backend, world: World) -> None:
        token = world.mint()
        present = self.presenter(world, backend.open())
        assert present(token) is Reason.ALLOWED
        assert present(token) is Reason.ALREADY_USED
        if backend.persistent:  # another verifier on the same ledger refuses it too
            assert self.presenter(world, backend.open())(token) is Reason.ALREADY_USED

    @pytest.mark.parametrize("kind", [k for k in EVERY_KIND if k != "memory"])  # memory cannot
    def test_broken_ledger_is_ledger_unavailable(
        self, kind: str, world: World, tmp_path: Path
    ) -> None:
        backend = make_backend(kind, tmp_path)
        try:
            self._broken(backend, world)
        finally:
            backend.close_all()

    def _broken(self, backend: Backend, world: World) -> None:
        token = world.mint()
        broken = backend.open()
        broken.close()
        present = self.presenter(world, broken)
        assert present(token) is Reason.LEDGER_UNAVAILABLE
        assert present(token) is Reason.LEDGER_UNAVAILABLE
        if backend.kind in SERVER_KINDS:  # and a server that drops the connection
            url = os.environ[SERVER_ENV[backend.kind]]
            port = urlsplit(url).port
            assert port is not None
            with fault_proxy("127.0.0.1", port) as proxy:
                cut = _short(backend.kind, _with_port(url, proxy.port), backend.namespace)
                proxy.mode = "cut"
                assert self.presenter(world, cut)(token) is Reason.LEDGER_UNAVAILABLE
                cut.close()
        # The denied token was never recorded, so it still opens, once.
        present = self.presenter(world, backend.open())
        assert present(token) is Reason.ALLOWED
        assert present(token) is Reason.ALREADY_USED


class TestBoundedGrowth:
    """A compressed month: after every prune, held == spent tokens still possibly valid.

    ``python -m tools.faults.growth --ledger {sqlite,postgres,redis} --tokens 1000000``
    runs the full month; docs/ledgers.md has the figures.
    """

    @pytest.mark.parametrize(
        ("kind", "tokens", "days"),
        # Fewer tokens where each consume is an fsync, over fewer days at the same rate.
        [("memory", 20_000, 30), ("sqlite", 1_500, 7), ("postgres", 1_500, 7)],
    )
    def test_holds_only_what_could_still_be_valid(
        self, kind: str, tokens: int, days: int, tmp_path: Path
    ) -> None:
        if kind in SERVER_KINDS:
            require_server(kind)
        result = run_growth(kind, tokens=tokens, days=days, path=tmp_path / "growth.db")
        assert result.mismatches == 0
        assert result.max_held == result.max_could_be_valid
        # Bounded: at most the tokens of a few hours, never the month's total.
        assert 0 < result.max_held_before_prune < tokens // 10
        assert result.prunes >= days * 24 - 1
        assert result.held_at_end == 0

    def test_postgres_parallel_consumers_and_table_size(self) -> None:
        # The million-token run's setup: worker threads consuming each hour's
        # tokens in parallel, prune(limit=) batches, VACUUM standing in for
        # autovacuum; small enough for the default run.
        require_server("postgres")
        tokens = 6_000
        result = run_growth("postgres", tokens=tokens, days=7, workers=4, prune_limit=25)
        assert result.ok, result
        assert result.mismatches == 0
        assert result.max_held == result.max_could_be_valid
        assert 0 < result.max_held_before_prune < tokens // 20
        assert result.prunes >= 7 * 24 - 1
        # On disk: a row with its two index entries takes ~80 bytes, so a table
        # that kept the week's tokens would pass 0.45 MB; this one holds a few hours'.
        assert result.max_bytes is not None
        assert 0 < result.max_bytes < tokens * 40
        # And it plateaus: the last day's table is no bigger than twice the first's
        # (without VACUUM it keeps growing with every token spent, 3-4x over the week).
        assert result.daily_bytes is not None
        assert len(result.daily_bytes) == 7
        assert result.daily_bytes[-1] <= 2 * result.daily_bytes[0]

    def test_redis_holds_only_what_could_still_be_valid(self) -> None:
        # A day of simulated traffic on the Redis server's real clock, six
        # simulated hours per real second (about six seconds): at each second's
        # start the prefix holds exactly the spent tokens whose keep_until has
        # not passed in the simulation, key for key.
        require_server("redis")
        tokens = 2_000
        result = run_redis_growth(tokens=tokens, days=1, tick=6 * 3600)
        assert result.late == 0, "a check spilled into the next second: the machine is too busy"
        assert result.mismatches == 0
        assert result.max_held == result.max_could_be_valid
        assert 0 < result.max_held < result.max_held_before_prune < tokens // 2
        assert result.held_at_end == 0
        assert result.prunes >= 5  # 4 ticks of issuing, then the tail until all expired

    def test_redis_refuses_a_token_whose_keep_until_has_passed(self) -> None:
        # The other side of the mapping: a keep_until already past by the
        # server's clock leaves no key behind (Redis drops a SET whose PXAT
        # has passed), so nothing outlives its validity even for a moment.
        url = require_server("redis")
        import redis  # the optional client, present when the server is

        client = redis.Redis.from_url(url)
        server_now = int(client.time()[0])
        client.close()
        namespace = new_namespace()
        ledger = RedisLedger(url, prefix=namespace.encode() + b":")
        try:
            # Nothing can be recorded, so the consume fails closed rather
            # than answering "first use" with no record behind it.
            with pytest.raises(LedgerError, match="clock"):
                ledger.consume(VEHICLE, b"long-gone", server_now - 2)
            assert ledger.expire_time_ms(VEHICLE, b"long-gone") is None
            assert ledger.count() == 0
        finally:
            ledger.close()
            drop_namespace("redis", namespace)


def test_server_clients_are_imported_only_when_a_ledger_is_made() -> None:
    code = (
        "import sys, trunkkey, trunkkey.ledger.redis, trunkkey.ledger.postgres, "
        "trunkkey.ledger.redis_async, trunkkey.ledger.postgres_async, trunkkey.verifier_async; "
        "print('redis' in sys.modules, 'psycopg' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
