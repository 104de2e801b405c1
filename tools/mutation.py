"""Mutation testing of the modules that decide access: ``python -m tools.mutation``.

mutmut (2.x) supplies the mutation operators; this script is the runner,
because mutmut rewrites source files in place and this checkout is shared:
every module is mutated in a private copy of the repository under
``--workdir``, never in the working tree. For each mutant the module's own
fast test selection runs (``pytest -x -q`` with a small, derandomized
hypothesis profile); a failing run kills the mutant, a passing one is a
survivor, a run past the time limit counts as killed-by-timeout.

Usage::

    python -m tools.mutation --sample 12 --seed 1 --jobs 2   # CI: 12 per module
    python -m tools.mutation                        # every module, every mutant
    python -m tools.mutation --module cbor          # one module
    python -m tools.mutation --json out.json        # machine-readable results
    python -m tools.mutation --retest out.json      # re-try only out.json's survivors

The exit status is 0 only when every module was tested in full (its source
and test files exist, its tests pass unmutated, every chosen mutant ran) and
each reaches ``--threshold`` (default 90 %) of its mutants killed.
"""

from __future__ import annotations

import argparse
import ast
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _repo_root() -> Path:
    # Found by its pyproject.toml, so the script may move within the tree.
    here = Path(__file__).resolve().parent
    return next(p for p in (here, *here.parents) if (p / "pyproject.toml").is_file())


REPO = _repo_root()

#: module -> the test files (globs under tests/) that guard it. Small on
#: purpose: each mutant runs this selection once.
MODULES: dict[str, tuple[str, ...]] = {
    "cbor": (
        "test_cbor.py", "test_hostile_cbor.py", "test_proof.py", "test_cose.py",
        "test_claims.py", "test_verifier.py", "test_consent_verifier.py", "test_consent_chain.py",
    ),
    "cose": (
        "test_cose.py", "test_cose_vectors.py", "test_signed_objects.py", "test_verifier.py",
        "test_attacks.py", "test_hostile_cbor.py", "test_properties.py", "test_proof.py",
        "test_claims.py", "test_consent_verifier.py", "test_consent_chain.py", "test_trust.py",
        "test_signing.py",
        "test_sealed.py", "test_pq.py",
    ),
    "authority": (
        "test_verifier.py", "test_signed_objects.py", "test_attacks.py", "test_consent_chain.py",
    ),
    "trust": (
        "test_trust.py", "test_verifier.py", "test_signed_objects.py", "test_attacks.py",
        "test_cose.py", "test_claims.py", "test_consent_verifier.py", "test_consent_chain.py",
        "test_pq.py",
    ),
    "claims": (
        "test_claims.py", "test_fast_path_equivalence.py", "test_verifier.py", "test_issuer.py",
        "test_hostile_cbor.py", "test_resource_bounds.py", "test_properties.py", "test_cose.py",
        "test_consent_verifier.py", "test_consent_chain.py", "test_trust.py",
        "test_parcels.py",
    ),
    "_fastpath": (
        "test_fast_path_equivalence.py", "test_claims.py", "test_verifier.py", "test_issuer.py",
        "test_properties.py",
        "test_parcels.py",
    ),
    "verifier": (
        "test_verifier.py", "test_signed_objects.py", "test_consent_limits.py", "test_attacks.py",
        "test_resource_bounds.py", "test_properties.py", "test_cose.py", "test_claims.py",
        "test_consent_verifier.py", "test_consent_chain.py",
        "test_parcels.py", "test_sealed.py", "test_pq.py", "test_observe.py",
    ),
    "proof": (
        "test_proof.py", "test_verifier.py", "test_attacks.py", "test_resource_bounds.py",
        "test_cose.py", "test_consent_verifier.py", "test_consent_chain.py",
        "test_parcels.py",
    ),
    "ledger/memory": (
        "test_ledger_memory.py", "test_ledger_contract.py", "test_attacks.py", "test_cose.py",
        "test_claims.py", "test_verifier.py", "test_consent_verifier.py", "test_consent_chain.py",
    ),
    "ledger/sqlite": (
        "test_ledger_sqlite.py", "test_ledger_contract.py", "test_attacks.py",
        "test_vehicle_accesslog.py",
    ),
    "ledger/_sqlite_file": (
        "test_ledger_sqlite.py", "test_ledger_contract.py", "test_vehicle_accesslog.py",
    ),
    "ledger/_sqlite_wal": ("test_ledger_sqlite.py",),
    "vehicle/unit": (
        "test_vehicle_unit.py", "test_vehicle_timekeeping.py", "test_vehicle_consent.py",
        "test_vehicle_events.py", "test_attacks.py", "test_resource_bounds.py",
        "test_vehicle_accesslog.py",
        "test_parcels_vehicle.py", "test_observe.py", "test_sealed.py", "test_vehicle_attacks.py",
    ),
    "vehicle/latch": (
        "test_vehicle_unit.py", "test_vehicle_receipt.py", "test_vehicle_events.py",
        "test_vehicle_consent.py", "test_attacks.py", "test_vehicle_accesslog.py",
        "test_parcels_vehicle.py", "test_vehicle_attacks.py",
    ),
    "consent/chain": (
        "test_consent_chain.py", "test_consent_verifier.py", "test_consent_revocation.py",
        "test_consent_rotation.py", "test_vehicle_consent.py", "test_consent_limits.py",
        "test_signed_objects.py", "test_attacks.py", "test_resource_bounds.py",
        "test_pq.py", "test_consent_attacks.py",
    ),
}

