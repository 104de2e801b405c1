"""Daily limits decided inside the one atomic step of the fleet ledgers (Redis, PostgreSQL).

Against the real shared servers of ``tools/start-services.sh``: each test
works in a namespace of its own (a key prefix, a table). ``spend`` must check
the token, then every counter, then write the token and bump every counter,
all in one step: a limit checked outside that step races with itself.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import pytest

from test_ledger_contract import SERVER_KINDS, require_server
from tools.faults.ledgers import SyncOverAsync, drop_namespace, new_namespace, open_async_ledger
from trunkkey import LedgerError
from trunkkey.errors import InvalidRequest
from trunkkey.ledger.base import DAY_SECONDS, DailyLimit, SpendOutcome
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger

FIRST, USED, FULL = SpendOutcome.FIRST_USE, SpendOutcome.ALREADY_USED, SpendOutcome.LIMIT_REACHED
CAR = "1HGCM82633A004352"
GRANT_A = hashlib.sha256(b"grant a").digest()
GRANT_B = hashlib.sha256(b"grant b").digest()
ServerLedger = RedisLedger | PostgresLedger | SyncOverAsync


def _now() -> int:
    # Redis expires by its own real clock, so times here are real ones.
    return int(time.time())


class Server:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.url = require_server(kind)
        self.namespace = new_namespace()
        self.opened: list[ServerLedger] = []

    def open(self, **options: object) -> ServerLedger:
        ledger: ServerLedger
        if self.kind.endswith("_async"):  # the async ledgers, each call awaited
            ledger = SyncOverAsync(open_async_ledger(
                self.kind, namespace=self.namespace, url=self.url, **options
            ))
        elif self.kind == "redis":
            prefix = self.namespace.encode() + b":"
            ledger = RedisLedger(self.url, prefix=prefix, **options)  # type: ignore[arg-type]
        else:
            ledger = PostgresLedger(self.url, table=self.namespace, **options)  # type: ignore[arg-type]
        self.opened.append(ledger)
        return ledger

    def close(self) -> None:
        for ledger in self.opened:
            ledger.close()
        drop_namespace(self.kind, self.namespace)


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    made = Server(request.param)
    yield made
    made.close()


def spend(
    ledger: ServerLedger, token: bytes, *limits: DailyLimit, at: int | None = None,
    vehicle: str = CAR,
) -> SpendOutcome:
    at = _now() if at is None else at
    return ledger.spend(vehicle, token, at + 3600, issued_at=at - 60, at=at, limits=limits)


class TestDailyLimits:
    def test_first_use_then_already_used(self, server: Server) -> None:
        ledger = server.open()
        assert spend(ledger, b"t1") is FIRST
        assert spend(ledger, b"t1") is USED
        assert ledger.consume(CAR, b"t1", _now() + 3600) is False
        assert ledger.count() == 1

    def test_the_limit_counts_first_uses_and_then_refuses(self, server: Server) -> None:
        ledger = server.open()
        two = DailyLimit(GRANT_A, 2)
        assert [spend(ledger, bytes([i]), two) for i in range(4)] == [FIRST, FIRST, FULL, FULL]
        assert ledger.count() == 2

    def test_already_used_beats_limit_reached(self, server: Server) -> None:
        ledger = server.open()
        one = DailyLimit(GRANT_A, 1)
        assert spend(ledger, b"only", one) is FIRST
        # The counter is full, yet the answer for the spent token is "already used".
        assert spend(ledger, b"only", one) is USED

    def test_a_refused_spend_writes_nothing(self, server: Server) -> None:
        ledger = server.open()
        at = _now()
        assert spend(ledger, b"a", DailyLimit(GRANT_A, 1), at=at) is FIRST
        # Grant B has room, grant A has none: nothing may be written, B not counted.
        both = (DailyLimit(GRANT_A, 1), DailyLimit(GRANT_B, 1))
        assert spend(ledger, b"b", *both, at=at) is FULL
        assert spend(ledger, b"c", DailyLimit(GRANT_B, 1), at=at) is FIRST
        # The refused token was not recorded: on the next day it opens.
        assert spend(ledger, b"b", DailyLimit(GRANT_A, 1), at=at + DAY_SECONDS) is FIRST
        assert ledger.count() == 3

    def test_counters_are_per_vehicle_grant_and_day(self, server: Server) -> None:
        ledger = server.open()
        at = _now()
        one_a, one_b = DailyLimit(GRANT_A, 1), DailyLimit(GRANT_B, 1)
        assert spend(ledger, b"1", one_a, at=at) is FIRST
        assert spend(ledger, b"2", one_a, at=at, vehicle="another-car") is FIRST
        assert spend(ledger, b"3", one_b, at=at) is FIRST
        assert spend(ledger, b"4", one_a, at=at + DAY_SECONDS) is FIRST
        assert spend(ledger, b"5", one_a, at=at) is FULL
        # The day is the UTC day of `at`: the last second of a day and the first of the next.
        midnight = (at // DAY_SECONDS + 3) * DAY_SECONDS  # two days on: untouched so far
        assert spend(ledger, b"6", one_a, at=midnight - 1) is FIRST
        assert spend(ledger, b"7", one_a, at=midnight - 1) is FULL
        assert spend(ledger, b"8", one_a, at=midnight) is FIRST

    def test_every_limit_is_counted_once_per_first_use(self, server: Server) -> None:
        ledger = server.open()
        limits = (DailyLimit(GRANT_A, 3), DailyLimit(GRANT_B, 2))
        outcomes = [spend(ledger, bytes([i]), *limits) for i in range(3)]
        assert outcomes == [FIRST, FIRST, FULL]  # B (2) is the tighter one
        assert spend(ledger, b"x", DailyLimit(GRANT_A, 3)) is FIRST  # A had counted only 2
        assert spend(ledger, b"y", DailyLimit(GRANT_A, 3)) is FULL

    def test_consume_is_spend_without_limits(self, server: Server) -> None:
        ledger = server.open()
        assert ledger.consume(CAR, b"c", _now() + 3600) is True
        assert spend(ledger, b"c", DailyLimit(GRANT_A, 5)) is USED

    def test_the_request_is_validated_before_anything_is_written(self, server: Server) -> None:
        ledger = server.open()
        with pytest.raises(InvalidRequest):
            spend(ledger, b"t", DailyLimit(GRANT_A, 1), DailyLimit(GRANT_A, 2))
        with pytest.raises(InvalidRequest):
            ledger.spend(CAR, b"t", -1, issued_at=0, at=0)
        assert ledger.count() == 0

    def test_racing_spends_never_pass_the_limit(self, server: Server) -> None:
        # 6 ledgers (6 connections) x 8 distinct tokens each, all at once, under
        # a limit of 5: exactly 5 first uses, whatever the interleaving.
        ledgers = [server.open() for _ in range(6)]
        limit = DailyLimit(GRANT_A, 5)
        at = _now()
        start = threading.Barrier(len(ledgers))
        outcomes: list[SpendOutcome] = []
        lock = threading.Lock()

        def worker(n: int, ledger: ServerLedger) -> None:
            start.wait()
            mine = [spend(ledger, bytes([n, i]), limit, at=at) for i in range(8)]
            with lock:
                outcomes.extend(mine)

        threads = [threading.Thread(target=worker, args=(n, x)) for n, x in enumerate(ledgers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(FIRST) == 5
        assert outcomes.count(FULL) == len(outcomes) - 5
        assert ledgers[0].count() == 5

    def test_racing_presentations_of_one_token_count_once(self, server: Server) -> None:
        ledgers = [server.open() for _ in range(6)]
        limit = DailyLimit(GRANT_A, 2)
        start = threading.Barrier(len(ledgers))
        outcomes: list[SpendOutcome] = []

        def worker(ledger: ServerLedger) -> None:
            start.wait()
            outcomes.append(spend(ledger, b"same", limit))

        threads = [threading.Thread(target=worker, args=(x,)) for x in ledgers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(o.value for o in outcomes) == sorted([FIRST.value] + [USED.value] * 5)
        assert spend(ledgers[0], b"other", limit) is FIRST  # the counter says 1, not 6
        assert spend(ledgers[0], b"third", limit) is FULL


class TestRedisLimitKeys:
    @pytest.fixture
    def redis_server(self) -> Iterator[Server]:
        made = Server("redis")
        yield made
        made.close()

    def test_keys_of_one_vehicle_share_a_cluster_slot(self, redis_server: Server) -> None:
        import redis
        from redis.crc import key_slot

        ledger = redis_server.open()
        # Braces in a vehicle id must not end the hash tag early.
        for vehicle in (CAR, "a}b{c", "{}", "}"):
            assert spend(ledger, b"t", DailyLimit(GRANT_A, 3), DailyLimit(GRANT_B, 3),
                         vehicle=vehicle) is FIRST
        client = redis.Redis.from_url(redis_server.url)
        keys = list(client.scan_iter(match=redis_server.namespace.encode() + b":*"))
        client.close()
        assert len(keys) == 12  # a token and two counters per vehicle
        slots: dict[bytes, set[int]] = {}
        for key in keys:
            tag = key[key.index(b"{") : key.index(b"}") + 1]
            slots.setdefault(tag, set()).add(key_slot(key))
        assert len(slots) == 4
        assert all(len(found) == 1 for found in slots.values())

    def test_counters_expire_by_themselves_after_the_next_day(
        self, redis_server: Server
    ) -> None:
        import redis

        ledger = redis_server.open()
        at = _now()
        assert spend(ledger, b"t", DailyLimit(GRANT_A, 3), at=at) is FIRST
        client = redis.Redis.from_url(redis_server.url)
        prefix = redis_server.namespace.encode() + b":"
        counters = [k for k in client.scan_iter(match=prefix + b"*") if k != _token_key(ledger)]
        assert len(counters) == 1
        # Kept through the day after (prune's "yesterday"), gone after it.
        assert client.pexpiretime(counters[0]) == (at // DAY_SECONDS + 2) * DAY_SECONDS * 1000
        client.close()

    def test_a_day_already_over_by_the_servers_clock_is_refused(
        self, redis_server: Server
    ) -> None:
        ledger = redis_server.open()
        long_ago = _now() - 3 * DAY_SECONDS
        with pytest.raises(LedgerError, match="clock"):
            ledger.spend(CAR, b"t", _now() + 3600, issued_at=long_ago, at=long_ago,
                         limits=(DailyLimit(GRANT_A, 1),))
        assert ledger.count() == 0
        assert spend(ledger, b"t", DailyLimit(GRANT_A, 1)) is FIRST

    def test_too_few_replicas_denies_but_the_spend_stays_counted(
        self, redis_server: Server
    ) -> None:
        ledger = redis_server.open(min_replicas=5, timeout_s=0.3)
        with pytest.raises(LedgerError, match="replicas"):
            spend(ledger, b"unconfirmed", DailyLimit(GRANT_A, 1))
        # On the primary the token is spent and counted: never reopened, never uncounted.
        assert spend(ledger, b"unconfirmed", DailyLimit(GRANT_A, 1)) is USED
        assert spend(ledger, b"next", DailyLimit(GRANT_A, 1)) is FULL


def _token_key(ledger: ServerLedger) -> bytes:
    assert isinstance(ledger, RedisLedger)
    return ledger._key(CAR, b"t")  # the layout is what is under test


class TestPostgresPrune:
    def test_prune_drops_counters_of_days_before_yesterday(self) -> None:
        url = require_server("postgres")
        namespace = new_namespace()
        ledger = PostgresLedger(url, table=namespace)
        try:
            day = 20_000 * DAY_SECONDS
            for n, at in enumerate((day - 2 * DAY_SECONDS, day - DAY_SECONDS, day)):
                assert spend(ledger, bytes([n]), DailyLimit(GRANT_A, 1), at=at) is FIRST
            assert ledger.prune(day) == 2  # the two older tokens (kept an hour each)
            # The counter of the day before yesterday is gone, so that day has room
            # again (no token of it can still be valid); yesterday's is kept.
            assert spend(ledger, b"x", DailyLimit(GRANT_A, 1), at=day - 2 * DAY_SECONDS) is FIRST
            assert spend(ledger, b"y", DailyLimit(GRANT_A, 1), at=day - DAY_SECONDS) is FULL
            assert spend(ledger, b"z", DailyLimit(GRANT_A, 1), at=day) is FULL
        finally:
            ledger.close()
            drop_namespace("postgres", namespace)

