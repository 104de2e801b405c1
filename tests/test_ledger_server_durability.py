"""A server killed in the middle of a stream of spends keeps every acknowledged one.

Each test starts a server of its own (tools/faults/faults.py), spends tokens from
several threads, kills the server the hard way once some have been
acknowledged, restarts it from its own files, and replays every token the
ledger had answered ``FIRST_USE`` for: each must now be ``ALREADY_USED``, and
the daily counter must hold at least every acknowledged spend. Without the
server binaries the tests skip locally and fail under ``CI``.

- Redis: ``SIGKILL`` of redis-server, restart from its AOF. Run with
  ``appendfsync always``: with ``everysec`` Redis may (rarely, when a
  background fsync is slow) answer before it has written the AOF buffer,
  which a test could not tell from a real loss; docs/ledgers.md has the detail.
- PostgreSQL: ``pg_ctl stop -m immediate`` (no checkpoint), restart with
  crash recovery from the WAL, ``synchronous_commit=on``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.faults.faults import PostgresCluster, RedisServer, ServerUnavailable
from tools.faults.ledgers import SyncOverAsync, open_async_ledger
from trunkkey import LedgerError
from trunkkey.ledger.base import DailyLimit, SpendOutcome
from trunkkey.ledger.postgres import PostgresLedger
from trunkkey.ledger.redis import RedisLedger

CAR = "1HGCM82633A004352"
GRANT = hashlib.sha256(b"owner's grant").digest()
THREADS = 4
PER_THREAD = 60
KILL_AFTER = 150  # acknowledged spends before the kill, of 240 at most
#: Never refuses during the stream; small, so the room left is cheap to probe.
LIMIT = THREADS * PER_THREAD

Ledger = RedisLedger | PostgresLedger | SyncOverAsync


def _unavailable(why: object) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the server durability tests: {why}")
    pytest.skip(str(why))


def _token(thread: int, n: int) -> bytes:
    return bytes([thread]) + n.to_bytes(4, "big")


def stream_then_kill(ledgers: list[Ledger], kill: Callable[[], None]) -> set[bytes]:
    """Spend from every ledger's thread until the server dies; return the acknowledged."""
    acknowledged: set[bytes] = set()
    unexpected: list[SpendOutcome] = []
    lock = threading.Lock()
    enough = threading.Event()
    at = int(time.time())
    limit = (DailyLimit(GRANT, LIMIT),)

    def spender(n: int, ledger: Ledger) -> None:
        failures = 0
        for i in range(PER_THREAD):
            token = _token(n, i)
            try:
                outcome = ledger.spend(CAR, token, at + 3600, issued_at=at, at=at, limits=limit)
            except LedgerError:
                failures += 1  # the kill: this answer is unknown, never acknowledged
                if failures > 3:
                    return
                continue
            with lock:
                if outcome is not SpendOutcome.FIRST_USE:
                    unexpected.append(outcome)
                    continue
                acknowledged.add(token)
                if len(acknowledged) >= KILL_AFTER:
                    enough.set()

    threads = [threading.Thread(target=spender, args=(n, x)) for n, x in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), "the stream did not get going"
    kill()
    for thread in threads:
        thread.join(60)
    for ledger in ledgers:
        ledger.close()
    assert unexpected == []
    return acknowledged


def check_all_kept(ledger: Ledger, acknowledged: set[bytes]) -> None:
    at = int(time.time())
    limit = (DailyLimit(GRANT, LIMIT),)
    reopened = [
        token for token in sorted(acknowledged)
        if ledger.spend(CAR, token, at + 3600, issued_at=at, at=at, limits=limit)
        is not SpendOutcome.ALREADY_USED
    ]
    assert reopened == [], f"{len(reopened)} of {len(acknowledged)} acknowledged spends reopened"
    # The daily counter kept every acknowledged spend too: the room left is at
    # most LIMIT minus them (spends in flight at the kill may have counted).
    room = 0
    for n in range(LIMIT):
        outcome = ledger.spend(CAR, b"after" + n.to_bytes(4, "big"), at + 3600,
                               issued_at=at, at=at, limits=limit)
        if outcome is SpendOutcome.LIMIT_REACHED:
            break
        room += 1
    assert room <= LIMIT - len(acknowledged)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        server = RedisServer(
            tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always", "--save", ""
        ).start()
    except ServerUnavailable as exc:
        _unavailable(exc)
    yield server
    server.stop()


def _async(kind: str, url: str, **options: Any) -> Ledger:
    """An async ledger whose calls, from any thread, are awaited on one event loop."""
    return SyncOverAsync(open_async_ledger(kind, url=url, **options))


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_redis_sigkill_keeps_every_acknowledged_spend(
    redis_server: RedisServer, asynchronous: bool
) -> None:
    ledgers: list[Ledger] = [
        _async("redis_async", redis_server.url, namespace="trunkkey:spent", timeout_s=1.0)
        if asynchronous else RedisLedger(redis_server.url, timeout_s=1.0)
        for _ in range(THREADS)
    ]
    acknowledged = stream_then_kill(ledgers, redis_server.kill)
    assert len(acknowledged) >= KILL_AFTER
    redis_server.start()  # the same directory: Redis loads its AOF
    with RedisLedger(redis_server.url) as ledger:
        check_all_kept(ledger, acknowledged)


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    try:
        made = PostgresCluster().start()
    except ServerUnavailable as exc:
        _unavailable(exc)
    try:
        yield made
    finally:
        made.destroy()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_postgres_immediate_stop_keeps_every_acknowledged_spend(
    cluster: PostgresCluster, asynchronous: bool
) -> None:
    dsn = cluster.dsn()
    PostgresLedger(dsn, table="spent").close()  # schema first, so no thread races to create it
    ledgers: list[Ledger] = [
        _async("postgres_async", dsn, namespace="spent", timeout_s=2.0, pool_size=1)
        if asynchronous else PostgresLedger(dsn, table="spent", timeout_s=2.0, pool_size=1)
        for _ in range(THREADS)
    ]
    acknowledged = stream_then_kill(ledgers, cluster.crash)
    assert len(acknowledged) >= KILL_AFTER
    cluster.start()  # crash recovery replays the WAL
    with PostgresLedger(dsn, table="spent") as ledger:
        check_all_kept(ledger, acknowledged)
