"""Cold start: what a car that wakes for one decision pays, beside its dependencies.

A telematics unit sleeps and wakes when a courier knocks; the ``trunkkey``
command starts a process per call. What the courier waits for is the whole
process, not the verification inside it, so every row here is one fresh
interpreter (``sys.executable -c ...``), timed from start to exit, with its
peak resident memory read from the operating system (``os.wait4``'s
``ru_maxrss`` for that one child). The rows run interleaved, one of each per
round, so a noisy neighbour on a shared machine costs every row a round rather
than skewing one ratio; each figure is the median of ``--runs`` rounds. The
child's CPU time (user + system, from the same ``wait4``) is reported beside
its wall time: on a machine shared with other work it moves far less than
wall time does, though it leaves out waiting for the disk. The targets are
on wall time, as the issue sets them.

Every row is set beside its floor: what the same process costs with only
trunkkey's dependencies imported (libsodium through PyNaCl, cbor2, sqlite3;
plus ``cryptography``'s EC module for a P-256 key). The targets are those of
issue 18: wake to one decision within 1.5x the floor, peak memory within 1.3x.
That floor does no disk work, while a decision opens its ledger file and
commits one spend with an fsync; so one more row, the *disk floor*, opens a
SQLite file with the ledger's pragmas and commits one row, and the decisions
are also set beside it (for information: the targets stay the issue's).

trunkkey's bytecode is compiled before measuring, as ``pip install`` does
for every installed package (the floor's modules included): a development
environment with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile
trunkkey's source afresh in every child, a cost no installed car pays.

Tokens, keys, chains and ledgers are made by this process beforehand and
handed to the children in files; each timed child reads its own token, so no
decision is a replay. trunkkey is imported from the environment, as a car
would: run with the package installed (or ``PYTHONPATH=src``).

    python -m tools.bench.cold_start             # 15 rounds, about half a minute
    python -m tools.bench.cold_start --runs 1    # smoke run (used by the tests)
    python -m tools.bench.cold_start --json tools/bench/results/cold_start.json
                                                 # ... and the figures for tools.gen.plots
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

VEHICLE = "1HGCM82633A004352"
ISSUER = "amazon"
DAY = 86_400

# What each child runs. Files arrive as sys.argv[1:] (a directory, then the
# run's number), read with open() so that no row pays for pathlib.
_VERIFY_PLAIN = """
import sys
from trunkkey import SqliteLedger, SystemClock, TrustedKey, TrustStore, VerificationKey, Verifier
here, run = sys.argv[1], sys.argv[2]
with open(here + "/issuer.cose", "rb") as f:
    key = VerificationKey.from_cose_key(f.read())
with open(here + "/token-" + run, "rb") as f:
    token = f.read()
with SqliteLedger(here + "/ledger.sqlite") as ledger:
    verifier = Verifier(trust_store=TrustStore([TrustedKey.create(key, "%(issuer)s")]),
                        ledger=ledger, clock=SystemClock())
    decision = verifier.verify(token, vehicle_id="%(vehicle)s", action="trunk")
sys.exit(0 if decision.allowed else "denied: " + decision.reason.value)
"""

# A unit's first boot: no ledger file yet, so it is created (schema, fsyncs).
_VERIFY_FIRST = _VERIFY_PLAIN.replace('here + "/ledger.sqlite"', 'here + "/first-" + run')

_VERIFY_CHAIN = """
import sys
from trunkkey import SigningKey, SqliteLedger, SystemClock, TrustStore, VerificationKey, Verifier
from trunkkey.consent import ConsentVerifier, RevocationState, RootKey, VehicleAnchors
here, run = sys.argv[1], sys.argv[2]
with open(here + "/root.cose", "rb") as f:
    root = VerificationKey.from_cose_key(f.read())
anchors = VehicleAnchors(vehicle_id="%(vehicle)s", vehicle_key=SigningKey.load(here + "/car.key"),
                         roots=[RootKey(key=root)])
