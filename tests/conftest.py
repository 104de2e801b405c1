"""Shared fixtures: a fixed clock, keys, an issuer, a trust store, verifiers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from support import World, make_world
from trunkkey import Algorithm

# CI runs more examples; a developer's run stays quick.
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

@pytest.fixture(params=[Algorithm.EDDSA, Algorithm.ES256], ids=["ed25519", "p256"])
def world(request: pytest.FixtureRequest) -> World:
    return make_world(request.param)


@pytest.fixture
def ed_world() -> World:
    return make_world(Algorithm.EDDSA)


@pytest.fixture
def tmp_ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"
