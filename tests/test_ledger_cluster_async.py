"""The async Redis Cluster ledger keeps the synchronous one's promises, on a real cluster.

Against the cluster of ``tools/start-services.sh --replicated``
(``TRUNKKEY_REDIS_CLUSTER_URL``; skipped locally without it, a failure under
CI). Other tests share that cluster, so nothing here kills, pauses or
reconfigures a node: a failover's stale layout is made by handing the
ledger a ``CLUSTER SLOTS`` answer that names the wrong node (another
primary, a replica, an address where nothing answers), which is what the
ledger holds between a failover and its next reading of the layout. The
ledger contract itself runs on this kind in tests/test_ledger_contract.py
(``redis_cluster_async``).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from support import VEHICLE, World, make_world
from test_ledger_contract import require_server
from tools.faults.ledgers import drop_namespace, new_namespace
from tools.faults.race import run_limit_race, run_race
from trunkkey import AsyncVerifier, InvalidRequest, LedgerError, Reason
from trunkkey.ledger import AsyncRedisClusterLedger, RedisClusterLedger
from trunkkey.ledger._cluster_layout import (
    PER_NODE_SHARE,
    Address,
    ClusterRouting,
    Layout,
    cluster_config,
    slot_of,
)
from trunkkey.ledger.base import DailyLimit, SpendOutcome

KIND = "redis_cluster_async"
SRC = Path(__file__).resolve().parents[1] / "src" / "trunkkey" / "ledger"
#: What a call may take beyond its ``timeout_s`` on a busy machine; a second
#: budget stacked on the first (a step outside the one deadline) takes far more.
SLACK_S = 0.5


@pytest.fixture
def url() -> str:
    return require_server(KIND)


@pytest.fixture
def namespace(url: str) -> Iterator[bytes]:
    name = new_namespace()
    yield name.encode() + b":"
    drop_namespace(KIND, name, url)


def run(scene: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(scene())


def until() -> int:
    return int(time.time()) + 3600  # Redis keeps entries by its own clock


def layout(url: str) -> Layout:
    import redis

    client = redis.Redis.from_url(url)
    try:
        slots = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    parts = urlsplit(url)
    return Layout.parse(slots, (parts.hostname or "", parts.port or 6379))


def all_slots_on(address: Address) -> list[list[object]]:
    """A ``CLUSTER SLOTS`` answer giving every slot to ``address``."""
    return [[0, 16383, [address[0].encode(), address[1], b"0" * 40]]]


def real_world() -> World:
    world = make_world()
    world.clock.set(int(time.time()))
    return world


@pytest.fixture
def hung() -> Iterator[Callable[[], Address]]:
    """Addresses that accept a connection (the kernel's backlog) and never answer."""
    made: list[socket.socket] = []

    def listener() -> Address:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        made.append(sock)
        return ("127.0.0.1", sock.getsockname()[1])

    yield listener
    for sock in made:
        sock.close()


class TestSpends:
    def test_a_hundred_concurrent_presentations_of_one_token_open_once(
        self, url: str, namespace: bytes
    ) -> None:
        world = real_world()
        now = world.clock.now()
        token = world.mint(not_before=now, expires=now + 600)
        fresh = [world.mint(not_before=now, expires=now + 600) for _ in range(100)]

        async def scene() -> tuple[list[Reason], list[Reason]]:
            async with await AsyncRedisClusterLedger.open(url, prefix=namespace) as ledger:
                verifier = AsyncVerifier(trust_store=world.store, ledger=ledger, clock=world.clock)
                same = await asyncio.gather(*(
                    verifier.verify(token, vehicle_id=VEHICLE, action="trunk") for _ in range(100)
                ))
                different = await asyncio.gather(*(
                    verifier.verify(t, vehicle_id=VEHICLE, action="trunk") for t in fresh
                ))
            return [d.reason for d in same], [d.reason for d in different]

        one, many = run(scene)
        assert one.count(Reason.ALLOWED) == 1
        assert one.count(Reason.ALREADY_USED) == 99
        assert many == [Reason.ALLOWED] * 100

    def test_a_vehicle_s_token_and_daily_limit_stay_in_one_script_on_every_primary(
        self, url: str, namespace: bytes
    ) -> None:
        limit = (DailyLimit(hashlib.sha256(b"owner's grant").digest(), 1),)
        cars = [f"ACAR{n:04d}" for n in range(12)]
        known = layout(url)
        assert {known.owner(slot_of(car.encode())) for car in cars} == set(known.primaries)
        at = int(time.time())

        async def scene() -> list[tuple[SpendOutcome, ...]]:
            async with await AsyncRedisClusterLedger.open(url, prefix=namespace) as ledger:
                async def spend(car: str, token: bytes) -> SpendOutcome:
                    return await ledger.spend(car, token, at + 3600, issued_at=at, at=at,
                                              limits=limit)

                outcomes = [
                    (await spend(car, b"\x01" * 16), await spend(car, b"\x01" * 16),
                     await spend(car, b"\x02" * 16))
                    for car in cars
                ]
                assert await ledger.count() == len(cars)
            return outcomes

        assert set(run(scene)) == {
            (SpendOutcome.FIRST_USE, SpendOutcome.ALREADY_USED, SpendOutcome.LIMIT_REACHED)
        }

    def test_a_token_spent_through_the_sync_cluster_ledger_is_spent_for_the_async_one(
        self, url: str, namespace: bytes
    ) -> None:
        with RedisClusterLedger(url, prefix=namespace) as sync:
            assert sync.consume(VEHICLE, b"both", until())

        async def scene() -> tuple[bool, bool]:
            async with await AsyncRedisClusterLedger.open(url, prefix=namespace) as ledger:
                return (await ledger.consume(VEHICLE, b"both", until()),
                        await ledger.consume(VEHICLE, b"async-first", until()))

        assert run(scene) == (False, True)
        with RedisClusterLedger(url, prefix=namespace) as sync:
            assert not sync.consume(VEHICLE, b"async-first", until())


    def test_two_processes_of_concurrent_tasks_give_each_token_one_winner(self, url: str) -> None:
        # Each process one event loop of 4 tasks on one ledger; the full run:
        # python -m tools.faults.race --ledger redis_cluster_async --races 10000
        tokens = run_race(KIND, races=300, procs=2, threads=4)
        assert tokens.ok, tokens
        assert (tokens.tokens_with_one_winner, tokens.errors) == (300, 0)
        rounds = run_limit_race(KIND, rounds=30, procs=2, threads=4)
        assert rounds.ok, rounds
        assert (rounds.rounds_with_one_winner, rounds.errors) == (30, 0)


class TestStaleLayout:
    """Between a failover and the next reading of the layout, spends go to the wrong node."""

    @staticmethod
    def wrong_node(url: str, which: str, hung: Callable[[], Address]) -> Address:
        known = layout(url)
        owner = known.owner(slot_of(VEHICLE.encode()))
        if which == "another primary":
            return next(p for p in known.primaries if p != owner)
        if which == "a replica":
            return known.replicas[0]
        return hung()

    @pytest.mark.parametrize("which", ["another primary", "a replica", "a node that hangs"])
    def test_a_stale_layout_denies_never_spends_twice_and_the_next_call_recovers(
        self, url: str, namespace: bytes, which: str, hung: Callable[[], Address]
    ) -> None:
        wrong = self.wrong_node(url, which, hung)

        async def scene() -> list[SpendOutcome | str]:
            outcomes: list[SpendOutcome | str] = []
            async with await AsyncRedisClusterLedger.open(
                url, prefix=namespace, timeout_s=0.5
            ) as ledger:
                async def spend(token: bytes) -> None:
                    try:
                        outcomes.append(await ledger.spend(
                            VEHICLE, token, until(), issued_at=0, at=int(time.time())))
                    except LedgerError as exc:
                        outcomes.append(str(exc))

                await spend(b"spent-before")
                for node in ledger._routing.install(all_slots_on(wrong), wrong):
                    await node.close()
                await spend(b"spent-before")  # the wrong node has no record of it: must deny
                await spend(b"spent-before")  # layout read again: the owner has it
                await spend(b"new")
                assert await ledger.count() == 2  # nothing was written on the wrong node
            return outcomes

        first, stale, again, new = run(scene)
        assert first is SpendOutcome.FIRST_USE
        assert isinstance(stale, str)
        if which != "a node that hangs":
            assert "MovedError" in stale  # the node names the slot's owner: denied
        assert again is SpendOutcome.ALREADY_USED
        assert new is SpendOutcome.FIRST_USE

    def test_when_no_node_answers_the_known_layout_keeps_serving(
        self, url: str, namespace: bytes
    ) -> None:
        async def unreachable(address: Address, deadline: float) -> Any:
            raise ConnectionError(f"{address} is gone")

        async def scene() -> tuple[bool, str]:
            async with await AsyncRedisClusterLedger.open(url, prefix=namespace) as ledger:
                ledger._cluster_slots = unreachable  # type: ignore[method-assign]
                ledger._routing.failed(None)
                served = await ledger.consume(VEHICLE, b"kept-layout", until())
            fresh = AsyncRedisClusterLedger(url, prefix=namespace)  # no layout yet
            fresh._cluster_slots = unreachable  # type: ignore[method-assign]
            try:
                await fresh.consume(VEHICLE, b"no-layout", until())
            except LedgerError as exc:
                return served, str(exc)
            finally:
                await fresh.close()
            return served, "spent without a layout"

        served, refused = run(scene)
        assert served
        assert refused == "redis cluster: no node answered CLUSTER SLOTS within 1.0 s"

    def test_calls_that_find_the_layout_stale_together_read_it_once(
        self, url: str, namespace: bytes
    ) -> None:
        async def scene() -> tuple[list[bool], int]:
            async with await AsyncRedisClusterLedger.open(url, prefix=namespace) as ledger:
                reads = 0
                read = ledger._cluster_slots

                async def counted(address: Address, deadline: float) -> Any:
                    nonlocal reads
                    reads += 1
                    return await read(address, deadline)

                ledger._cluster_slots = counted  # type: ignore[method-assign]
                ledger._routing.failed(None)  # as after a failed call
                opened = await asyncio.gather(*(
                    ledger.consume(f"ACAR{n}", b"t", until()) for n in range(50)
                ))
            return opened, reads

        opened, reads = run(scene)
        assert opened == [True] * 50
        assert reads == 1


class TestRefusals:
    def test_fewer_replicas_than_min_replicas_is_refused_naming_the_setting_alike(
        self, url: str
    ) -> None:
        with pytest.raises(LedgerError, match="min_replicas is 2 but CLUSTER SLOTS shows") as made:
            run(lambda: AsyncRedisClusterLedger.open(url, min_replicas=2))
        with pytest.raises(LedgerError) as sync:
            RedisClusterLedger(url, min_replicas=2)
        assert str(made.value) == str(sync.value)

    def test_made_without_open_the_first_spend_refuses_too_few_replicas(self, url: str) -> None:
        async def scene() -> None:
            ledger = AsyncRedisClusterLedger(url, min_replicas=2)  # no I/O yet
            try:
                for _ in range(2):  # and keeps refusing: no layout was accepted
                    with pytest.raises(LedgerError, match="min_replicas is 2"):
                        await ledger.consume(VEHICLE, b"never", until())
            finally:
                await ledger.close()

        run(scene)

    @pytest.mark.parametrize(
        ("urls", "options"),
        [
            ([], {}),
            ("http://127.0.0.1:1/0", {}),
            ("redis:///0", {}),
            ("redis://127.0.0.1:1/0", {"prefix": b"a{b"}),
            ("redis://127.0.0.1:1/0", {"prefix": "text"}),
            ("redis://127.0.0.1:1/0", {"timeout_s": 0}),
            ("redis://127.0.0.1:1/0", {"min_replicas": -1}),
            ("redis://127.0.0.1:1/0", {"min_replicas": 1.0}),
        ],
    )
    def test_bad_options_are_refused_alike_before_any_node_is_asked(
        self, urls: Any, options: dict[str, Any]
    ) -> None:
        # Nothing listens at port 1: asking it would answer LedgerError, not InvalidRequest.
        with pytest.raises(InvalidRequest) as sync:
            RedisClusterLedger(urls, **options)
        with pytest.raises(InvalidRequest) as made:
            AsyncRedisClusterLedger(urls, **options)
        with pytest.raises(InvalidRequest) as opened:
            run(lambda: AsyncRedisClusterLedger.open(urls, **options))
        assert str(made.value) == str(opened.value) == str(sync.value)

    def test_errors_and_repr_never_show_credentials(self) -> None:
        where = "redis://user:hunter2secret@127.0.0.1:1/0"
        with pytest.raises(LedgerError) as refused:
            run(lambda: AsyncRedisClusterLedger.open(where, timeout_s=0.3))
        assert "hunter2secret" not in str(refused.value)
        assert "hunter2secret" not in repr(AsyncRedisClusterLedger(where))
        assert repr(AsyncRedisClusterLedger(where)) == (
            "AsyncRedisClusterLedger('127.0.0.1:1', prefix=b'trunkkey:spent:')"
        )


class TestOneDeadline:
    TIMEOUT_S = 1.0

    def test_a_primary_that_hangs_denies_within_timeout_s_and_the_next_call_recovers(
        self, url: str, namespace: bytes, hung: Callable[[], Address]
    ) -> None:
        dead = hung()

        async def scene() -> tuple[float, SpendOutcome]:
            async with await AsyncRedisClusterLedger.open(
                url, prefix=namespace, timeout_s=self.TIMEOUT_S
            ) as ledger:
                for node in ledger._routing.install(all_slots_on(dead), dead):
                    await node.close()
                started = time.monotonic()
                with pytest.raises(LedgerError):
                    await ledger.consume(VEHICLE, b"hung", until())
                took = time.monotonic() - started
                return took, await ledger.spend(VEHICLE, b"hung", until(), issued_at=0, at=0)

        took, after = run(scene)
        assert took < self.TIMEOUT_S + SLACK_S
        assert after is SpendOutcome.FIRST_USE  # the denied spend wrote nothing

    def test_a_cluster_whose_nodes_all_hang_is_refused_within_timeout_s(
        self, hung: Callable[[], Address]
    ) -> None:
        seeds = [f"redis://{host}:{port}/0" for host, port in (hung() for _ in range(5))]
        started = time.monotonic()
        with pytest.raises(LedgerError, match=r"no node answered CLUSTER SLOTS within 1\.0 s"):
            run(lambda: AsyncRedisClusterLedger.open(seeds, timeout_s=self.TIMEOUT_S))
        assert time.monotonic() - started < self.TIMEOUT_S + SLACK_S


def test_the_cluster_rules_are_written_once_for_both_ledgers() -> None:
    """Layout parsing, slot owners, option and replica checks and their words live in
    ``_cluster_layout``; the two ledgers only talk to the nodes."""
    rules = (SRC / "_cluster_layout.py").read_text()
    for name in ("redis_cluster.py", "redis_cluster_async.py"):
        text = (SRC / name).read_text()
        assert "from ._cluster_layout import" in text
        for rule in ("bisect", "urlsplit", "key_slot", "min_replicas is", "no node answered",
                     "no primary known", "check_options", "_suspect", "/ 4", "/ 2"):
            assert rule not in text, f"{name} decides {rule!r} itself"
            assert rule in rules or rule in {"_suspect", "/ 4", "/ 2"}


class TestClusterRules:
    """The shared rules alone (no server): what both cluster ledgers decide."""

    SLOTS: Any = (
        [10923, 16383, [b"10.0.0.3", 7002, b"c"], [b"10.0.0.6", 7005, b"f"]],
        [0, 5460, [b"", 7000, b"a"], [b"10.0.0.4", 7003, b"d"]],  # "": the node asked
        [5461, 10922, [b"10.0.0.2", 7001, b"b"]],
    )

    def routing(self, **options: Any) -> ClusterRouting[str]:
        config = cluster_config(
            ["redis://u:pw@seed:7000/0", "redis://other:7009"],
            prefix=b"p:", timeout_s=1.0, min_replicas=options.get("min_replicas", 0),
            accept_evicted_tokens_reopening=False, accept_restart_reopening_tokens=False,
        )
        return ClusterRouting(config)

    def test_each_slot_belongs_to_the_range_that_holds_it(self) -> None:
        layout = Layout.parse(self.SLOTS, ("10.0.0.1", 7000))
        assert [layout.owner(s) for s in (0, 5460, 5461, 10922, 10923, 16383)] == [
            ("10.0.0.1", 7000), ("10.0.0.1", 7000), ("10.0.0.2", 7001),
            ("10.0.0.2", 7001), ("10.0.0.3", 7002), ("10.0.0.3", 7002),
        ]
        assert Layout().owner(0) is None
        assert layout.primaries == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 7002)]

    def test_a_primary_short_of_replicas_is_named(self) -> None:
        layout = Layout.parse(self.SLOTS, ("10.0.0.1", 7000))
        layout.check_replicas(0)
        with pytest.raises(LedgerError, match=r"min_replicas is 1 .*\(10\.0\.0\.2:7001 has 0\)"):
            layout.check_replicas(1)
        routing = self.routing(min_replicas=1)
        with pytest.raises(LedgerError, match="min_replicas is 1"):
            routing.install(self.SLOTS, ("10.0.0.1", 7000))
        assert routing.stale  # refused: nothing installed

    def test_nodes_that_just_failed_are_asked_last_each_within_a_share(self) -> None:
        routing = self.routing()
        assert [a for a, _ in routing.attempts(time.monotonic() + 1)] == [
            ("seed", 7000), ("other", 7009)
        ]
        routing.install(self.SLOTS, ("10.0.0.1", 7000))
        routing.failed(("10.0.0.1", 7000))
        started = time.monotonic()
        order = list(routing.attempts(started + 1))
        # Primaries by slot, replicas as answered, the seeds; the failed one last.
        assert [a for a, _ in order] == [
            ("10.0.0.2", 7001), ("10.0.0.3", 7002), ("10.0.0.6", 7005), ("10.0.0.4", 7003),
            ("seed", 7000), ("other", 7009), ("10.0.0.1", 7000),
        ]
        assert all(each <= time.monotonic() + PER_NODE_SHARE for _, each in order)
        routing.succeeded(("10.0.0.1", 7000))
        assert next(routing.attempts(time.monotonic() + 1))[0] == ("10.0.0.1", 7000)
        assert list(routing.attempts(time.monotonic() - 1)) == []  # the deadline has passed

    def test_a_node_made_twice_is_kept_once_and_none_after_close(self) -> None:
        routing = self.routing()
        assert routing.keep(("a", 1), "first") == "first"
        assert routing.keep(("a", 1), "second") == "first"
        assert routing.install(self.SLOTS, ("10.0.0.1", 7000)) == ["first"]  # not a primary now
        assert routing.close() == []
        assert routing.keep(("10.0.0.2", 7001), "late") is None
        with pytest.raises(LedgerError, match="ledger is closed"):
            routing.check_open()

    def test_the_first_url_s_credentials_reach_every_node(self) -> None:
        config = self.routing().config
        assert config.node_url(("10.0.0.2", 7001)) == "redis://u:pw@10.0.0.2:7001/0"
        assert config.describe("X") == "X('seed:7000,other:7009', prefix=b'p:')"