consent = ConsentVerifier(anchors=anchors, revocations=RevocationState())
with open(here + "/chain", "rb") as f:
    chain = f.read()
with open(here + "/token-" + run, "rb") as f:
    token = f.read()
with SqliteLedger(here + "/ledger.sqlite") as ledger:
    verifier = Verifier(trust_store=TrustStore(), ledger=ledger, clock=SystemClock(),
                        consent=consent)
    decision = verifier.verify(token, vehicle_id="%(vehicle)s", action="trunk", chain=chain)
sys.exit(0 if decision.allowed else "denied: " + decision.reason.value)
"""

_CLI = """
import sys
from trunkkey.cli import main
here, run = sys.argv[1], sys.argv[2]
with open(here + "/token-" + run, "rb") as f:
    token = f.read().hex()
sys.exit(main(["verify", token, "--trust", here + "/issuer.cose:%(issuer)s",
               "--vehicle", "%(vehicle)s", "--action", "trunk",
               "--ledger", here + "/ledger.sqlite"]))
"""

FLOOR = "import nacl.bindings, cbor2, sqlite3"
# The disk work of a decision without trunkkey: open an existing WAL file as
# the ledger does (URI, mode=rw, its pragmas) and commit one row durably.
FLOOR_DISK = "\n".join((
    FLOOR,
    "import sys, time",
    "conn = sqlite3.connect('file:' + sys.argv[1] + '/floor.sqlite?mode=rw', uri=True,",
    "                       isolation_level=None)",
    "for pragma in ('synchronous = FULL', 'journal_size_limit = 1048576',",
    "               'wal_autocheckpoint = 256', 'journal_mode'):",
    "    conn.execute('PRAGMA ' + pragma).fetchall()",
    "conn.execute('BEGIN IMMEDIATE')",
    "conn.execute('INSERT INTO spent VALUES (?, ?)', (sys.argv[2].encode(), int(time.time())))",
    "conn.execute('COMMIT')",
    "conn.close()",
))
FLOOR_EC = FLOOR + "; import cryptography.hazmat.primitives.asymmetric.ec"


@dataclass(frozen=True, slots=True)
class Row:
    """One kind of process: what it runs, in which setup directory, beside which floor."""

    key: str
    label: str
    code: str
    setup: str | None = None  # the directory (under the work dir) its files live in
    floor: str | None = None  # the key of the row it is a ratio of
    time_target: float | None = None
    memory_target: float | None = None


_FILL = {"issuer": ISSUER, "vehicle": VEHICLE}

ROWS: tuple[Row, ...] = (
    Row("bare", "bare interpreter (python -c pass)", "pass"),
    Row("floor", "floor: import nacl.bindings, cbor2, sqlite3", FLOOR, floor="bare"),
    Row("floor_ec", "floor + cryptography's EC module", FLOOR_EC, floor="bare"),
    Row("floor_disk", "disk floor: the floor + open a SQLite WAL file, commit one row",
        FLOOR_DISK, setup="floor_disk", floor="floor"),
    Row("import", "import trunkkey", "import trunkkey", floor="floor"),
    Row("ed25519", "wake -> Ed25519 key -> SQLite ledger -> one decision",
        _VERIFY_PLAIN % _FILL, setup="ed25519", floor="floor",
        time_target=1.5, memory_target=1.3),
    Row("first_boot", "the same, first boot: the ledger file is created",
        _VERIFY_FIRST % _FILL, setup="first_boot", floor="floor"),
    Row("chain", "the same, token under a 2-link consent chain",
        _VERIFY_CHAIN % _FILL, setup="chain", floor="floor"),
    Row("p256", "the same, P-256 key", _VERIFY_PLAIN % _FILL, setup="p256",
        floor="floor_ec", time_target=1.5, memory_target=1.3),
    Row("cli", "trunkkey verify, end to end (Ed25519, SQLite)", _CLI % _FILL,
        setup="cli", floor="floor"),
)


# What bounds the decision, with --ladder: the floor plus the standard-library
# module the core's frozen dataclasses need (dataclasses imports inspect, and
# with it ast, dis and tokenize), then plus as many frozen dataclasses as a
# decision defines (each generates and compiles its methods' source), then
# plus every import the decision makes, doing nothing with them.
_DATACLASSES = FLOOR + "; import dataclasses"
_THIRTEEN = _DATACLASSES + "\n" + "".join(
    f"@dataclasses.dataclass(frozen=True, slots=True)\n"
    f"class C{i}:\n    a: int\n    b: bytes\n    c: str | None = None\n"
    for i in range(13)
)
_IMPORTS_ONLY = ("from trunkkey import SqliteLedger, SystemClock, TrustedKey, TrustStore, "
                 "VerificationKey, Verifier")

LADDER: tuple[Row, ...] = (
    Row("floor_dataclasses", "ladder: the floor + import dataclasses", _DATACLASSES,
        floor="floor"),
    Row("floor_13", "ladder: ... + 13 frozen dataclasses defined", _THIRTEEN, floor="floor"),
    Row("imports_only", "ladder: a decision's imports, no work", _IMPORTS_ONLY, floor="floor"),
)


# -- setup: made here, read by the children ------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _plain_setup(where: Path, algorithm_name: str, runs: int) -> None:
    from trunkkey import Action, Algorithm, Issuer, SigningKey, SqliteLedger

    where.mkdir()
    key = SigningKey.generate(Algorithm[algorithm_name])
    _write(where / "issuer.cose", key.public_key.to_cose_key())
    issuer = Issuer(key, ISSUER)
    now = int(time.time())
    for run in range(runs):
        token = issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, not_before=now - 60,
                            expires=now + 3600)
        _write(where / f"token-{run}", token)
    # The car's ledger exists before it sleeps: a child opens it, never creates it.
    SqliteLedger(where / "ledger.sqlite").close()


def _chain_setup(where: Path, runs: int) -> None:
    from trunkkey import Action, Issuer, Purpose, SigningKey, SqliteLedger
    from trunkkey.consent import (
        access_mask,
        encode_chain,
        make_grant,
        root_scope,
        sign_delegation,
        sign_root_grant,
    )

    where.mkdir()
    root, retailer, carrier, car = (SigningKey.generate() for _ in range(4))
    _write(where / "root.cose", root.public_key.to_cose_key())
    _write(where / "car.key", car.private_cose_key())
    now = int(time.time())
    access = access_mask([Action.TRUNK], [Purpose.DELIVERY])
    first = make_grant(grantee=retailer.public_key, grantee_name="retailer", access=access,
                       not_before=now - DAY, expires=now + 30 * DAY, depth=1,
                       vehicle_ids=[VEHICLE])
    second = make_grant(grantee=carrier.public_key, grantee_name="carrier", access=access,
                        not_before=now - DAY, expires=now + 7 * DAY)
    scope = root_scope(first)
    if isinstance(scope, str):  # a refusal: the grant above cannot be delegated
        raise RuntimeError(scope)
    chain = encode_chain([sign_root_grant(root, first), sign_delegation(retailer, scope, second)])
    _write(where / "chain", chain)
    issuer = Issuer(carrier, "carrier")
    for run in range(runs):
        token = issuer.mint(vehicle_id=VEHICLE, action=Action.TRUNK, purpose=Purpose.DELIVERY,
                            not_before=now - 60, expires=now + 3600)
        _write(where / f"token-{run}", token)
    SqliteLedger(where / "ledger.sqlite").close()


def _disk_floor_setup(where: Path) -> None:
    import sqlite3

    where.mkdir()
    conn = sqlite3.connect(where / "floor.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE spent (token_id BLOB PRIMARY KEY, keep_until INTEGER) "
                 "WITHOUT ROWID")
    conn.close()


def compile_trunkkey() -> bool:
    """Write trunkkey's bytecode, as installing it does; False if it cannot be written."""
    import compileall

    import trunkkey

    return bool(compileall.compile_dir(Path(trunkkey.__file__).parent, quiet=1))


