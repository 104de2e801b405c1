"""The one benchmark: trunkkey beside its signature floors and its peers, in one run.

Run from the repository root, with the ``bench`` extra installed
(``pip install -e '.[bench]'``)::

    python -m tools.bench.run                 # the full run (a few minutes)
    python -m tools.bench.run --quick         # a smoke run (seconds), figures are rough
    python -m tools.bench.run --json OUT.json # results elsewhere than the default

It prints a table and writes JSON (default ``tools/bench/results/latest.json``)
that ``tools/gen/plots.py`` turns into the plots of
``docs/performance.md``.

Method: every rate is the best of several short rounds, and the rounds of all
measurements are interleaved (``tools/bench/_measure.py``), so that a noisy neighbour on
the shared cores costs every figure alike. Every verification is of a freshly
minted token (a first use), with its proof made beforehand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nacl.bindings
import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tools import ROOT
from tools.bench import bench_pq, bench_sealed, scaling
from tools.bench._measure import Case, best_of_rounds, consume, repeat, signatures_stubbed
from tools.bench._peers import Peer, PeerMissing, pyjwt, python_cwt
from tools.bench._setups import (
    ISSUER,
    VEHICLE,
    ConsentMissing,
    Direct,
    Presentation,
    chained,
    checker,
    story_sizes,
)
from trunkkey import Algorithm, MemoryLedger, SqliteLedger
from trunkkey._sodium import ed25519_open

RESULTS = ROOT / "tools" / "bench" / "results"
DEFAULT_JSON = RESULTS / "latest.json"

#: The name of every rate in the JSON, in table order, with what it measures.
RATES: dict[str, str] = {
    "mint": "mint a trunk token (Ed25519)",
    "verify_memory": "verify, memory ledger",
    "verify_proof_memory": "verify + proof of possession, memory ledger",
    "verify_parcels_memory": "verify + proof with a 3-parcel scan, memory ledger",
    "verify_chain2_cached": "verify + proof, 2-link chain, grant cache warm",
    "verify_chain2_uncached": "verify + proof, 2-link chain, no grant cache",
    "verify_sqlite": "verify, SQLite ledger (fsync per token)",
    "verify_proof_sqlite": "verify + proof, SQLite ledger",
    "verify_p256_memory": "verify, ES256 token, memory ledger",
    "floor_ed25519_sign_libsodium": "floor: Ed25519 sign, libsodium (pynacl binding)",
    "floor_ed25519_verify_libsodium": "floor: Ed25519 verify, libsodium (pynacl binding)",
    "floor_ed25519_verify_libsodium_distinct": "reference: libsodium verify, a new message each",
    "floor_ed25519_verify_libsodium_direct": "reference: libsodium verify, trunkkey's direct call",
    "floor_ed25519_sign_openssl": "floor: Ed25519 sign, OpenSSL (cryptography)",
    "floor_ed25519_verify_openssl": "floor: Ed25519 verify, OpenSSL (cryptography)",
    "floor_p256_sign_openssl": "floor: P-256 sign, OpenSSL (cryptography)",
    "floor_p256_verify_openssl": "floor: P-256 verify, OpenSSL (cryptography)",
    "peer_cwt_encode": "peer: python-cwt encode (EdDSA CWT)",
    "peer_cwt_decode": "peer: python-cwt decode + verify",
    "peer_jwt_encode": "peer: PyJWT encode (EdDSA JWT)",
    "peer_jwt_decode": "peer: PyJWT decode + verify (aud, iss)",
}

#: (name, numerator, denominator, denominator's divisor): rate ratios.
RATIOS: list[tuple[str, str, str, float]] = [
    ("verify_memory / libsodium verify", "verify_memory", "floor_ed25519_verify_libsodium", 1),
    ("verify_memory / python-cwt decode", "verify_memory", "peer_cwt_decode", 1),
    ("verify_memory / PyJWT decode", "verify_memory", "peer_jwt_decode", 1),
    ("verify_proof / (libsodium verify / 2)", "verify_proof_memory",
     "floor_ed25519_verify_libsodium", 2),
    ("chain2 cached / verify_proof", "verify_chain2_cached", "verify_proof_memory", 1),
    ("verify_parcels / verify_proof", "verify_parcels_memory", "verify_proof_memory", 1),
    ("chain2 cached / (libsodium verify / 2)", "verify_chain2_cached",
     "floor_ed25519_verify_libsodium", 2),
    ("chain2 uncached / (libsodium verify / 4)", "verify_chain2_uncached",
     "floor_ed25519_verify_libsodium", 4),
    ("verify_memory / distinct-message libsodium verify", "verify_memory",
     "floor_ed25519_verify_libsodium_distinct", 1),
    ("verify_proof / (distinct-message libsodium verify / 2)", "verify_proof_memory",
     "floor_ed25519_verify_libsodium_distinct", 2),
    ("chain2 uncached / (distinct-message libsodium verify / 4)", "verify_chain2_uncached",
     "floor_ed25519_verify_libsodium_distinct", 4),
    ("mint / libsodium sign", "mint", "floor_ed25519_sign_libsodium", 1),
    ("mint / python-cwt encode", "mint", "peer_cwt_encode", 1),
    ("mint / PyJWT encode", "mint", "peer_jwt_encode", 1),
    ("verify_sqlite / verify_memory", "verify_sqlite", "verify_memory", 1),
    ("verify_p256 / OpenSSL P-256 verify", "verify_p256_memory", "floor_p256_verify_openssl", 1),
    ("libsodium / OpenSSL Ed25519 verify", "floor_ed25519_verify_libsodium",
     "floor_ed25519_verify_openssl", 1),
    ("python-cwt decode / libsodium verify", "peer_cwt_decode",
     "floor_ed25519_verify_libsodium", 1),
]

#: (target, ratio or size it reads, threshold, "min" or "max").
TARGETS: list[tuple[str, str, float, str]] = [
    ("verify (full policy, memory ledger) >= 0.85 x libsodium verify",
     "verify_memory / libsodium verify", 0.85, "min"),
    ("verify >= 1.6 x python-cwt", "verify_memory / python-cwt decode", 1.6, "min"),
    ("verify with proof >= 0.85 x half the libsodium verify rate",
     "verify_proof / (libsodium verify / 2)", 0.85, "min"),
    ("2-link chain, cache warm ~ verify with proof (>= 0.85 x)",
     "chain2 cached / verify_proof", 0.85, "min"),
    ("2-link chain, uncached >= 0.85 x libsodium verify / 4 signatures",
     "chain2 uncached / (libsodium verify / 4)", 0.85, "min"),
    ("mint >= 0.85 x libsodium sign", "mint / libsodium sign", 0.85, "min"),
    ("trunk token <= 160 bytes", "size:trunk_token", 160, "max"),
    ("two-link presentation <= 512 bytes, grants inline (leanest chain)",
     "size:chain2_presentation_lean", 512, "max"),
    ("two-link presentation <= 512 bytes, grants named by digest",
     "size:chain2_presentation_lean_by_reference", 512, "max"),
    ("fleet: 2 processes >= 1.8 x 1 process (in-memory ledgers)",
     "fleet:memory", 1.8, "min"),
    ("fleet: 2 processes >= 1.8 x 1 process (durable ledgers)", "fleet:sqlite", 1.8, "min"),
    # Sealed tokens (issue 15), from bench_sealed's figures in this run.
    (f"sealed trunk token <= {bench_sealed.MAX_SEALED_TRUNK_BYTES} bytes",
     "sealed:sealed_trunk", bench_sealed.MAX_SEALED_TRUNK_BYTES, "max"),
    (f"sealed: open + verify >= {bench_sealed.MIN_RATE_RATIO} x plain verify",
     "sealed:ratio", bench_sealed.MIN_RATE_RATIO, "min"),
]


def _floor_cases(batch: int, rounds: int) -> dict[str, Case]:
    """Raw signatures over a message the size of a trunk token's Sig_structure.

    The floors the targets use verify one signature over and over, as a raw
    benchmark of a signature library does. Two more are shown for reference:
    a new message and signature each time, as a car sees (the CPU's branch
    predictors cannot learn one signature's scalars), and the call trunkkey
    itself makes, which skips the binding's output buffer and copy.
    """
    message = os.urandom(150)
    nacl_key = nacl.signing.SigningKey.generate()
    nacl_sk = nacl_key._signing_key
    nacl_pk = bytes(nacl_key.verify_key)
    signed = nacl.bindings.crypto_sign(message, nacl_sk)
    distinct = [nacl.bindings.crypto_sign(os.urandom(150), nacl_sk)
                for _ in range(batch * rounds)]
    ossl = ed25519.Ed25519PrivateKey.generate()
    ossl_pub, ossl_sig = ossl.public_key(), ossl.sign(message)
    p256 = ec.generate_private_key(ec.SECP256R1())
    ecdsa = ec.ECDSA(hashes.SHA256())
    p256_pub, p256_sig = p256.public_key(), p256.sign(message, ecdsa)
    return {
        "floor_ed25519_sign_libsodium": Case(
            run=repeat(lambda: nacl.bindings.crypto_sign(message, nacl_sk)), batch=batch),
        "floor_ed25519_verify_libsodium": Case(
            run=repeat(lambda: nacl.bindings.crypto_sign_open(signed, nacl_pk)), batch=batch),
        "floor_ed25519_verify_libsodium_distinct": Case(
            run=consume(iter(distinct), lambda item: nacl.bindings.crypto_sign_open(item, nacl_pk)),
            batch=batch),
        "floor_ed25519_verify_libsodium_direct": Case(
            run=repeat(lambda: ed25519_open(signed, nacl_pk)), batch=batch),
        "floor_ed25519_sign_openssl": Case(run=repeat(lambda: ossl.sign(message)), batch=batch),
        "floor_ed25519_verify_openssl": Case(
            run=repeat(lambda: ossl_pub.verify(ossl_sig, message)), batch=batch),
        "floor_p256_sign_openssl": Case(
            run=repeat(lambda: p256.sign(message, ecdsa)), batch=batch // 2),
        "floor_p256_verify_openssl": Case(
            run=repeat(lambda: p256_pub.verify(p256_sig, message, ecdsa)), batch=batch // 2),
    }


def _peer_cases(peer: Peer, prefix: str, batch: int, rounds: int) -> dict[str, Case]:
    tokens = [peer.mint() for _ in range(batch * rounds)]
    return {
        f"{prefix}_encode": Case(run=repeat(peer.mint), batch=batch),
        f"{prefix}_decode": Case(run=consume(iter(tokens), peer.verify), batch=batch),
    }


def measure_rates(
    *, batch: int, rounds: int, state_dir: str
) -> tuple[dict[str, float | None], dict[str, str], dict[str, float]]:
    """Every rate of :data:`RATES`, interleaved; a missing optional part gives ``None``.

    Also the µs of trunkkey's own work per operation (signature checks stubbed).
    """
    notes: dict[str, str] = {}
    cases: dict[str, Case] = {}
    small = max(1, batch // 8)  # the fsync-bound cases: a round of them takes as long
    n = batch * rounds
    direct = Direct.create()
    cases["mint"] = Case(run=repeat(direct.mint), batch=batch)
    cases["verify_memory"] = Case(
        run=consume(iter(direct.plain(n)), checker(direct.verifier(MemoryLedger()))), batch=batch)
    cases["verify_proof_memory"] = Case(
        run=consume(iter(direct.with_proof(n)), checker(direct.verifier(MemoryLedger()))),
        batch=batch)
    # Parcel-bound beside plain, in the same interleaved rounds (issue 19).
    cases["verify_parcels_memory"] = Case(
        run=consume(iter(direct.with_parcels(n)), checker(direct.verifier(MemoryLedger()))),
        batch=batch)
    try:
        for cache in (True, False):
            world = chained(2, cache=cache)
            items: list[Presentation] = world.with_proof(n + 1)
            check = checker(world.verifier)
            check(items.pop())  # warms the grant cache (a no-op without one)
            name = f"verify_chain2_{'cached' if cache else 'uncached'}"
            cases[name] = Case(run=consume(iter(items), check), batch=batch)
    except ConsentMissing as exc:
        notes["consent"] = f"n/a (consent package not available: {exc})"
    # trunkkey's own work in place: the same paths with the signature checks
    # stubbed (never part of a rate or ratio above; see python_us).
    cases["python_verify_memory"] = Case(run=signatures_stubbed(
        consume(iter(direct.plain(n)), checker(direct.verifier(MemoryLedger())))), batch=batch)
    cases["python_verify_proof_memory"] = Case(run=signatures_stubbed(
        consume(iter(direct.with_proof(n)), checker(direct.verifier(MemoryLedger())))),
        batch=batch)
    cases["python_verify_parcels_memory"] = Case(run=signatures_stubbed(
        consume(iter(direct.with_parcels(n)), checker(direct.verifier(MemoryLedger())))),
        batch=batch)
    try:
        world = chained(2, cache=False)
        cases["python_verify_chain2_uncached"] = Case(run=signatures_stubbed(
            consume(iter(world.with_proof(n)), checker(world.verifier))), batch=batch)
    except ConsentMissing:
        pass
    sqlite_plain = SqliteLedger(Path(state_dir) / "plain.sqlite")
    sqlite_proof = SqliteLedger(Path(state_dir) / "proof.sqlite")
    cases["verify_sqlite"] = Case(
        run=consume(iter(direct.plain(small * rounds)), checker(direct.verifier(sqlite_plain))),
        batch=small)
    cases["verify_proof_sqlite"] = Case(
        run=consume(iter(direct.with_proof(small * rounds)),
                    checker(direct.verifier(sqlite_proof))),
        batch=small)
    p256 = Direct.create(Algorithm.ES256)
    cases["verify_p256_memory"] = Case(
        run=consume(iter(p256.plain(n)), checker(p256.verifier(MemoryLedger()))), batch=batch)
    cases.update(_floor_cases(batch, rounds))
    for make, prefix in ((python_cwt, "peer_cwt"), (pyjwt, "peer_jwt")):
        try:
            cases.update(_peer_cases(make(VEHICLE, ISSUER), prefix, batch, rounds))
        except PeerMissing as exc:
            notes[prefix] = f"n/a ({exc}; pip install 'trunkkey[bench]')"
    best = best_of_rounds(cases, rounds)
    sqlite_plain.close()
    sqlite_proof.close()
    python_us = {name[len("python_"):]: round(1e6 / best[name], 2)
                 for name in best if name.startswith("python_")}
    rates = {name: (round(best[name]) if name in best else None) for name in RATES}
    return rates, notes, python_us


def measure_sizes() -> dict[str, int | None]:
    direct = Direct.create()
    token, proof_token = direct.mint(), direct.with_proof(1)[0]
    parcel_token = direct.with_parcels(1)[0]
    sizes: dict[str, int | None] = {
        "trunk_token": len(token),
        "delivery_token_with_cnf_and_geofence": len(proof_token[0]),
        "proof": len(proof_token[1] or b""),
        "delivery_presentation": len(proof_token[0]) + len(proof_token[1] or b""),
        "delivery_token_with_3_parcels": len(parcel_token[0]),
        "proof_with_3_parcel_scan": len(parcel_token[1] or b""),
    }
    try:
        story = story_sizes()
        sizes |= {
            "chain2": story["chain"],
            "chain2_token": story["token"],
            "chain2_presentation": story["total"],
            "chain2_presentation_by_reference": story["total_by_reference"],
            "chain2_presentation_lean": story["lean_total"],
            "chain2_presentation_lean_by_reference": story["lean_total_by_reference"],
        }
    except ConsentMissing:
        sizes |= dict.fromkeys(("chain2", "chain2_token", "chain2_presentation",
                                "chain2_presentation_by_reference", "chain2_presentation_lean",
                                "chain2_presentation_lean_by_reference"))
    for make, name in ((python_cwt, "peer_cwt_token"), (pyjwt, "peer_jwt_token")):
        try:
            sizes[name] = len(make(VEHICLE, ISSUER).mint())
        except PeerMissing:
            sizes[name] = None
    return sizes


def ratios(rates: dict[str, float | None]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, top, bottom, divisor in RATIOS:
        a, b = rates.get(top), rates.get(bottom)
        out[name] = None if a is None or b is None else round(a / (b / divisor), 3)
    return out


def _sealed_value(sealed: dict[str, object] | None, name: str) -> float | None:
    """A sealed figure a target reads: the open + verify ratio, or a sealed size."""
    if sealed is None:
        return None
    sizes: dict[str, int] = sealed["sizes"]  # type: ignore[assignment]
    value = sealed["ratio"] if name == "ratio" else sizes.get(name)
    return None if value is None else float(value)  # type: ignore[arg-type]


def targets(ratio: dict[str, float | None], sizes: dict[str, int | None],
            fleet: dict[str, object] | None,
            sealed: dict[str, object] | None = None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for name, source, threshold, direction in TARGETS:
        value: float | None
        if source.startswith("size:"):
            got = sizes.get(source[5:])
            value = None if got is None else float(got)
        elif source.startswith("fleet:"):
            entry = None if fleet is None else fleet.get(source[6:])
            value = None if not isinstance(entry, dict) else float(entry["speedup"])
        elif source.startswith("sealed:"):
            value = _sealed_value(sealed, source[7:])
        else:
            value = ratio.get(source)
        met = None if value is None else (
            value >= threshold if direction == "min" else value <= threshold)
        out.append({"target": name, "value": value, "threshold": threshold,
                    "direction": direction, "met": met})
    return out


def overhead(rates: dict[str, float | None]) -> dict[str, float | None]:
    """µs trunkkey spends per operation beyond its signature operations."""
    def us(name: str) -> float | None:
        rate = rates.get(name)
        return None if not rate else 1e6 / rate

    verify, sign = us("floor_ed25519_verify_libsodium"), us("floor_ed25519_sign_libsodium")
    out: dict[str, float | None] = {}
    for name, signatures, floor in (("verify_memory", 1, verify), ("mint", 1, sign),
                                    ("verify_proof_memory", 2, verify),
                                    ("verify_parcels_memory", 2, verify),
                                    ("verify_chain2_cached", 2, verify),
                                    ("verify_chain2_uncached", 4, verify)):
        total = us(name)
        out[name] = None if total is None or floor is None else round(total - signatures * floor, 2)
    return out


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(*, quick: bool) -> dict[str, object]:
    batch, rounds = (200, 2) if quick else (1000, 9)
    started = time.time()
    meta: dict[str, object] = {
        "quick": quick, "rounds": rounds, "batch": batch, "cpus": os.cpu_count(),
        "python": platform.python_version(), "machine": platform.machine(),
        "load_before": _load(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results_dir = RESULTS
    results_dir.mkdir(parents=True, exist_ok=True)
    # The SQLite files live on the repository's disk, not a RAM-backed /tmp,
    # so that their fsyncs are real.
    with tempfile.TemporaryDirectory(prefix="trunkkey-bench-", dir=results_dir) as state_dir:
        rates, notes, python_us = measure_rates(batch=batch, rounds=rounds, state_dir=state_dir)
    sizes = measure_sizes()
    growth: dict[str, object] = {}
    try:
        growth["chain_depth_us"] = scaling.chain_depth(
            [1, 2, 3, 4], batch=batch // 2, rounds=max(2, rounds // 2))
    except ConsentMissing as exc:
        growth["chain_depth_us"] = None
        notes["chain_depth"] = f"n/a (consent package not available: {exc})"
    growth["ledger_size_us"] = scaling.ledger_size(
        [10**3, 10**4] if quick else [10**3, 10**4, 10**5, 10**6],
        batch=batch, rounds=max(2, rounds // 3), sqlite_batch=max(1, batch // 8))
    growth["fleet_vehicles_per_second"] = scaling.fleet_vehicles(
        [2, 8] if quick else [10, 100, 1000], tokens=16 if quick else 1000,
        rounds=1 if quick else 3)
    fleet = scaling.fleet_scaling(cars=4 if quick else 100, procs=2,
                                  per_car=4 if quick else 10, repeats=1 if quick else 2,
                                  rounds=1 if quick else 4)
    growth["fleet_scaling"] = fleet
    # ML-DSA-44 tokens and hybrid roots: their own rates, sizes and ratios (bench_pq).
    post_quantum = bench_pq.measure(quick=quick)
    # Sealed tokens: sizes, open + verify against a plain verify (bench_sealed).
    sealed = bench_sealed.report(quick=quick)
    ratio = ratios(rates)
    meta["load_after"] = _load()
    meta["seconds"] = round(time.time() - started, 1)
    versions = {}
    for module in ("cryptography", "nacl", "cwt", "jwt"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    meta["versions"] = versions
    return {
        "meta": meta, "rates": rates, "sizes": sizes, "ratios": ratio,
        "overhead_us": overhead(rates), "python_us": python_us,
        "targets": targets(ratio, sizes, fleet, sealed),
        "growth": growth, "notes": notes, "pq": post_quantum, "sealed": sealed,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: dict[str, object]) -> str:
    rates: dict[str, float | None] = results["rates"]  # type: ignore[assignment]
    floor = rates.get("floor_ed25519_verify_libsodium")
    lines = [f"{'measure':56s} {'per second':>11s} {'µs':>8s} {'x libsodium verify':>19s}"]
    for name, label in RATES.items():
        rate = rates[name]
        us = None if not rate else 1e6 / rate
        rel = None if not rate or not floor else rate / floor
        lines.append(f"{label:56s} {_fmt(rate, '11,.0f')} {_fmt(us, '8.1f')} "
                     f"{_fmt(rel, '19.3f')}")
    lines += ["", f"{'size':56s} {'bytes':>11s}"]
    sizes: dict[str, int | None] = results["sizes"]  # type: ignore[assignment]
    lines += [f"{name:56s} {_fmt(v, '11d')}" for name, v in sizes.items()]
    lines += ["", f"{'ratio':56s} {'value':>11s}"]
    ratio: dict[str, float | None] = results["ratios"]  # type: ignore[assignment]
    lines += [f"{name:56s} {_fmt(v, '11.3f')}" for name, v in ratio.items()]
    lines += ["", f"{'overhead beyond the signatures (µs)':56s} {'µs':>11s}"]
    over: dict[str, float | None] = results["overhead_us"]  # type: ignore[assignment]
    lines += [f"{name:56s} {_fmt(v, '11.2f')}" for name, v in over.items()]
    lines += ["", f"{'trunkkey alone, signature checks stubbed (µs)':56s} {'µs':>11s}"]
    own: dict[str, float] = results["python_us"]  # type: ignore[assignment]
    lines += [f"{name:56s} {_fmt(v, '11.2f')}" for name, v in own.items()]
    lines += ["", f"{'target':66s} {'value':>8s}  verdict"]
    for t in results["targets"]:  # type: ignore[attr-defined]
        verdict = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        lines.append(f"{t['target']:66s} {_fmt(t['value'], '8.3f')}  {verdict}")
    growth: dict[str, object] = results["growth"]  # type: ignore[assignment]
    lines += ["", "growth (µs per verification unless noted)"]
    for name, value in growth.items():
        if name != "fleet_scaling":
            lines.append(f"  {name}: {json.dumps(value)}")
    fleet: dict[str, dict[str, object]] = growth["fleet_scaling"]  # type: ignore[assignment]
    for ledger, data in fleet.items():
        by: dict[str, dict[str, object]] = data["by_procs"]  # type: ignore[assignment]
        lines.append(f"  fleet {ledger}: 1 proc {by['1']['per_second']}/s, 2 procs "
                     f"{by['2']['per_second']}/s (per process {by['2']['per_process']}), "
                     f"speedup {data['speedup']}")
    lines += ["", bench_pq.table(results["pq"])]  # type: ignore[arg-type]
    lines += ["", "sealed tokens (HPKE-4) beside plain ones",
              bench_sealed.table(results["sealed"])]  # type: ignore[arg-type]
    notes: dict[str, str] = results["notes"]  # type: ignore[assignment]
    lines += [f"note: {k}: {v}" for k, v in notes.items()]
    meta: dict[str, object] = results["meta"]  # type: ignore[assignment]
    lines.append(f"load average before {meta['load_before']}, after {meta['load_after']}; "
                 f"{meta['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny batches and sizes: a smoke run, figures are rough")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