#: Survivors known to be equivalent: a change no test can see. Matched by the
#: module and the stripped source text before and after the change, so an
#: entry holds when lines move; matched mutants are skipped, never sampled.
#: Each needs its reason. Annotation-only mutants need no entry: see
#: ``_annotation_only``.
EQUIVALENT: tuple[tuple[str, str, str], ...] = (
    # (module, line before, line after)
    # The size of a -wal file that does not exist, compared only against
    # 2 MiB: 0 and 1 byte are both far below it.
    ("ledger/sqlite", "return 0", "return 1"),
    # The header is read with read(20): a slice to 21 ends at 20 all the same.
    ("ledger/sqlite", 'if header[18:20] != b"\\x02\\x02":', 'if header[18:21] != b"\\x02\\x02":'),
    # Only ever read as a truth value (`if not self._clock_alarm_raised`);
    # None is false as well.
    ("vehicle/unit", "self._clock_alarm_raised = False", "self._clock_alarm_raised = None"),
    # The reason beside a trusted time is never read: every caller reads it
    # only when the time is None.
    ("vehicle/unit", 'return now, ""', 'return now, "XXXX"'),
    # Set again when an opening starts, and read only while one is open.
    ("vehicle/latch", "self._relock_reading = 0", "self._relock_reading = 1"),
    ("vehicle/latch", "self._relock_reading = 0", "self._relock_reading = None"),
    ("vehicle/latch", "self._opened_reading = 0", "self._opened_reading = 1"),
    ("vehicle/latch", "self._opened_reading = 0", "self._opened_reading = None"),
    # A type alias read only by annotations, which nothing evaluates.
    ("vehicle/unit", "Positioning = Callable[[], Location | None]", "Positioning = None"),
    # Unreachable (a chain has at least one link by then): the branch is there
    # for the type checker, so no test can see its message.
    ("consent/chain", 'return _deny(Reason.CHAIN_INVALID, "empty chain")',
     'return _deny(Reason.CHAIN_INVALID, "XXempty chainXX")'),
    # The last connection's close removes a -wal file, and a creation killed
    # midway runs no cleanup at all: the sweep's -wal entry never finds one.
    ("ledger/_sqlite_file", 'for suffix in ("", "-wal", "-shm", "-journal"):',
     'for suffix in ("", "XX-walXX", "-shm", "-journal"):'),
    # Where the scratch copy goes: in RAM when there is a RAM file system,
    # else the default temporary directory. Only the speed of an open differs.
    ("ledger/_sqlite_wal",
     "scratch = ram if os.path.isdir(ram) and os.access(ram, os.W_OK) else None",
     "scratch = None"),
    # Where a RAM file system is looked for: a name that is not one leaves the
    # scratch copy in the default temporary directory, as on a unit without one.
    ("ledger/_sqlite_wal",
     'ram = "/dev/shm"  # noqa: S108 -- a private directory is made inside it',
     'ram = "XX/dev/shmXX"  # noqa: S108 -- a private directory is made inside it'),
    # The commonest token's claims through the general encoder instead of its
    # fast writer: the same bytes (held equal by tests/test_fast_path_equivalence.py).
    ("claims",
     "usual = usual_claims_bytes(iss, aud, expires, not_before, issued_at, token_id, access)",
     "usual = None"),
    # The name of a private scratch directory, deleted when the check ends.
    ("ledger/_sqlite_wal",
     'with tempfile.TemporaryDirectory(prefix="trunkkey-wal-check-", dir=scratch) as tmp:',
     'with tempfile.TemporaryDirectory(prefix="XXtrunkkey-wal-check-XX", dir=scratch) as tmp:'),
    # The size of a cache of a pure function (the protected header of an alg,
    # typ and kid): only memory and speed differ.
    ("cose", "@functools.lru_cache(maxsize=1024)", "@functools.lru_cache(maxsize=1025)"),
    # A timing default: no test waits five seconds on a lock.
    ("ledger/sqlite",
     "cls, path: str | os.PathLike[str], *, now: int, busy_timeout_ms: int = 5000",
     "cls, path: str | os.PathLike[str], *, now: int, busy_timeout_ms: int = 5001"),
    # A WAL copy that cannot be written takes the fallback that counts the
    # same frames in Python (test_without_room_for_a_scratch_copy_...).
    ("ledger/_sqlite_wal", 'Path(f"{copy}-wal").write_bytes(wal)',
     'Path(f"XX{copy}-walXX").write_bytes(wal)'),
)

