"""The car's access log stays bounded over a simulated year: what the backend
acknowledged is pruned down to the frontier (docs/resource-bounds.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from trunkkey import Location, Reason, SigningKey, SqliteLedger
from trunkkey.merkle import MAX_PROOF_HASHES
from trunkkey.testing.vehicle import World, courier_gossip, courier_present

T0 = 1_800_000_000
DAY = 86_400
DELIVERIES_PER_DAY = 2
#: Entries one delivery writes: challenge, token allowed, opened, closed, relocked.
ENTRIES_PER_DELIVERY = 5


def test_a_year_of_deliveries_keeps_the_log_within_its_bound(tmp_path: Path) -> None:
    world = World(start=T0, state_dir=tmp_path)
    car = world.enrol_car("VIN-1")
    fence = world.park(car, Location.from_degrees(48.137154, 11.576124))
    courier = SigningKey.generate()
    ledger = car.ledger
    assert isinstance(ledger, SqliteLedger)
    peak_rows = peak_held = deliveries = 0
    for day in range(365):
        for slot in range(DELIVERIES_PER_DAY):
            token = world.mint(car, courier=courier, geofence=fence)
            assert courier_present(car, token, courier).reason is Reason.ALLOWED
            world.advance(60)
            car.unit.trunk_closed()
            deliveries += 1
            if slot % 2 == 1 or day % 7 == 3:  # a handheld that gossips, most visits
                assert courier_gossip(world, car).accepted
            with sqlite3.connect(ledger.path) as conn:
                rows = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
            peak_rows = max(peak_rows, rows)
            peak_held = max(peak_held, car.unit.access_log.hashes_held)
        world.advance(DAY - DELIVERIES_PER_DAY * 60)
        if day % 30 == 0:
            world.time_sync(car)
    log = car.unit.access_log
    assert deliveries == 365 * DELIVERIES_PER_DAY
    assert log.size >= deliveries * ENTRIES_PER_DELIVERY
    # At most two visits' entries (and a time sync, a boot) wait for an acknowledgement.
    bound = 2 * ENTRIES_PER_DELIVERY + 2
    assert peak_rows <= bound, peak_rows
    # The tree in memory: the frontier (≤ 64) plus the waiting leaves and their nodes.
    assert peak_held <= MAX_PROOF_HASHES + 2 * bound, peak_held
    frontier = log.checkpoint()  # still provable from the frontier alone
    assert frontier
    assert len(world.history.entries("VIN-1")) == log.pruned
    print(f"log {log.size} entries, peak rows {peak_rows}, peak hashes {peak_held}")
