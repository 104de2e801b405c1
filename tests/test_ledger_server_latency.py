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
from collections.abc import Callable, Iterator
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
from trunkkey.errors import LedgerError
from trunkkey.ledger.base import SpendOutcome
from trunkkey.ledger.redis import RedisLedger

THREADS = 8


def _within_bound(result: LatencyResult) -> None:
    assert result.first_use == 0, "nothing may be accepted while the server cannot answer"
    assert result.errors == result.calls
    # The bound is timeout_s + SLACK_S + the stall the process suffered meanwhile
    # (measured by a thread the ledger cannot delay). A step left outside the one
    # deadline costs a whole timeout_s more, far past the slack.
    assert result.bound_s == round(result.timeout_s + SLACK_S + result.stall_s, 3)
    assert result.stall_s < result.timeout_s, f"the machine stalled too long to judge: {result}"
    assert result.max_s <= result.bound_s, result


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


def _refused_after(work: Callable[[], object]) -> Callable[[bytes], SpendOutcome]:
    def spend(_token: bytes) -> SpendOutcome:
        work()
        raise LedgerError("the server did not answer")

    return spend


def test_a_call_that_overruns_while_waiting_is_not_excused_as_a_stall() -> None:
    # A ledger that waits past its deadline releases the GIL while it waits, so
    # the probe wakes on time and the overrun stays the ledger's.
    result = measure("overrun", _refused_after(lambda: time.sleep(0.6)), threads=4, calls=1,
                     timeout_s=0.1)
    assert result.errors == 4
    assert result.stall_s < 0.25
    assert result.max_s > result.bound_s
    assert not result.ok


def test_a_stop_of_the_whole_process_is_measured_as_a_stall() -> None:
    # Sorting machine integers never leaves C, so it holds the GIL throughout:
    # every thread of the process, the probe too, waits as long as it runs.
    numbers = list(range(3_000_000, 0, -1))

    def stop_the_process() -> None:
        began = time.monotonic()
        sorted(numbers)
        took.append(time.monotonic() - began)

    took: list[float] = []
    result = measure("stall", _refused_after(stop_the_process), threads=1, calls=1,
                     timeout_s=0.1)
    assert result.stall_s >= took[0] / 2 > 0
    assert result.bound_s == round(0.1 + SLACK_S + result.stall_s, 3)