#: Registered through ``-p`` so it exists before conftest.py picks a profile;
#: ``--hypothesis-profile`` then overrides conftest's choice.
_PROFILE_PLUGIN = '''\
from hypothesis import HealthCheck, settings

settings.register_profile(
    "mutation", max_examples=15, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)
'''

#: Copied into each module's private tree; everything else is left out.
_SKIP = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.pyc", ".hypothesis", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", "*.egg-info", "build", "dist",
)


@dataclass(slots=True)
class Mutant:
    line: int
    diff: str
    source: str


@dataclass(slots=True)
class ModuleResult:
    module: str
    total: int = 0
    equivalent: int = 0
    tested: int = 0
    killed: int = 0
    timeouts: int = 0
    survivors: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    problem: str = ""

    @property
    def score(self) -> float:
        return 100.0 * (self.killed + self.timeouts) / self.tested if self.tested else 0.0


def _copy_repo(workdir: Path) -> None:
    shutil.copytree(REPO, workdir, ignore=_SKIP)
    (workdir / "_mutation_profile.py").write_text(_PROFILE_PLUGIN)


def _test_files(workdir: Path, patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The selection, and the patterns that match no file (a stale ``MODULES``)."""
    found: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        matches = sorted(str(p.relative_to(workdir)) for p in (workdir / "tests").glob(pattern))
        found += matches
        if not matches:
            unmatched.append(pattern)
    return found, unmatched


def _pytest_args(tests: list[str]) -> list[str]:
    # Preloaded plugins (hypothesis) cannot be assertion-rewritten again: say so quietly.
    return ["-x", "-q", "-p", "no:cacheprovider", "-p", "_mutation_profile",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            "--hypothesis-profile=mutation", *tests]


def _hermetic(env: dict[str, str]) -> None:
    """The same local, fast selection in CI as on a laptop.

    Without ``CI`` absent servers and vectors skip instead of failing; without
    the server URLs and sizes CI exports, the ledger tests do not run against
    Redis and PostgreSQL (their mutants are in-process code) nor at CI's size.
    """
    for name in [n for n in env if n == "CI" or n.startswith("TRUNKKEY_")]:
        if name != "TRUNKKEY_VECTORS":
            del env[name]


def _pytest(workdir: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run the selection in a fresh process; ``fork`` mode skips re-importing libraries."""
    if _FORK:
        return _pytest_forked(workdir, tests, timeout)
    env = dict(os.environ)
    _hermetic(env)
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
            env = dict(os.environ)
            _hermetic(env)
            os.environ.clear()
            os.environ.update(env, PYTHONDONTWRITEBYTECODE="1")
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


class _NoAnnotations(ast.NodeTransformer):
    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AnnAssign:
        node.annotation = ast.Constant(None)
        self.generic_visit(node)
        return node


def _without_annotations(source: str) -> str:
    return ast.dump(_NoAnnotations().visit(ast.parse(source)))


def _annotation_only(stripped_original: str | None, mutated: str) -> bool:
    """Whether the mutant changes nothing but annotations.

    Under ``from __future__ import annotations`` an annotation is a string
    nobody evaluates (nothing in the package calls ``get_type_hints``), so
    ``X | None`` -> ``X & None`` cannot change behaviour. ``stripped_original``
    is None for a module without that import: its annotations are evaluated.
    """
    return stripped_original is not None and _without_annotations(mutated) == stripped_original


def _known_equivalent(module: str, diff: str) -> bool:
    before = "\n".join(x[1:].strip() for x in diff.splitlines() if x.startswith("-"))
    after = "\n".join(x[1:].strip() for x in diff.splitlines() if x.startswith("+"))
    return (module, before, after) in EQUIVALENT


def _mutants(
    module: str, target: Path, original: str, ids: list[Any], *, result: ModuleResult,
    limit: int | None,
) -> Iterator[Mutant]:
    """Yield up to ``limit`` mutants from ``ids`` in order, skipping equivalent ones."""
    import mutmut  # noqa: PLC0415 -- optional tool, only needed here

    future = "from __future__ import annotations" in original
    stripped = _without_annotations(original) if future else None
    given = 0
    for mutation_id in ids:
        if limit is not None and given >= limit:
            return
        mutated, count = mutmut.mutate(
            mutmut.Context(source=original, mutation_id=mutation_id, filename=str(target))
        )
        if count != 1 or mutated == original:
            continue
        diff = _diff(original, mutated)
        if _annotation_only(stripped, mutated) or _known_equivalent(module, diff):
            result.equivalent += 1
            continue
        given += 1
        yield Mutant(mutation_id.line_number + 1, diff, mutated)


def _choose(
    module: str, target: Path, original: str, result: ModuleResult, *, sample: int | None,
    seed: int, retest: dict[str, Any] | None,
) -> list[Mutant]:
    """The mutants to run: all, a seeded sample, or an earlier run's survivors.

    The sample is the seeded shuffle of every mutant id in source order, cut
    after ``sample`` non-equivalent ones: the same source and seed always
    give the same mutants, and each module draws its own.
    """
    import mutmut  # noqa: PLC0415 -- optional tool, only needed here

    ids = mutmut.list_mutations(mutmut.Context(source=original, filename=str(target)))
    ids.sort(key=lambda i: (i.line_number, i.index, i.line))
    result.total = len(ids)
    if retest is None:
        if sample is not None:
            random.Random(f"{seed}:{module}").shuffle(ids)  # noqa: S311 -- sampling
        return list(_mutants(module, target, original, ids, result=result, limit=sample))
    wanted = {(int(s["line"]), str(s["diff"])) for s in retest["survivors"]}
    every = _mutants(module, target, original, ids, result=result, limit=None)
    keyed = {(m.line, m.diff): m for m in every}
    result.equivalent = 0
    result.killed = int(retest["killed"])
    result.timeouts = int(retest["timeouts"])
    result.tested = result.killed + result.timeouts
    # A survivor the source no longer produces (the file changed) stays a survivor.
    for line, diff in sorted(wanted - keyed.keys()):
        result.tested += 1
        result.survivors.append({"line": line, "diff": diff, "note": "source changed"})
    return [keyed[k] for k in sorted(wanted & keyed.keys())]


def _run_mutants(
    workdir: Path, target: Path, original: str, tests: list[str], mutants: list[Mutant], *,
    result: ModuleResult, limit: float, budget: float | None,
) -> None:
    start = time.monotonic()
    try:
        for mutant in mutants:
            if budget is not None and time.monotonic() - start > budget:
                result.problem = f"time budget of {budget:.0f}s spent after {result.tested}"
                print(f"  {result.module}: {result.problem}; stopping", flush=True)
                break
            target.write_text(mutant.source)
            try:
                outcome, _ = _pytest(workdir, tests, timeout=limit)
            finally:
                target.write_text(original)
            result.tested += 1
            if outcome == "timeout":
                result.timeouts += 1
            elif outcome == "passed":
                result.survivors.append({"line": mutant.line, "diff": mutant.diff})
                print(f"  survived at line {mutant.line}:\n{mutant.diff}", flush=True)
            else:
                result.killed += 1
            if result.tested % 25 == 0:
                print(f"  {result.module}: {result.tested}/{len(mutants)} tested, "
                      f"{len(result.survivors)} survived", flush=True)
    finally:
        target.write_text(original)


def run_module(
    module: str, workdir: Path, *, sample: int | None, seed: int, budget: float | None,
    retest: dict[str, Any] | None = None,
) -> ModuleResult:
    """Mutate ``module`` and run its tests per mutant.

    With ``retest`` (one module's entry from an earlier ``--json``), only that
    run's survivors are tried again, and its killed count is carried over:
    the way to score new tests without re-running every mutant.
    """
    result = ModuleResult(module=module)
    start = time.monotonic()
    target = workdir / "src" / "trunkkey" / f"{module}.py"
    tests, unmatched = _test_files(workdir, MODULES[module])
    if not target.exists():
        result.problem = f"no src/trunkkey/{module}.py: update MODULES"
    elif unmatched:
        result.problem = f"tests/{', tests/'.join(unmatched)} match no file: update MODULES"
    if result.problem:
        print(f"{module}: {result.problem}", flush=True)
        return result
    original = target.read_text()
    lines = {line.strip() for line in original.splitlines()}
    for _, before, _ in [e for e in EQUIVALENT if e[0] == module]:
        if not set(before.splitlines()) <= lines:
            print(f"{module}: EQUIVALENT entry {before!r} matches no line now; drop it")
    mutants = _choose(module, target, original, result, sample=sample, seed=seed,
                      retest=retest)
    status, baseline = _pytest(workdir, tests, timeout=600)
    if status != "passed":
        result.problem = f"tests fail before mutation ({status})"
        print(f"{module}: {result.problem}; module not tested", flush=True)
        return result
    print(f"{module}: {len(mutants)} of {result.total} mutants "
          f"({result.equivalent} equivalent skipped), baseline {baseline:.1f}s, "
          f"tests: {' '.join(tests)}", flush=True)
    _run_mutants(workdir, target, original, tests, mutants, result=result,
                 limit=3 * baseline + 10, budget=budget)
    result.seconds = round(time.monotonic() - start, 1)
    return result


def _report(results: list[ModuleResult], threshold: float, seconds: float) -> bool:
    """Print the table and every survivor; whether the run passes."""
    print(f"\n{'module':15s} {'mutants':>7s} {'equiv':>5s} {'tested':>6s} {'killed':>6s} "
          f"{'timeout':>7s} {'survived':>8s} {'score':>6s} {'seconds':>7s}")
    failing: list[str] = []
    for r in results:
        ok = not r.problem and r.tested > 0 and r.score >= threshold
        if not ok:
            failing.append(r.module)
        note = f"  FAIL: {r.problem}" if r.problem else ("" if ok else "  FAIL")
        print(f"{r.module:15s} {r.total:7d} {r.equivalent:5d} {r.tested:6d} {r.killed:6d} "
              f"{r.timeouts:7d} {len(r.survivors):8d} {r.score:5.1f}% {r.seconds:7.1f}{note}")
    tested = sum(r.tested for r in results)
    killed = sum(r.killed + r.timeouts for r in results)
    print(f"{'all':15s} {'':7s} {'':5s} {tested:6d} {killed:6d} {'':7s} {tested - killed:8d} "
          f"{100.0 * killed / tested if tested else 0.0:5.1f}% {seconds:7.1f}")
    survivors = [(r.module, s) for r in results for s in r.survivors]
    if survivors:
        print("\nSurvivors (kill each with a test, or add it to EQUIVALENT with its reason):")
        for module, s in survivors:
            print(f"src/trunkkey/{module}.py:{s['line']}\n{s['diff']}", end="")
    if failing:
        print(f"\nmutation: FAILED for {', '.join(failing)}: each module must be tested "
              f"in full and have {threshold:g} % of its mutants killed")
    else:
        print(f"\nmutation: every module at or above {threshold:g} % killed")
    return not failing


def _one_module(
    module: str, base: Path, args: argparse.Namespace, retest: dict[str, Any] | None,
) -> ModuleResult:
    workdir = base / module.replace("/", "-")
    if workdir.exists():
        shutil.rmtree(workdir)
    _copy_repo(workdir)
    return run_module(module, workdir, sample=args.sample, seed=args.seed,
                      budget=args.budget, retest=retest)


def _without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{n}=" for n in names)):
            kept.append(arg)
    return kept


def _in_parallel(modules: list[str], base: Path, argv: list[str], jobs: int) -> list[ModuleResult]:
    """Each module in a child run of this script, ``jobs`` at a time.

    A child per module (not per core) keeps the sharing fair: whichever
    finishes first takes the next module. Each child's output is printed
    whole when it ends, so the log reads module by module.
    """
    common = _without_options(argv, ("--module", "--json", "--jobs", "--workdir"))
    # The longest modules first, so none starts last and runs alone; source
    # size is the rough measure of a module's share.
    waiting = sorted(modules, key=lambda m: -_source_size(m))
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    results: dict[str, ModuleResult] = {}
    while waiting or running:
        while waiting and len(running) < jobs:
            module = waiting.pop(0)
            name = module.replace("/", "-")
            out = base / f"{name}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *common, "--module", module,
                   "--json", str(out), "--workdir", str(base / "w"), "--threshold", "0"]
            with (base / f"{name}.log").open("wb") as log:
                running.append((module, subprocess.Popen(  # noqa: S603 -- this script again
                    cmd, stdout=log, stderr=subprocess.STDOUT), out))
        time.sleep(0.1)
        for entry in [e for e in running if e[1].poll() is not None]:
            running.remove(entry)
            module, _, out = entry
            name = module.replace("/", "-")
            print((base / f"{name}.log").read_text().split("\n\nmodule ")[0].rstrip(), flush=True)
            results[module] = _load_result(module, out)
    return [results[m] for m in modules]


