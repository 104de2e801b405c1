"""Mutation testing of the modules that decide access: ``python scripts/mutation.py``.

mutmut (2.x) supplies the mutation operators; this script is the runner,
because mutmut rewrites source files in place and this checkout is shared:
every module is mutated in a private copy of the repository under
``--workdir``, never in the working tree. For each mutant the module's own
fast test selection runs (``pytest -x -q`` with a small, derandomized
hypothesis profile); a failing run kills the mutant, a passing one is a
survivor, a run past the time limit counts as killed-by-timeout.

Usage::

    python scripts/mutation.py                      # every module, every mutant
    python scripts/mutation.py --module cbor        # one module
    python scripts/mutation.py --sample 20 --seed 1 # 20 random mutants per module
    python scripts/mutation.py --sample 10 --seed 1 --threshold 0 --total-budget 170
                                                    # CI: scores printed, ~3 minutes at most
    python scripts/mutation.py --json out.json      # machine-readable results

The exit status is 0 when every module reaches ``--threshold`` (default 90 %).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: module -> the test files (globs under tests/) that guard it. Small on
#: purpose: each mutant runs this selection once.
MODULES: dict[str, tuple[str, ...]] = {
    "cbor": ("test_cbor.py", "test_hostile_cbor.py", "test_mutation_killers.py"),
    "cose": (
        "test_cose_vectors.py", "test_signed_objects.py", "test_verifier.py", "test_attacks.py",
        "test_hostile_cbor.py", "test_interop_cwt.py", "test_properties.py",
        "test_mutation_killers.py",
    ),
    "authority": (
        "test_verifier.py", "test_signed_objects.py", "test_attacks.py",
        "test_mutation_killers.py", "test_mutation_killers_consent.py",
    ),
    "trust": (
        "test_trust.py", "test_verifier.py", "test_signed_objects.py", "test_attacks.py",
        "test_mutation_killers.py",
    ),
    "claims": (
        "test_verifier.py", "test_issuer.py", "test_hostile_cbor.py", "test_resource_bounds.py",
        "test_properties.py", "test_mutation_killers.py",
    ),
    "verifier": (
        "test_verifier.py", "test_signed_objects.py", "test_consent_limits.py", "test_attacks.py",
        "test_resource_bounds.py", "test_properties.py", "test_mutation_killers.py",
    ),
    "proof": (
        "test_verifier.py", "test_attacks.py", "test_resource_bounds.py",
        "test_mutation_killers.py",
    ),
    "ledger/memory": ("test_ledger_contract.py", "test_attacks.py", "test_mutation_killers.py"),
    "ledger/sqlite": (
        "test_ledger_sqlite.py", "test_ledger_contract.py", "test_attacks.py",
        "test_mutation_killers.py",
    ),
    "vehicle/unit": (
        "test_vehicle_unit.py", "test_vehicle_timekeeping.py", "test_vehicle_consent.py",
        "test_vehicle_events.py",
        "test_attacks.py", "test_resource_bounds.py", "test_mutation_killers.py",
        "test_mutation_killers_vehicle.py",
    ),
    "consent/chain": (
        "test_consent_chain.py", "test_consent_verifier.py", "test_consent_revocation.py",
        "test_consent_rotation.py", "test_vehicle_consent.py", "test_consent_limits.py",
        "test_signed_objects.py", "test_attacks.py", "test_resource_bounds.py",
        "test_mutation_killers.py", "test_mutation_killers_consent.py",
    ),
}

#: Registered through ``-p`` so it exists before conftest.py picks a profile;
#: ``--hypothesis-profile`` then overrides conftest's choice.
_PROFILE_PLUGIN = '''\
from hypothesis import HealthCheck, settings

settings.register_profile(
    "mutation", max_examples=15, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)
'''


@dataclass(slots=True)
class ModuleResult:
    module: str
    total: int = 0
    tested: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def score(self) -> float:
        return 100.0 * (self.killed + self.timeouts) / self.tested if self.tested else 0.0


def _copy_repo(workdir: Path) -> None:
    for name in ("src", "tests", "tools", "docs", "examples"):
        if not (REPO / name).is_dir():
            continue
        shutil.copytree(
            REPO / name, workdir / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"),
        )
    shutil.copy2(REPO / "pyproject.toml", workdir / "pyproject.toml")
    (workdir / "_mutation_profile.py").write_text(_PROFILE_PLUGIN)


def _test_files(workdir: Path, patterns: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        found += sorted(str(p.relative_to(workdir)) for p in (workdir / "tests").glob(pattern))
    return found


def _pytest_args(tests: list[str]) -> list[str]:
    # Preloaded plugins (hypothesis) cannot be assertion-rewritten again: say so quietly.
    return ["-x", "-q", "-p", "no:cacheprovider", "-p", "_mutation_profile",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "--hypothesis-profile=mutation", *tests]


def _pytest(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run the selection in a fresh process; ``fork`` mode skips re-importing libraries."""
    if _FORK:
        return _pytest_forked(workdir, tests, timeout)
    env = dict(os.environ)
    env.pop("CI", None)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir / "src"), str(workdir)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", *_pytest_args(tests)]
    start = time.monotonic()
    try:
        proc = subprocess.run(  # noqa: S603 -- our own interpreter and fixed arguments
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    return _status(proc.returncode), time.monotonic() - start


def _status(code: int) -> str:
    if code == 0:
        return "passed"
    if code == 1:
        return "failed"
    return f"error {code}"


def _preload() -> None:
    """Import the heavy third-party modules once, in the parent, before any fork."""
    for name in ("cbor2", "hypothesis", "nacl.bindings", "pytest", "_pytest.python",
                 "cryptography.hazmat.primitives.asymmetric.ec",
                 "cryptography.hazmat.primitives.asymmetric.ed25519", "sqlite3"):
        importlib.import_module(name)
    if any(name == "trunkkey" or name.startswith("trunkkey.") for name in sys.modules):
        raise SystemExit("trunkkey was imported before forking; mutants would not load")


def _pytest_forked(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: import trunkkey (mutated) from the copy, run, exit
        try:
            pytest = importlib.import_module("pytest")  # preloaded in the parent
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(workdir)
            os.environ.pop("CI", None)
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            sys.dont_write_bytecode = True
            sys.path[:0] = [str(workdir / "src"), str(workdir), str(workdir / "tests")]
            code = int(pytest.main(_pytest_args(tests)))
        except BaseException:  # noqa: BLE001 -- the child must never return into the parent
            code = 3
        os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _status(os.waitstatus_to_exitcode(status)), time.monotonic() - start
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - start
        time.sleep(0.02)


_FORK = hasattr(os, "fork")


def _diff(original: str, mutated: str) -> str:
    return "".join(
        line for line in difflib.unified_diff(
            original.splitlines(True), mutated.splitlines(True), n=0,
        ) if line[:1] in "+-" and line[:3] not in ("+++", "---")
    )


def run_module(
    module: str, workdir: Path, *, sample: int | None, seed: int, budget: float,
    retest: dict[str, object] | None = None,
) -> ModuleResult:
    """Mutate ``module`` and run its tests per mutant.

    With ``retest`` (one module's entry from an earlier ``--json``), only that
    run's survivors are tried again, and its killed count is carried over:
    the way to score new tests without re-running every mutant.
    """
    import mutmut  # noqa: PLC0415 -- optional tool, only needed here

    result = ModuleResult(module=module)
    target = workdir / "src" / "trunkkey" / f"{module}.py"
    if not target.exists():
        print(f"{module}: no such module, skipped")
        return result
    tests = _test_files(workdir, MODULES[module])
    original = target.read_text()
    ids = mutmut.list_mutations(mutmut.Context(source=original, filename=str(target)))
    result.total = len(ids)
    if sample is not None and sample < len(ids):
        ids = random.Random(f"{seed}:{module}").sample(ids, sample)  # noqa: S311 -- sampling
    if retest is not None:
        wanted = {(int(s["line"]), str(s["diff"]))  # type: ignore[index]
                  for s in retest["survivors"]}  # type: ignore[attr-defined]
        keyed = {(i.line_number + 1, _diff(original, mutmut.mutate(
            mutmut.Context(source=original, mutation_id=i, filename=str(target)))[0])): i
            for i in ids}
        ids = [keyed[k] for k in sorted(wanted & keyed.keys(), key=lambda k: k[0])]
        result.killed = int(retest["killed"])  # type: ignore[call-overload]
        result.timeouts = int(retest["timeouts"])  # type: ignore[call-overload]
        result.tested = result.killed + result.timeouts
        # A survivor the source no longer produces (the file changed) stays a survivor.
        for line, diff in sorted(wanted - keyed.keys()):
            result.tested += 1
            result.survivors.append({"line": line, "diff": diff, "note": "source changed"})
    status, baseline = _pytest(workdir, tests, timeout=600)
    if status != "passed":
        print(f"{module}: tests fail before mutation ({status}); module skipped", flush=True)
        result.stopped_early = True
        return result
    limit = 3 * baseline + 10
    print(f"{module}: {len(ids)} of {result.total} mutants, baseline {baseline:.1f}s, "
          f"tests: {' '.join(tests)}", flush=True)
    start = time.monotonic()
    try:
        for mutation_id in ids:
            if time.monotonic() - start > budget:
                result.stopped_early = True
                print(f"{module}: time budget of {budget:.0f}s spent; stopping", flush=True)
                break
            mutated, count = mutmut.mutate(
                mutmut.Context(source=original, mutation_id=mutation_id, filename=str(target))
            )
            if count != 1 or mutated == original:
                continue
            target.write_text(mutated)
            try:
                outcome, _ = _pytest(workdir, tests, timeout=limit)
            finally:
                target.write_text(original)
            result.tested += 1
            if result.tested % 25 == 0:
                print(f"  {module}: {result.tested}/{len(ids)} tested, "
                      f"{len(result.survivors)} survived", flush=True)
            if outcome == "timeout":
                result.timeouts += 1
            elif outcome == "passed":
                diff = _diff(original, mutated)
                result.survivors.append({"line": mutation_id.line_number + 1, "diff": diff})
                print(f"  survived at line {mutation_id.line_number + 1}:\n{diff}", flush=True)
            else:
                result.killed += 1
    finally:
        target.write_text(original)
        result.seconds = round(time.monotonic() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES))
    parser.add_argument("--sample", type=int, help="test N random mutants per module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds per module")
    parser.add_argument("--total-budget", type=float,
                        help="seconds for the whole run, shared evenly by the modules left "
                             "(CI: a bounded run whatever the machine's speed)")
    parser.add_argument("--threshold", type=float, default=90.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the private copy here")
    parser.add_argument("--retest", type=Path,
                        help="re-run only the survivors recorded in this earlier --json")
    parser.add_argument("--no-fork", action="store_true",
                        help="start a new interpreter per mutant instead of forking")
    args = parser.parse_args(argv)
    global _FORK  # noqa: PLW0603 -- one switch for the whole run
    _FORK = _FORK and not args.no_fork
    if _FORK:
        _preload()
    previous: dict[str, dict[str, object]] = {}
    if args.retest:
        previous = {r["module"]: r for r in json.loads(args.retest.read_text())}
    modules = args.module or (list(previous) if previous else list(MODULES))
    results: list[ModuleResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trunkkey-mutation-") as tmp:
        base = args.workdir or Path(tmp)
        for index, module in enumerate(modules):
            budget = args.budget
            if args.total_budget is not None:
                # Each module's baseline run also counts: keep a margin for it.
                left = args.total_budget - (time.monotonic() - started)
                budget = min(budget, max(0.0, left / (len(modules) - index) - 5))
            workdir = base / module.replace("/", "-")
            if workdir.exists():
                shutil.rmtree(workdir)
            _copy_repo(workdir)
            results.append(run_module(
                module, workdir, sample=args.sample, seed=args.seed, budget=budget,
                retest=previous.get(module),
            ))
    print(f"\n{'module':15s} {'mutants':>7s} {'tested':>6s} {'killed':>6s} "
          f"{'timeout':>7s} {'survived':>8s} {'score':>6s}")
    for r in results:
        note = " (stopped at time budget)" if r.stopped_early else ""
        print(f"{r.module:15s} {r.total:7d} {r.tested:6d} {r.killed:6d} {r.timeouts:7d} "
              f"{len(r.survivors):8d} {r.score:5.1f}%{note}")
    if args.json:
        args.json.write_text(json.dumps(
            [{**{k: getattr(r, k) for k in ("module", "total", "tested", "killed", "timeouts",
                                           "survivors", "seconds", "stopped_early")},
              "score": round(r.score, 1)} for r in results],
            indent=2,
        ))
    tested = [r for r in results if r.tested]
    return 0 if all(r.score >= args.threshold for r in tested) else 1


if __name__ == "__main__":
    sys.exit(main())
