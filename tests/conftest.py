"""Shared fixtures: a fixed clock, keys, an issuer, a trust store, verifiers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from support import LogRecords, World, make_world
from trunkkey import Algorithm

# CI runs more examples; a developer's run stays quick.
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# python-cwt pins cbor2 below 6, so its interop tests run in their own
# environment (`.ci/run` builds .venv-interop and runs `pytest tests/interop`);
# the main run never collects them, not even as skips, and so tests the cbor2
# that `pip install trunkkey` resolves.
collect_ignore = ["interop"]


def pytest_report_header() -> str:
    # Which cbor2 decoded every test's bytes: CI's log shows it for each environment.
    return f"cbor2 {version('cbor2')}"


def _fail_skip_under_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    # CI must run every test, whatever would skip it (a missing server, data
    # set or module): a skip there is a failure that names its reason.
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_skip_under_ci(outcome.get_result())

# Every token path runs under each token-key algorithm: ML-DSA-44 through the same reasons.
@pytest.fixture(params=[Algorithm.EDDSA, Algorithm.ES256, Algorithm.MLDSA44],
                ids=["ed25519", "p256", "mldsa44"])
def world(request: pytest.FixtureRequest) -> World:
    return make_world(request.param)


@pytest.fixture
def ed_world() -> World:
    return make_world(Algorithm.EDDSA)


@pytest.fixture
def tmp_ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def records() -> Iterator[LogRecords]:
    """Captures every ``trunkkey`` record of the test, at every level."""
    logger = logging.getLogger("trunkkey")
    handler, level = LogRecords(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