def _source_size(module: str) -> int:
    path = REPO / "src" / "trunkkey" / f"{module}.py"
    return path.stat().st_size if path.exists() else 0


def _load_result(module: str, path: Path) -> ModuleResult:
    if not path.exists():
        return ModuleResult(module=module, problem="the module's run crashed")
    data = json.loads(path.read_text())[0]
    return ModuleResult(**{k: data[k] for k in (
        "module", "total", "equivalent", "tested", "killed", "timeouts", "survivors",
        "seconds", "problem")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES))
    parser.add_argument("--sample", type=int, help="test N seeded mutants per module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float,
                        help="seconds per module; a module that spends it fails the run")
    parser.add_argument("--threshold", type=float, default=90.0,
                        help="percent of each module's mutants to kill")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the private copy here")
    parser.add_argument("--retest", type=Path,
                        help="re-run only the survivors recorded in this earlier --json")
    parser.add_argument("--jobs", type=int, default=1,
                        help="modules run at once, each in its own process (one per core)")
    parser.add_argument("--no-fork", action="store_true",
                        help="start a new interpreter per mutant instead of forking")
    args = parser.parse_args(argv)
    global _FORK  # noqa: PLW0603 -- one switch for the whole run
    _FORK = _FORK and not args.no_fork
    if _FORK and args.jobs == 1:
        _preload()
    previous: dict[str, dict[str, Any]] = {}
    if args.retest:
        previous = {r["module"]: r for r in json.loads(args.retest.read_text())}
    modules = args.module or (list(previous) if previous else list(MODULES))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trunkkey-mutation-") as tmp:
        base = args.workdir or Path(tmp)
        if args.jobs > 1:
            results = _in_parallel(modules, base, argv if argv is not None else sys.argv[1:],
                                   args.jobs)
        else:
            results = [_one_module(m, base, args, previous.get(m)) for m in modules]
    passed = _report(results, args.threshold, time.monotonic() - started)
    if args.json:
        args.json.write_text(json.dumps(
            [{**{k: getattr(r, k) for k in ("module", "total", "equivalent", "tested",
                                           "killed", "timeouts", "survivors", "seconds",
                                           "problem")},
              "score": round(r.score, 1)} for r in results],
            indent=2,
        ))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
