"""The benchmark command runs end to end and reports every figure, ratio and target.

No speed is asserted: the machine is shared, and a smoke run's figures are
rough. What is asserted is the shape a reader (and the plot script) relies on.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    from tools.bench import run

    return run


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.run", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "target" in done.stdout
    assert "libsodium" in done.stdout
    data: dict[str, object] = json.loads(out.read_text())
    return data


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_rate_is_measured_or_explained(bench: ModuleType, results: dict[str, Any]) -> None:
    rates = results["rates"]
    assert set(rates) == set(bench.RATES)
    notes = " ".join(results["notes"].values())
    for name, value in rates.items():
        if value is None:
            # Only the optional parts may be missing, and the run must say why.
            assert name.startswith(("peer_", "verify_chain2")), name
            assert "n/a" in notes
        else:
            assert _number(value), name
    # The core, the floors and the SQLite figures never depend on an extra.
    for name in ("mint", "verify_memory", "verify_proof_memory", "verify_sqlite",
                 "floor_ed25519_verify_libsodium", "floor_ed25519_verify_openssl",
                 "floor_p256_verify_openssl", "floor_ed25519_sign_libsodium"):
        assert _number(rates[name]), name


def test_every_ratio_is_computed_from_its_rates(bench: ModuleType, results: dict[str, Any]) -> None:
    rates, ratios = results["rates"], results["ratios"]
    assert [name for name, *_ in bench.RATIOS] == list(ratios)
    for name, top, bottom, divisor in bench.RATIOS:
        if rates[top] is None or rates[bottom] is None:
            assert ratios[name] is None
        else:
            assert ratios[name] == pytest.approx(rates[top] / (rates[bottom] / divisor),
                                                 abs=1e-3)


def test_every_target_is_listed_with_a_verdict(bench: ModuleType, results: dict[str, Any]) -> None:
    targets = results["targets"]
    assert [t["target"] for t in targets] == [name for name, *_ in bench.TARGETS]
    for t in targets:
        if t["value"] is None:
            assert t["met"] is None
        elif t["direction"] == "min":
            assert t["met"] is (t["value"] >= t["threshold"])
        else:
            assert t["met"] is (t["value"] <= t["threshold"])
    sizes = {t["target"]: t for t in targets}
    assert sizes["trunk token <= 160 bytes"]["value"] == results["sizes"]["trunk_token"]


def test_the_one_run_reports_the_sealed_figures_with_both_verdicts(
    results: dict[str, Any],
) -> None:
    # Issue 15 point 4: sealed sizes and speeds in the same run, a verdict for each target.
    sealed = results["sealed"]
    assert sealed["sizes"]["sealed_trunk"] > sealed["sizes"]["plain_trunk"]
    assert all(_number(rate) for rate in sealed["rates"].values())
    assert sealed["ratio"] == pytest.approx(sealed["rates"]["sealed"] / sealed["rates"]["plain"])
    by_name = {t["target"]: t for t in results["targets"]}
    size = by_name["sealed trunk token <= 256 bytes"]
    assert size["value"] == sealed["sizes"]["sealed_trunk"]
    assert size["met"] is sealed["verdicts"]["sealed_trunk_at_most_256_bytes"]
    speed = by_name["sealed: open + verify >= 0.5 x plain verify"]
    assert speed["value"] == pytest.approx(sealed["ratio"])
    assert speed["met"] is sealed["verdicts"]["open_verify_at_least_half_plain_rate"]


def test_sizes_overhead_and_growth_are_reported(results: dict[str, Any]) -> None:
    sizes = results["sizes"]
    assert sizes["trunk_token"] > 100
    assert sizes["delivery_presentation"] == (
        sizes["delivery_token_with_cnf_and_geofence"] + sizes["proof"])
    assert set(results["overhead_us"]) >= {"verify_memory", "mint", "verify_proof_memory"}
    # trunkkey's own work, signatures stubbed: some, and less than a whole verification.
    own = results["python_us"]
    assert set(own) >= {"verify_memory", "verify_proof_memory"}
    for name, us in own.items():
        assert 0 < us < 1e6 / results["rates"][name]
    growth = results["growth"]
    ledger = growth["ledger_size_us"]
    assert set(ledger) == {"memory", "sqlite"}
    assert all(_number(v) for kind in ledger.values() for v in kind.values())
    assert len(ledger["memory"]) >= 2
    if growth["chain_depth_us"] is not None:
        assert set(growth["chain_depth_us"]["uncached"]) == {"0", "1", "2", "3", "4"}
    fleet = growth["fleet_scaling"]
    for ledger_kind in ("memory", "sqlite"):
        by_procs = fleet[ledger_kind]["by_procs"]
        assert set(by_procs) == {"1", "2"}
        assert len(by_procs["2"]["per_process"]) == 2
        assert _number(fleet[ledger_kind]["speedup"])
    assert all(_number(v) for kind in growth["fleet_vehicles_per_second"].values()
               for v in kind.values())
    assert results["meta"]["quick"] is True


def test_the_plot_script_reads_the_json(results: dict[str, Any], tmp_path: Path) -> None:
    # matplotlib is the optional ``plot`` extra: both branches are asserted.
    source = tmp_path / "results.json"
    source.write_text(json.dumps(results))
    done = subprocess.run(
        [sys.executable, "-m", "tools.gen.plots", str(source), "--out", str(tmp_path / "png")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    if importlib.util.find_spec("matplotlib") is None:
        assert done.returncode == 2
        assert "matplotlib" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        pngs = sorted((tmp_path / "png").glob("*.png"))
        assert len(pngs) >= 3
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_signature_stub_is_confined_to_its_rounds() -> None:
    from tools.bench._measure import signatures_stubbed
    from trunkkey import SigningKey

    key = SigningKey.generate().public_key
    seen: list[bool] = []
    signatures_stubbed(lambda n: seen.append(key.is_valid_signature(bytes(64), b"m")))(1)
    assert seen == [True]
    assert not key.is_valid_signature(bytes(64), b"m")


def test_a_parcel_bound_verification_is_reported_beside_a_plain_one(
    results: dict[str, Any],
) -> None:
    # Issue 19: one run measures both, and their ratio and sizes are in the results.
    rates, ratios, sizes = results["rates"], results["ratios"], results["sizes"]
    assert _number(rates["verify_parcels_memory"])
    assert _number(rates["verify_proof_memory"])
    assert ratios["verify_parcels / verify_proof"] == pytest.approx(
        rates["verify_parcels_memory"] / rates["verify_proof_memory"], abs=1e-3)
    assert "verify_parcels_memory" in results["python_us"]
    assert "verify_parcels_memory" in results["overhead_us"]
    assert sizes["delivery_token_with_3_parcels"] > sizes["delivery_token_with_cnf_and_geofence"]
    assert sizes["proof_with_3_parcel_scan"] > sizes["proof"]


def test_the_parcel_cpu_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from tools.bench import bench_parcels

    best = bench_parcels.main(count=3, rounds=1)
    assert set(best) == {"proof", "parcels3", "parcels16"}
    assert all(_number(us) for us in best.values())
    assert "over a plain proof" in capsys.readouterr().out


def test_the_post_quantum_benchmark_measures_every_figure_it_names() -> None:
    from tools.bench import bench_pq

    results = bench_pq.measure(quick=True)
    assert all(_number(rate) for rate in results["rates"].values())
    sizes = results["sizes"]
    # Only the signature grows, with its longer length head (one byte) and alg
    # (-48: 2 bytes, -65601: 5 bytes, against -8's one).
    assert sizes["token_mldsa44"] - sizes["token_ed25519"] == 2420 - 64 + 1 + 1
    assert sizes["root_grant_hybrid"] - sizes["root_grant_ed25519"] == 3373 - 64 + 1 + 4
    assert (sizes["trust_update_empty_hybrid_root"]
            - sizes["trust_update_empty_ed25519_root"]) == 3373 - 64 + 1 + 4
    # The P-256 composite: the same signature length and alg size; only its key is longer.
    assert sizes["root_grant_p256_hybrid"] == sizes["root_grant_hybrid"]
    assert sizes["trust_update_empty_p256_hybrid_root"] == sizes["trust_update_empty_hybrid_root"]
    assert sizes["public_key_p256_hybrid"] - sizes["public_key_hybrid"] == 64 - 32
    for name, ratio in results["ratios"].items():
        assert ratio > 0, name
    assert "verify_mldsa44_token" in bench_pq.table(results)


def test_the_sealed_benchmark_reports_sizes_rates_and_both_verdicts(tmp_path: Path) -> None:
    from tools.bench import bench_sealed

    result = bench_sealed.main(["--quick", "--json", str(tmp_path / "sealed.json")])
    assert set(result["verdicts"]) == {  # type: ignore[arg-type]
        "sealed_trunk_at_most_256_bytes", "open_verify_at_least_half_plain_rate",
    }
    sizes = result["sizes"]
    assert sizes["sealed_trunk"] <= 256  # type: ignore[index]
    assert json.loads((tmp_path / "sealed.json").read_text()) == json.loads(json.dumps(result))


def test_the_hpke_library_comparison_opens_the_same_token_in_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tools.bench import hpke_libraries

    result = hpke_libraries.main(["--count", "3", "--rounds", "1"])
    assert {"pyhpke (trunkkey's fallback)", "cryptography, private AAD binding (trunkkey)",
            "cryptography (no AAD)", "floor: X25519, OpenSSL",
            "floor: X25519, libsodium", "scale: Ed25519 verify, libsodium"} <= set(result)
    assert all(_number(us) for us in result.values())
    assert "pyhpke (trunkkey's fallback)" in capsys.readouterr().out
