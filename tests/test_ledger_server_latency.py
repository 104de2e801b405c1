"""Every fleet-ledger call ends within one bound, however many threads wait.

One deadline per call covers the wait for a pooled connection, connecting
(with the settings check), the statement and Redis's WAIT. Measured with 8
threads against a server that makes them wait: PostgreSQL with another
session holding an ACCESS EXCLUSIVE lock on the ledger's table (and fewer
pooled connections than threads), Redis with writes paused. The full figures
come from ``python -m tools.faults.latency_servers`` (docs/ledgers.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_ledger_contract import require_server
from tools.faults.faults import RedisServer, ServerUnavailable
from tools.faults.latency_servers import (
    SLACK_S,
    LatencyResult,
    measure,
    postgres_hang,
    postgres_lock,
    redis_hang,
    redis_pause,
)
from trunkkey.ledger.base import SpendOutcome
from trunkkey.ledger.redis import RedisLedger

THREADS = 8


def _within_bound(result: LatencyResult) -> None:
    assert result.first_use == 0, "nothing may be accepted while the server cannot answer"
    assert result.errors == result.calls
    assert result.max_s <= result.timeout_s + SLACK_S, result


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--save", "").start()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the latency tests: {exc}")
        pytest.skip(str(exc))
    yield server
    server.stop()


#: The sync ledgers, and the async ones with every thread's call awaited on one loop.
MODES = pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])


@MODES
def test_postgres_pool_wait_and_a_held_lock_share_one_deadline(asynchronous: bool) -> None:
    dsn = require_server("postgres")
    # 8 threads, 2 connections: 6 threads first wait for a connection, then for the lock.
    _within_bound(postgres_lock(dsn, threads=THREADS, calls=2, timeout_s=0.5, pool_size=2,
                                asynchronous=asynchronous))


@MODES
def test_postgres_hung_link_with_threads_queued_for_the_pool(asynchronous: bool) -> None:
    dsn = require_server("postgres")
    _within_bound(postgres_hang(dsn, threads=THREADS, calls=2, timeout_s=0.5, pool_size=2,
                                asynchronous=asynchronous))


@MODES
def test_redis_paused_writes_end_every_call_in_time(
    redis_server: RedisServer, asynchronous: bool
) -> None:
    _within_bound(redis_pause(redis_server.url, threads=THREADS, calls=2, timeout_s=0.5,
                              then_wait=False, asynchronous=asynchronous))


@MODES
def test_redis_wait_for_replicas_gets_only_what_is_left(
    redis_server: RedisServer, asynchronous: bool
) -> None:
    # Writes paused for 90 % of the timeout, then WAIT for a replica that is
    # not there: the WAIT may use only what the paused write left of the deadline.
    _within_bound(redis_pause(redis_server.url, threads=THREADS, calls=1, timeout_s=1.0,
                              then_wait=True, asynchronous=asynchronous))


@MODES
def test_redis_hung_link(redis_server: RedisServer, asynchronous: bool) -> None:
    _within_bound(redis_hang(redis_server.url, threads=THREADS, calls=2, timeout_s=0.5,
                             asynchronous=asynchronous))


def test_the_measure_reports_what_happened(redis_server: RedisServer) -> None:
    # The instrument itself: on a server that answers, every call is a first use, quickly.
    ledger = RedisLedger(redis_server.url, timeout_s=0.5)
    try:
        def spend(token: bytes) -> SpendOutcome:
            now = int(time.time())
            return ledger.spend("car", token, now + 60, issued_at=now, at=now)

        result = measure("answering", spend, threads=4, calls=5, timeout_s=0.5)
    finally:
        ledger.close()
    assert (result.calls, result.first_use, result.errors) == (20, 20, 0)
    assert result.ok