def prepare(work: Path, runs: int) -> None:
    """Every file the children read, for ``runs`` rounds (one token per round)."""
    _disk_floor_setup(work / "floor_disk")
    _plain_setup(work / "ed25519", "EDDSA", runs)
    _plain_setup(work / "p256", "ES256", runs)
    _plain_setup(work / "cli", "EDDSA", runs)
    _plain_setup(work / "first_boot", "EDDSA", runs)
    _chain_setup(work / "chain", runs)


# -- measuring ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    seconds: float
    peak_kib: int
    cpu_seconds: float = 0.0  # user + system time of the child alone


# A child's ru_maxrss counts the memory it was forked from as well as its own:
# spawned from this process (tens of MiB, with trunkkey imported for the
# setup), every child would read as at least this big. So the children are
# forked from a launcher that loads nothing (-I -S: no site, only frozen and
# built-in modules), smaller than the bare interpreter it starts. It times
# each child from fork to exit and reads that one child's rusage (wait4).
_LAUNCHER = """
import os, sys, time
for line in sys.stdin:
    fields = [bytes.fromhex(f) for f in line.split()]
    err, argv = fields[0], fields[1:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    print(repr(seconds), usage.ru_maxrss, os.waitstatus_to_exitcode(status),
          repr(usage.ru_utime + usage.ru_stime), flush=True)
"""


