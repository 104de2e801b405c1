"""How the cost of a verification grows: chain depth, ledger size, fleet size and processes."""

from __future__ import annotations

import importlib
import secrets
import sqlite3
import tempfile
from pathlib import Path
from types import ModuleType

from tools import ROOT
from tools.bench._measure import Case, best_of_rounds, consume
from tools.bench._setups import NOW, VEHICLE, WINDOW, ConsentMissing, Direct, chained, checker
from trunkkey import MemoryLedger, SqliteLedger
from trunkkey.ledger.base import Ledger
from trunkkey.ledger.sqlite import spent_checksum


def _micros(per_second: float) -> float:
    return round(1e6 / per_second, 2)


def chain_depth(depths: list[int], *, batch: int, rounds: int) -> dict[str, dict[str, float]]:
    """µs per verification (with proof) against the number of grants, cached and uncached.

    Depth 0 is the same token trusted directly (no chain), for reference.
    """
    cases: dict[str, Case] = {}
    direct = Direct.create()
    pool = direct.with_proof(batch * rounds)
    cases["0/cached"] = Case(run=consume(iter(pool), checker(direct.verifier(MemoryLedger()))),
                             batch=batch)
    for links in depths:
        for cache in (True, False):
            world = chained(links, cache=cache)
            items = world.with_proof(batch * rounds + 1)
            check = checker(world.verifier)
            check(items.pop())  # warms the grant cache (a no-op without one)
            cases[f"{links}/{'cached' if cache else 'uncached'}"] = Case(
                run=consume(iter(items), check), batch=batch)
    best = best_of_rounds(cases, rounds)
    out: dict[str, dict[str, float]] = {"cached": {}, "uncached": {}}
    for name, per_second in best.items():
        depth, kind = name.split("/")
        out[kind][depth] = _micros(per_second)
    out["uncached"]["0"] = out["cached"]["0"]
    return out


def _prefill_memory(ledger: MemoryLedger, size: int) -> None:
    keep = NOW + WINDOW
    for _ in range(size):
        ledger.consume(VEHICLE, secrets.token_bytes(16), keep)


def _prefill_sqlite(path: Path, size: int) -> None:
    """Bulk-load ``size`` spent entries in one transaction.

    One ``consume`` per entry would cost one fsync each (about three hours for
    a million); what is measured is the verification *after* the fill, which
    goes through the ledger's ordinary ``consume``.
    """
    SqliteLedger(path).close()  # the ledger's own schema
    conn = sqlite3.connect(path)
    with conn:
        rows = ((VEHICLE.encode(), secrets.token_bytes(16), NOW + WINDOW) for _ in range(size))
        conn.executemany(  # each row with the checksum the ledger verifies on open
            "INSERT INTO spent (vehicle, token_id, keep_until, checksum) VALUES (?, ?, ?, ?)",
            ((v, t, k, spent_checksum(v, t, k)) for v, t, k in rows),
        )
    conn.close()


def ledger_size(sizes: list[int], *, batch: int, rounds: int,
                sqlite_batch: int) -> dict[str, dict[str, float]]:
    """µs per verification (plain token) against live entries in the ledger."""
    direct = Direct.create()
    cases: dict[str, Case] = {}
    ledgers: list[Ledger] = []
    with tempfile.TemporaryDirectory(prefix="trunkkey-ledger-size-",
                                     dir=ROOT / "tools" / "bench" / "results") as tmp:
        for size in sizes:
            memory = MemoryLedger()
            _prefill_memory(memory, size)
            path = Path(tmp) / f"ledger-{size}.sqlite"
            _prefill_sqlite(path, size)
            durable = SqliteLedger(path)
            ledgers += [memory, durable]
            cases[f"memory/{size}"] = Case(run=consume(
                iter(direct.plain(batch * rounds)), checker(direct.verifier(memory))), batch=batch)
            cases[f"sqlite/{size}"] = Case(run=consume(
                iter(direct.plain(sqlite_batch * rounds)), checker(direct.verifier(durable))),
                batch=sqlite_batch)
        best = best_of_rounds(cases, rounds)
        for ledger in ledgers:
            ledger.close()
    out: dict[str, dict[str, float]] = {"memory": {}, "sqlite": {}}
    for name, per_second in best.items():
        kind, entries = name.split("/")
        out[kind][entries] = _micros(per_second)
    return out


def load_fleet() -> ModuleType:
    """``examples/fleet.py``, imported on demand: the rest of the benchmark runs without it."""
    return importlib.import_module("examples.fleet")


def fleet_vehicles(cars: list[int], *, tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    """Verifications/s of one process against the number of cars it serves.

    ``tokens`` per round in all, spread over the cars; the best round counts.
    """
    fleet = load_fleet()
    out: dict[str, dict[str, float]] = {"memory": {}, "sqlite": {}}
    for ledger, by_cars in out.items():
        for n in cars:
            per_car = max(1, tokens // n)
            by_cars[str(n)] = fleet.throughput(cars=n, procs=1, ledger=ledger, per_car=per_car,
                                               rounds=rounds).per_second
    return out


def fleet_scaling(*, cars: int, procs: int, per_car: int, repeats: int,
                  rounds: int) -> dict[str, object]:
    result: dict[str, object] = load_fleet().scaling(cars=cars, procs=procs, per_car=per_car,
                                                     repeats=repeats, rounds=rounds)
    return result


__all__ = ["ConsentMissing", "chain_depth", "fleet_scaling", "fleet_vehicles", "ledger_size"]
