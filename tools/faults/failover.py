"""Failover runs: a stream of verifications through one Verifier while a server dies.

One thread presents fresh tokens, one after another, through a single
:class:`~trunkkey.Verifier` and its ledger; once ``warm`` have been allowed,
the fault runs (kill the primary, promote or fail over) and the stream goes
on until ``after`` more have been allowed since the fault's end. Then every
token of the stream is presented again through a fresh verifier and ledger:
an acknowledged (allowed) token that opens again was lost in the failover,
and a token that opens twice is the one thing a ledger must never allow.

    python -m tools.faults.failover            # both stores, figures printed
    python -m tools.faults.failover --async    # the same through the async ledgers

runs on the topologies of ``tools/start-services.sh --replicated`` when
``TRUNKKEY_REPLICATED_DIR`` is set (and repairs them afterwards), else on
throwaway ones; needs PostgreSQL (initdb, pg_basebackup) and
redis-server/redis-cli (the Debian packages the script installs).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trunkkey import (
    Algorithm,
    Issuer,
    ManualClock,
    Reason,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.ledger.base import Ledger

from .ledgers import SyncOverAsync, open_async_ledger
from .replicated import (
    PostgresStandbyPair,
    RedisClusterServers,
    cluster_topology,
    pair_topology,
)

#: The verifiers' clock: fixed, and ahead of the servers' real clocks, so
#: Redis (which expires keys by its own clock) keeps every entry.
NOW = 1_800_000_000
ISSUER = "retailer"


@dataclass
class Presented:
    index: int
    vehicle: str
    token: bytes
    reason: Reason
    started: float
    ended: float


@dataclass
class FailoverRun:
    store: str
    stream: list[Presented] = field(default_factory=list)
    fault_started: float = 0.0
    fault_ended: float = 0.0
    replay: list[Reason] = field(default_factory=list)
    #: How long each step of the fault took, in seconds.
    phases: dict[str, float] = field(default_factory=dict)

    def reasons(self) -> Counter[str]:
        return Counter(p.reason.value for p in self.stream)

    @property
    def denied_window_s(self) -> float:
        """From the first ``ledger_unavailable`` presentation's start to the last one's end."""
        denied = [p for p in self.stream if p.reason is Reason.LEDGER_UNAVAILABLE]
        return denied[-1].ended - denied[0].started if denied else 0.0

    @property
    def fault_s(self) -> float:
        return self.fault_ended - self.fault_started

    @property
    def acknowledged_then_lost(self) -> int:
        """Allowed in the stream, allowed again on replay: the token opened twice."""
        return sum(
            1 for p, again in zip(self.stream, self.replay, strict=True)
            if p.reason is Reason.ALLOWED and again is Reason.ALLOWED
        )

    @property
    def allowed_twice(self) -> int:
        return self.acknowledged_then_lost

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons().items()))
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in self.phases.items())
        return (
            f"{self.store}: {len(self.stream)} verifications ({reasons}); fault took "
            f"{self.fault_s:.2f} s ({phases}); denied (ledger_unavailable) for "
            f"{self.denied_window_s:.2f} s; "
            f"acknowledged then lost: {self.acknowledged_then_lost}; "
            f"allowed twice: {self.allowed_twice}"
        )


class Fleet:
    """An issuer and a trust store for a stream of fresh tokens to many vehicles."""

    def __init__(self, vehicles: int = 64) -> None:
        self.clock = ManualClock(NOW)
        key = SigningKey.generate(Algorithm.EDDSA)
        self.issuer = Issuer(key, ISSUER, clock=self.clock)
        self.store = TrustStore([TrustedKey.create(key.public_key, ISSUER)])
        self.vehicles = [f"FLEETCAR{n:05d}" for n in range(vehicles)]

    def verifier(self, ledger: Ledger) -> Verifier:
        return Verifier(trust_store=self.store, ledger=ledger, clock=self.clock)

    def mint(self, index: int) -> tuple[str, bytes]:
        vehicle = self.vehicles[index % len(self.vehicles)]
        token = self.issuer.mint(
            vehicle_id=vehicle, action="trunk", not_before=NOW, expires=NOW + 4 * 3600
        )
        return vehicle, token


def run_failover(
    store: str,
    fleet: Fleet,
    ledger: Ledger,
    fault: Callable[[], None],
    replay_ledger: Callable[[], Ledger],
    *,
    warm: int = 200,
    after: int = 200,
    seconds: float = 120.0,
) -> FailoverRun:
    run = FailoverRun(store)
    verifier = fleet.verifier(ledger)
    warmed, done, stop = threading.Event(), threading.Event(), threading.Event()

    def present() -> None:
        index = 0
        allowed_after = 0
        while not stop.is_set():
            vehicle, token = fleet.mint(index)
            started = time.monotonic()
            reason = verifier.verify(token, vehicle_id=vehicle, action="trunk").reason
            ended = time.monotonic()
            run.stream.append(Presented(index, vehicle, token, reason, started, ended))
            index += 1
            if reason is Reason.ALLOWED:
                if index >= warm:
                    warmed.set()
                if run.fault_ended and started > run.fault_ended:
                    allowed_after += 1
                    if allowed_after >= after:
                        done.set()
                        return

    thread = threading.Thread(target=present, name="failover-stream", daemon=True)
    thread.start()
    try:
        if not warmed.wait(seconds):
            raise RuntimeError(f"{store}: the stream did not get going")
        run.fault_started = time.monotonic()
        fault()
        run.fault_ended = time.monotonic()
        if not done.wait(seconds):
            raise RuntimeError(f"{store}: the stream did not carry on after the failover")
    finally:
        stop.set()
        thread.join(seconds)
        ledger.close()
    again = replay_ledger()
    try:
        replayer = fleet.verifier(again)
        run.replay = [
            replayer.verify(p.token, vehicle_id=p.vehicle, action="trunk").reason
            for p in run.stream
        ]
    finally:
        again.close()
    return run


def postgres_failover(
    pair: PostgresStandbyPair, fleet: Fleet, *, asynchronous: bool = False
) -> FailoverRun:
    """Kill the primary (``pg_ctl stop -m immediate``), promote the standby.

    ``asynchronous``: the stream goes through the async ledger (each call
    awaited on an event loop of its own thread); the replay, through the sync
    one on the same table.
    """
    from trunkkey.ledger.postgres import PostgresLedger  # noqa: PLC0415 -- optional extra

    dsn = pair.dsn()  # the ledger asks libpq for the read-write host itself
    ledger: Any = (
        SyncOverAsync(open_async_ledger(
            "postgres_async", namespace="trunkkey_spent", url=dsn, timeout_s=1.0, pool_size=1
        ))
        if asynchronous else PostgresLedger(dsn, timeout_s=1.0, pool_size=1)
    )

    phases: dict[str, float] = {}

    def fault() -> None:
        started = time.monotonic()
        pair.kill_primary()
        killed = time.monotonic()
        pair.promote_standby()
        phases.update(kill=killed - started, promote=time.monotonic() - killed)

    done = run_failover(
        "postgres primary + synchronous standby", fleet, ledger, fault,
        lambda: PostgresLedger(dsn, timeout_s=5.0),
    )
    done.phases = phases
    return done


def redis_failover(
    cluster: RedisClusterServers, fleet: Fleet, *, asynchronous: bool = False
) -> FailoverRun:
    """SIGKILL the primary of the first vehicle's slot; its replica takes over; the
    killed node is restarted and rejoins as a replica (so WAIT 1 can be met again).

    ``asynchronous``: the stream goes through the async cluster ledger (each
    call awaited on an event loop of its own thread); the replay, through the
    sync one on the same keys.
    """
    from redis.crc import key_slot  # noqa: PLC0415 -- optional extra

    from trunkkey.ledger.redis_cluster import RedisClusterLedger  # noqa: PLC0415
    from trunkkey.ledger.redis_cluster_async import AsyncRedisClusterLedger  # noqa: PLC0415

    ledger: Any = (
        SyncOverAsync(AsyncRedisClusterLedger.open(cluster.urls, timeout_s=1.0, min_replicas=1))
        if asynchronous else RedisClusterLedger(cluster.urls, timeout_s=1.0, min_replicas=1)
    )
    victim = cluster.primary_for_slot(key_slot(fleet.vehicles[0].encode().hex().encode()))

    phases: dict[str, float] = {}

    def fault() -> None:
        phases["kill to replica promoted, cluster ok"] = cluster.wait_failover(victim)
        started = time.monotonic()
        victim.start()
        cluster.wait_healthy()
        phases["killed node back as replica"] = time.monotonic() - started

    done = run_failover(
        "redis cluster, 3 primaries + 1 replica each, WAIT 1", fleet, ledger, fault,
        lambda: RedisClusterLedger(cluster.urls, timeout_s=5.0, min_replicas=1),
    )
    done.phases = phases
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("postgres", "redis", "both"), default="both")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="stream through the async ledgers (replay through the sync ones)")
    args = parser.parse_args()
    print(f"failover runs on {os.cpu_count()} cores")
    if args.store in {"postgres", "both"}:
        with pair_topology() as pair:
            print(postgres_failover(pair, Fleet(), asynchronous=args.asynchronous).summary())
    if args.store in {"redis", "both"}:
        with cluster_topology() as cluster:
            print(redis_failover(cluster, Fleet(), asynchronous=args.asynchronous).summary())


if __name__ == "__main__":
    main()