class Launcher:
    """The small process every measured child is forked from."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self._process = subprocess.Popen(  # noqa: S603 -- this interpreter, our own code
            [sys.executable, "-I", "-S", "-c", _LAUNCHER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self._process.stdin is None or self._process.stdout is None:
            raise RuntimeError("the launcher has no pipes")
        self._to, self._from = self._process.stdin, self._process.stdout

    def run(self, row: Row, run: int) -> Sample:
        """One fresh interpreter for ``row``: its wall time and its own peak RSS."""
        argv = [sys.executable, "-c", row.code]
        if row.setup is not None:
            argv += [str(self._work / row.setup), str(run)]
        err = self._work / "stderr"
        line = " ".join(os.fsencode(a).hex() for a in [str(err), *argv])
        self._to.write(line + "\n")
        self._to.flush()
        reply = self._from.readline().split()
        if len(reply) != 4:
            raise RuntimeError("the launcher stopped")
        seconds, peak_kib, code = float(reply[0]), int(reply[1]), int(reply[2])
        if code != 0:
            raise RuntimeError(f"{row.key} exited {code}: {err.read_text(errors='replace')}")
        # Linux reports ru_maxrss in KiB (macOS in bytes; the ratios hold either way).
        return Sample(seconds=seconds, peak_kib=peak_kib, cpu_seconds=float(reply[3]))

    def close(self) -> None:
        self._to.close()
        self._process.wait()


def measure(rows: tuple[Row, ...], work: Path, runs: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {row.key: [] for row in rows}
    launcher = Launcher(work)
    try:
        for run in range(runs):
            for row in rows:  # interleaved: one of each per round
                samples[row.key].append(launcher.run(row, run))
    finally:
        launcher.close()
    return samples


@dataclass(frozen=True, slots=True)
class Figure:
    row: Row
    ms: float
    peak_mib: float
    time_ratio: float | None
    memory_ratio: float | None
    cpu_ms: float = 0.0
    cpu_ratio: float | None = None


def summarise(rows: tuple[Row, ...], samples: dict[str, list[Sample]]) -> list[Figure]:
    ms = {k: statistics.median(s.seconds for s in v) * 1e3 for k, v in samples.items()}
    kib = {k: statistics.median(s.peak_kib for s in v) for k, v in samples.items()}
    cpu = {k: statistics.median(s.cpu_seconds for s in v) * 1e3 for k, v in samples.items()}
    return [
        Figure(
            row=row, ms=ms[row.key], peak_mib=kib[row.key] / 1024,
            time_ratio=None if row.floor is None else ms[row.key] / ms[row.floor],
            memory_ratio=None if row.floor is None else kib[row.key] / kib[row.floor],
            cpu_ms=cpu[row.key],
            cpu_ratio=None if row.floor is None else cpu[row.key] / cpu[row.floor],
        )
        for row in rows
    ]


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    labels = {f.row.key: f.row.label for f in figures}
    lines = [
        "| process | wall ms (median) | x its floor | peak RSS MiB | x floor's RSS "
        "| CPU ms | x floor's CPU | floor |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in figures:
        floor = "" if f.row.floor is None else labels[f.row.floor].split(" (")[0]
        lines.append(
            f"| {f.row.label} | {f.ms:.1f} | {_ratio(f.time_ratio)} | {f.peak_mib:.1f} "
            f"| {_ratio(f.memory_ratio)} | {f.cpu_ms:.1f} | {_ratio(f.cpu_ratio)} | {floor} |"
        )
    return "\n".join(lines)


def beside_disk_floor(figures: list[Figure]) -> list[str]:
    """Each Ed25519 decision beside the disk floor: for information, not a target."""
    by_key = {f.row.key: f for f in figures}
    disk = by_key.get("floor_disk")
    if disk is None:
        return []
    return [
        f"beside the disk floor: {f.row.key} {f.ms / disk.ms:.2f}x time, "
        f"{f.peak_mib / disk.peak_mib:.2f}x memory"
        for f in figures if f.row.floor == "floor" and f.row.setup not in (None, "floor_disk")
    ]


def verdicts(figures: list[Figure]) -> list[str]:
    """One line per target: the figure, the bound, and whether it holds."""
    out = []
    for f in figures:
        for what, value, bound in (
            ("wake to decision", f.time_ratio, f.row.time_target),
            ("peak memory", f.memory_ratio, f.row.memory_target),
        ):
            if bound is None or value is None:
                continue
            held = "holds" if value <= bound else "MISSED"
            out.append(f"target {f.row.key}: {what} {value:.2f}x floor <= {bound}x: {held}")
    return out


def as_json(figures: list[Figure], header: str) -> dict[str, object]:
    """The figures as ``tools.gen.plots`` reads them."""
    return {
        "header": header,
        "rows": [
            {"key": f.row.key, "label": f.row.label, "floor": f.row.floor, "ms": f.ms,
             "peak_mib": f.peak_mib, "time_ratio": f.time_ratio,
             "memory_ratio": f.memory_ratio, "cpu_ms": f.cpu_ms, "cpu_ratio": f.cpu_ratio,
             "time_target": f.row.time_target,
             "memory_target": f.row.memory_target}
            for f in figures
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--ladder", action="store_true",
                        help="also the rows that show what bounds a decision's time")
    parser.add_argument("--runs", type=int, default=15,
                        help="rounds of every row; each figure is their median (default 15)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    rows = ROWS + LADDER if args.ladder else ROWS
    compiled = compile_trunkkey()
    with tempfile.TemporaryDirectory(prefix="trunkkey-cold-") as tmp:
        work = Path(tmp)
        prepare(work, args.runs)
        started = time.time()
        load = os.getloadavg()[0]
        samples = measure(rows, work, args.runs)
    figures = summarise(rows, samples)
    header = (f"cold start: {args.runs} round(s), median; Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs, load average {load:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after, {time.time() - started:.0f} s; trunkkey's "
              f"bytecode {'compiled beforehand' if compiled else 'NOT compiled (read-only?)'}")
    print(header)
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(figures, header), indent=1) + "\n")
    print(table(figures))
    for line in beside_disk_floor(figures) + verdicts(figures):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
