"""SIGKILL a vehicle unit mid-delivery; no opening without its durable log entry.

    python -m tools.faults.logcrash --rounds 200

Each round forks a child that boots a :class:`~trunkkey.vehicle.VehicleUnit`
over one state directory (SQLite ledger with its journal, time file) and
runs deliveries: challenge, proof, present, close. Its actuator reports
``O<token id>`` to the parent over a pipe at the moment the trunk moves (the
opening), and after each relock the unit's checkpoint as ``C<size> <root>``
(what the car has told the world its log holds). The parent SIGKILLs the
child at a random moment and starts the next round, which reboots over the
same directory. At the end it opens the ledger (whose full check covers the
journal: every row's checksum, no hole) and fails if

* a trunk opening has no ``token_allowed`` entry for its token, or
* a checkpoint the car reported is not a prefix of the final log (an entry
  lost or changed across a kill).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trunkkey import Issuer, Location, ManualClock, SigningKey, TrustedKey, TrustStore, make_proof
from trunkkey.checkpoint import open_checkpoint
from trunkkey.geo import Geofence
from trunkkey.inspect import inspect_unverified
from trunkkey.ledger.sqlite import SqliteLedger
from trunkkey.logentry import EntryKind, decode_entry
from trunkkey.merkle import FrontierTree, leaf_hash
from trunkkey.vehicle import VehicleUnit

VEHICLE = "crash-car"
T0 = 1_800_000_000
#: Simulated seconds each round moves the car's clock on, so a reboot is never behind its floor.
ROUND_SECONDS = 100_000
PLACE = Location.from_degrees(48.137154, 11.576124)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogCrashResult:
    rounds: int
    openings: int
    checkpoints: int
    final_size: int
    openings_without_entry: int
    checkpoints_not_in_log: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.openings_without_entry == 0 and self.checkpoints_not_in_log == 0


@dataclass(frozen=True, slots=True)
class _Keys:
    vehicle: SigningKey
    retailer: SigningKey
    carmaker: SigningKey
    courier: SigningKey


class _Body:
    """The trunk: reports each opening to the parent the moment it moves."""

    def __init__(self, out_fd: int) -> None:
        self.out_fd = out_fd
        self.token = b""

    def open_trunk(self) -> None:
        os.write(self.out_fd, b"O%s\n" % self.token.hex().encode())

    def unlock_doors(self) -> None:
        raise RuntimeError("not in this harness")

    def lock_all(self) -> None:
        pass


def _child(state: Path, keys: _Keys, round_no: int, out_fd: int) -> None:
    clock = ManualClock(T0 + round_no * ROUND_SECONDS)
    body = _Body(out_fd)
    unit = VehicleUnit.boot(
        state, vehicle_id=VEHICLE, vehicle_key=keys.vehicle,
        trust_store=TrustStore([TrustedKey.create(keys.retailer.public_key, "retailer")]),
        carmaker_key=keys.carmaker.public_key, clock=clock, actuator=body, gps=lambda: PLACE,
    )
    issuer = Issuer(keys.retailer, "retailer", clock=clock)
    fence = Geofence(lat_e7=PLACE.lat_e7, lon_e7=PLACE.lon_e7, radius_m=50)
    while True:
        token = issuer.mint(
            vehicle_id=VEHICLE, action="trunk", not_before=clock.now(), expires=clock.now() + 600,
            geofence=fence, courier_key=keys.courier.public_key,
        )
        challenge = unit.challenge()
        proof = make_proof(keys.courier, token=token, vehicle_id=VEHICLE, challenge=challenge)
        body.token = inspect_unverified(token).claims.token_id
        unit.present(token, action="trunk", proof=proof, challenge=challenge)
        clock.advance(5)
        unit.trunk_closed()
        checkpoint = open_checkpoint(unit.checkpoint(), keys.vehicle.public_key)
        os.write(out_fd, b"C%d %s\n" % (checkpoint.size, checkpoint.root.hex().encode()))
        clock.advance(5)


def _round(state: Path, keys: _Keys, round_no: int, rng: random.Random) -> list[bytes]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            _child(state, keys, round_no, write_fd)
        except BaseException:  # noqa: BLE001 -- the child must never return into the caller
            code = 1
        os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + rng.choice([0.0, 0.002, 0.01, rng.uniform(0, 0.15)])
    data = bytearray()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    return [line for line in bytes(data).split(b"\n") if line]


def run_log_crash(rounds: int, *, seed: int | None = None) -> LogCrashResult:
    rng = random.Random(seed)  # noqa: S311 -- picks kill moments, not secrets
    started = time.perf_counter()
    keys = _Keys(SigningKey.generate(), SigningKey.generate(), SigningKey.generate(),
                 SigningKey.generate())
    opened: list[bytes] = []
    reported: list[tuple[int, bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "car"
        for round_no in range(rounds):
            for line in _round(state, keys, round_no, rng):
                if line[:1] == b"O":
                    opened.append(bytes.fromhex(line[1:].decode()))
                else:
                    size, root = line[1:].split(b" ")
                    reported.append((int(size), bytes.fromhex(root.decode())))
        ledger = SqliteLedger(state / "ledger.sqlite")  # its full check covers the journal
        entries = ledger.journal.entries(0)
        ledger.close()
    allowed = {decode_entry(e).token_id for e in entries
               if decode_entry(e).kind is EntryKind.TOKEN_ALLOWED}
    tree = FrontierTree()
    for entry in entries:
        tree.append(leaf_hash(entry))
    lost = sum(1 for size, root in reported if size > tree.size or tree.root(size) != root)
    return LogCrashResult(
        rounds=rounds, openings=len(opened), checkpoints=len(reported), final_size=tree.size,
        openings_without_entry=sum(1 for token in opened if token not in allowed),
        checkpoints_not_in_log=lost, seconds=round(time.perf_counter() - started, 2),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    result = run_log_crash(args.rounds, seed=args.seed)
    print(json.dumps(asdict(result) | {"ok": result.ok}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
