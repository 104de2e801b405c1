"""Run the fuzz harnesses: ``python -m tools.fuzz.run [--seconds-each S] [--target NAME ...]``.

Each target runs in its own process under atheris (libFuzzer), starting from a
seed corpus of valid objects written to a temporary directory, with a memory
cap and a per-input timeout. The summary gives inputs executed per target and
in total; the exit status is non-zero if any target found a crash, a leak, a
timeout or an out-of-memory.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import ROOT
from tools.fuzz.targets import TARGETS, max_len, seeds

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def run_target(
    name: str,
    seconds: int,
    workdir: Path,
    rss_mb: int,
    *,
    runs: int | None = None,
    fuzz_seed: int | None = None,
) -> dict[str, object]:
    corpus = workdir / f"{name}-corpus"
    seed_dir = workdir / f"{name}-seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    seed_dir.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (seed_dir / f"seed-{i}").write_bytes(seed)
    cmd = [
        sys.executable,
        "-m",
        "tools.fuzz.entry",
        name,
        *([f"-runs={runs}"] if runs is not None else [f"-max_total_time={seconds}"]),
        *([f"-seed={fuzz_seed}"] if fuzz_seed is not None else []),
        f"-rss_limit_mb={rss_mb}",
        "-timeout=10",
        f"-max_len={max_len(name)}",
        f"-artifact_prefix={workdir}/{name}-",
        "-print_final_stats=1",
        str(corpus),
        str(seed_dir),
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    match = _DONE.search(proc.stderr)
    runs = int(match.group(1)) if match else 0
    stats = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    if stats:
        runs = max(runs, int(stats.group(1)))
    return {
        "target": name,
        "inputs": runs,
        "seconds": round(elapsed, 1),
        "ok": proc.returncode == 0,
        "returncode": proc.returncode,
        "tail": proc.stderr[-3000:] if proc.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run trunkkey's fuzz harnesses.")
    parser.add_argument("--seconds-each", type=int, default=20)
    parser.add_argument(
        "--runs-each",
        type=int,
        help="a fixed number of inputs per target instead of a time (with --seed: repeatable)",
    )
    parser.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--rss-mb", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    with tempfile.TemporaryDirectory(prefix="trunkkey-fuzz-") as tmp:
        results = [
            run_target(
                n,
                args.seconds_each,
                Path(tmp),
                args.rss_mb,
                runs=args.runs_each,
                fuzz_seed=args.seed,
            )
            for n in names
        ]
    total = sum(int(r["inputs"]) for r in results)  # type: ignore[call-overload]
    for r in results:
        status = "ok" if r["ok"] else f"FAILED (exit {r['returncode']})"
        print(f"{r['target']:8s} {r['inputs']:>12,} inputs {r['seconds']:>7}s  {status}")
        if not r["ok"]:
            print(r["tail"])
    print(f"{'total':8s} {total:>12,} inputs")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "total": total}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
