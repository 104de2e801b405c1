"""Each ledger against a model, under random sequences of consume / spend / prune / time / reopen.

The model is a dict of spent keys to keep_until, and the daily-limit
counters per (vehicle, grant, UTC day). Three things must hold at every
step, for every ledger:

* consume and spend answer what the model says: a key never spent (or spent
  and pruned) is a first use unless a limit it is spent under is full today,
  a key still held is already used;
* no key is ever consumed twice while its keep_until has not passed — pruning,
  time and reopening notwithstanding;
* no (vehicle, grant) opens more than its limit in one UTC day.

Spends are decided at the model's "now", which never goes back, so a
counter is never asked about after prune may have dropped it.

A prune with a limit may remove any of the expired entries (ties in
keep_until have no order), so after one the model marks the expired keys as
"maybe held" and learns from the next consume which it was.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from support import NOW
from test_ledger_contract import SERVER_KINDS, require_server
from tools.faults.ledgers import (
    ASYNC_KINDS,
    KINDS,
    drop_namespace,
    new_namespace,
    open_ledger,
    server_of,
)
from trunkkey.ledger.base import DAY_SECONDS, DailyLimit, Ledger, SpendOutcome

VEHICLES = st.sampled_from(["car-1", "car-2", "\u00e9t\u00e9"])
TOKENS = st.sampled_from([b"\x00", b"\x01", b"\x00\x01", b"tok", b"t" * 64])
GRANTS = (bytes(range(32)), bytes(range(1, 33)), bytes(range(2, 34)))
#: Which of GRANTS a spend is limited by, each with its limit today.
LIMITS = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), max_size=3,
                  unique_by=lambda pair: pair[0])
Key = tuple[str, bytes]
Counter = tuple[str, bytes, int]  # vehicle, grant, day


class LedgerModel(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.namespace = new_namespace()
        self.tmp = TemporaryDirectory()
        self.path = Path(self.tmp.name) / "ledger.db"
        # Redis expires entries by its own (real) clock: model time starts a
        # day ahead of real time and never moves, so nothing expires mid-run.
        self.now = int(time.time()) + 86_400 if server_of(self.kind) == "redis" else NOW
        self.held: dict[Key, int] = {}
        self.maybe: dict[Key, int] = {}
        self.used: dict[Counter, int] = {}
        self.ledger = self._open()

    def _open(self) -> Ledger:
        return open_ledger(self.kind, namespace=self.namespace, path=self.path)

    @rule(vehicle=VEHICLES, token=TOKENS, ttl=st.integers(0, 400))
    def consume(self, vehicle: str, token: bytes, ttl: int) -> None:
        key = (vehicle, token)
        result = self.ledger.consume(vehicle, token, self.now + ttl)
        if key in self.held:
            assert result is False, f"{key} spent twice before {self.held[key]} (now {self.now})"
        elif key in self.maybe:
            # A limited prune may or may not have taken it; both answers are sound.
            if result is False:
                self.held[key] = self.maybe.pop(key)
                return
            del self.maybe[key]
        else:
            assert result is True, f"{key} was never spent, yet refused"
        if result:
            self.held[key] = self.now + ttl

    @rule(vehicle=VEHICLES, token=TOKENS, ttl=st.integers(0, 400), chosen=LIMITS)
    def spend(
        self, vehicle: str, token: bytes, ttl: int, chosen: list[tuple[int, int]]
    ) -> None:
        key = (vehicle, token)
        limits = tuple(DailyLimit(GRANTS[g], n) for g, n in chosen)
        day = self.now // DAY_SECONDS
        result = self.ledger.spend(
            vehicle, token, self.now + ttl, issued_at=self.now, at=self.now, limits=limits
        )
        if key in self.held:
            assert result is SpendOutcome.ALREADY_USED, (key, result)
            return
        if key in self.maybe:
            # A limited prune may or may not have taken it; both answers are sound.
            if result is SpendOutcome.ALREADY_USED:
                self.held[key] = self.maybe.pop(key)
                return
            del self.maybe[key]
        full = [
            item for item in limits if self.used.get((vehicle, item.grant, day), 0) >= item.limit
        ]
        if full:
            assert result is SpendOutcome.LIMIT_REACHED, (key, limits, result)
            return
        assert result is SpendOutcome.FIRST_USE, (key, limits, result)
        self.held[key] = self.now + ttl
        for item in limits:
            counter = (vehicle, item.grant, day)
            self.used[counter] = self.used.get(counter, 0) + 1

    @precondition(lambda self: server_of(self.kind) != "redis")
    @rule(seconds=st.integers(0, 300))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @precondition(lambda self: server_of(self.kind) != "redis")
    @rule(into=st.integers(0, 120))
    def next_day(self, into: int) -> None:
        # To just past the next UTC midnight: yesterday's limits no longer bind.
        self.now = (self.now // DAY_SECONDS + 1) * DAY_SECONDS + into

    @rule(limit=st.none() | st.integers(0, 4))
    def prune(self, limit: int | None) -> None:
        removed = self.ledger.prune(self.now, limit=limit)
        expired = [k for k, until in self.held.items() if until < self.now]
        if server_of(self.kind) == "redis":
            assert removed == 0
            assert not expired
            return
        assert removed >= (len(expired) if limit is None else min(limit, len(expired)))
        assert removed <= len(expired) + len(self.maybe)
        if limit is not None:
            assert removed <= limit
        for key in expired:
            self.maybe[key] = self.held.pop(key)
        if limit is None or removed < limit:
            # Everything expired is gone now.
            self.maybe.clear()

    @precondition(lambda self: self.kind != "memory")
    @rule()
    def reopen(self) -> None:
        self.ledger.close()
        self.ledger = self._open()

    @invariant()
    def count_matches(self) -> None:
        count = self.ledger.count()
        assert len(self.held) <= count <= len(self.held) + len(self.maybe)

    @invariant()
    def nothing_live_was_dropped(self) -> None:
        # Every held key whose keep_until has not passed is still refused.
        for (vehicle, token), until in list(self.held.items())[:3]:
            if until >= self.now:
                assert self.ledger.consume(vehicle, token, until) is False

    def teardown(self) -> None:
        self.ledger.close()
        if self.kind in SERVER_KINDS:
            drop_namespace(self.kind, self.namespace)
        self.tmp.cleanup()


def _machine(kind: str) -> type[LedgerModel]:
    return type(f"{kind.title()}LedgerModel", (LedgerModel,), {"kind": kind})


_CI = bool(os.environ.get("CI"))
_EXAMPLES = {"memory": 150, "sqlite": 40, "sqlite_group": 30, "redis": 40, "postgres": 40,
             "redis_async": 10, "postgres_async": 10}  # each reopen opens a pool


@pytest.mark.parametrize("kind", KINDS + ASYNC_KINDS)
def test_ledger_matches_model(kind: str) -> None:
    if kind in SERVER_KINDS:
        require_server(kind)
    examples = _EXAMPLES[kind] * (2 if _CI else 1)
    machine = _machine(kind)
    machine.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=40, deadline=None
    )
    machine.TestCase().runTest()
