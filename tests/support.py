"""Helpers shared by the tests: fixed constants and a ready-made world."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from trunkkey import (
    Algorithm,
    Issuer,
    ManualClock,
    MemoryLedger,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
)
from trunkkey.consent import Grant

NOW = 1_800_000_000
VEHICLE = "1HGCM82633A004352"
ISSUER = "retailer"


@dataclass
class World:
    clock: ManualClock
    key: SigningKey
    issuer: Issuer
    store: TrustStore
    ledger: MemoryLedger
    verifier: Verifier

    def mint(self, **overrides: object) -> bytes:
        request: dict[str, object] = {
            "vehicle_id": VEHICLE,
            "action": "trunk",
            "not_before": NOW,
            "expires": NOW + 4 * 3600,
        }
        request.update(overrides)
        return self.issuer.mint(**request)  # type: ignore[arg-type]


def make_world(algorithm: Algorithm = Algorithm.EDDSA) -> World:
    clock = ManualClock(NOW)
    key = SigningKey.generate(algorithm)
    issuer = Issuer(key, ISSUER, clock=clock)
    store = TrustStore([TrustedKey.create(key.public_key, ISSUER)])
    ledger = MemoryLedger()
    verifier = Verifier(trust_store=store, ledger=ledger, clock=clock)
    return World(clock, key, issuer, store, ledger, verifier)


# -- the examples ------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(name: str) -> ModuleType:
    """``examples/<name>.py``, imported under its bare name.

    ``examples/`` is on pytest's ``pythonpath``, as a script's own directory is
    first on its path, so an example loaded by a test finds ``world`` as it
    would when run.
    """
    return importlib.import_module(name)


def sign_unchecked(delegator: SigningKey, grant: Grant) -> bytes:
    """The attackers' tool from ``examples/world.py``: a delegation signed without the
    narrowing check that ``sign_delegation`` makes. The library has no such function."""
    signed: bytes = example("world").sign_unchecked(delegator, grant)
    return signed


class LogRecords(logging.Handler):
    """Every record under the ``trunkkey`` logger, at every level (the ``records`` fixture)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, name: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == name]

    def texts(self) -> Iterator[str]:
        """Every text a record could reach a log store as: message, formatted, each field."""
        formatter = logging.Formatter()
        for record in self.records:
            yield record.getMessage()
            yield formatter.format(record)
            for value in vars(record).values():
                yield str(value)
                yield repr(value)
