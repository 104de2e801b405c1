"""Test helpers for code that uses trunkkey: strategies, fixtures and simulated worlds.

* :mod:`trunkkey.testing.strategies` (also importable from here, e.g.
  ``from trunkkey.testing import make_bundle``): a ready issuer, trust store
  and verifier, hypothesis strategies for valid and hostile tokens, and the
  pytest fixtures ``trunkkey_clock``, ``trunkkey_ledger_factory`` and
  ``trunkkey_bundle`` (enable them with ``pytest_plugins = ["trunkkey.testing"]``).
  It needs the ``test`` extra: it imports hypothesis and pytest.
* :mod:`trunkkey.testing.vehicle`: simulated car hardware (``SimulatedBody``,
  ``SimulatedGps``) and a small world of carmaker, retailer and cars around
  real :class:`~trunkkey.vehicle.VehicleUnit` instances.
* :mod:`trunkkey.testing.consent`: the consent story's world: a carmaker root,
  a retailer, a carrier and a courier, and a car that trusts only the root.

The simulated worlds need nothing beyond trunkkey, so the examples run on a
plain install: the names of :mod:`.strategies` are loaded only when asked for.
This layer sits above ``vehicle`` and below ``cli``; nothing in the library
imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .strategies import TAMPERED_REASONS as TAMPERED_REASONS
    from .strategies import Bundle as Bundle
    from .strategies import Hostility as Hostility
    from .strategies import TokenCase as TokenCase
    from .strategies import hostile_tokens as hostile_tokens
    from .strategies import make_bundle as make_bundle
    from .strategies import sqlite_ledger as sqlite_ledger
    from .strategies import trunkkey_bundle as trunkkey_bundle
    from .strategies import trunkkey_clock as trunkkey_clock
    from .strategies import trunkkey_ledger_factory as trunkkey_ledger_factory
    from .strategies import valid_tokens as valid_tokens

__all__ = [
    "TAMPERED_REASONS",
    "Bundle",
    "Hostility",
    "TokenCase",
    "hostile_tokens",
    "make_bundle",
    "sqlite_ledger",
    "trunkkey_bundle",
    "trunkkey_clock",
    "trunkkey_ledger_factory",
    "valid_tokens",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that importing trunkkey.testing.vehicle does not
    # need hypothesis or pytest.
    if name in __all__:
        return getattr(importlib.import_module(".strategies", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # pytest finds the fixtures of a plugin module through dir().
    return sorted({*globals(), *__all__})
