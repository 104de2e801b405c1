"""``log verify|report|demo HISTORY``: the owner checks the car's access history.

``HISTORY`` is the JSON export of the backend's copy
(:meth:`trunkkey.CheckpointStore.export`): every checkpoint the car signed,
every entry, and the delivery receipts. Only the car's public key is
trusted. ``verify`` says in plain words what was proven and what was not
(exit 0 only if everything was); ``report`` writes one self-contained HTML
page with a timeline of every attempt. ``demo`` writes the history of a
simulated car (and its public key) to try the other two on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audit import Audit, HistoryExport, audit_log
from ..checkpoint import LogEvidence
from ..errors import DecodeError, SignatureError
from ..geo import Location
from ..keys import SigningKey
from ..vehicle.receipt import verify_receipt
from ._io import EXIT_DENIED, EXIT_OK, CliError, Command, Output, load_public_key
from ._report import render_report

#: A history export can hold years of entries; far below any memory limit.
MAX_HISTORY_BYTES = 64 * 1024 * 1024


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("operation", choices=("verify", "report", "demo"),
                   help="verify: check it; report: write an HTML page; demo: write a sample")
    p.add_argument("history", metavar="HISTORY",
                   help="the car's history export (JSON); demo: where to write one")
    p.add_argument("--vehicle-key", required=True, metavar="PEM",
                   help="the car's public key, from the carmaker; demo: where to write it")
    p.add_argument("--out", metavar="HTML", help="report: where to write the page")


def _read(path_text: str) -> HistoryExport:
    path = Path(path_text)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_HISTORY_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read history {path_text!r}: {exc.strerror}") from None
    if len(data) > MAX_HISTORY_BYTES:
        raise CliError(f"history {path_text!r} is larger than {MAX_HISTORY_BYTES} bytes")
    try:
        return HistoryExport.from_json(data.decode("utf-8"))
    except (UnicodeDecodeError, DecodeError) as exc:
        raise CliError(f"history {path_text!r} is not a history export ({exc})") from None


def run_audit(history: HistoryExport, key_path: str) -> tuple[Audit, int]:
    """The audit of ``history``, and how many receipts could not be read."""
    key = load_public_key(key_path)
    evidence: list[LogEvidence] = []
    unreadable = 0
    for data in history.receipts:
        try:
            receipt = verify_receipt(data, key, vehicle_id=history.vehicle_id)
        except (DecodeError, SignatureError):
            unreadable += 1
            continue
        if receipt.log is not None:
            evidence.append(receipt.log)
    audit = audit_log(
        vehicle_id=history.vehicle_id, vehicle_key=key, checkpoints=history.checkpoints,
        entries=history.entries, evidence=evidence,
    )
    return audit, unreadable


def _demo(history_path: str, key_path: str, out: Output) -> int:
    """A simulated car's day: two deliveries, two refusals, the log gossiped home."""
    # Imported here: the command line must not load the simulation (and
    # hypothesis with it) for every other command.
    from ..testing.vehicle import World, courier_gossip, courier_present  # noqa: PLC0415

    world = World(start=1_780_000_000, ledger="memory")
    car = world.enrol_car("VIN-DEMO-0001")
    fence = world.park(car, Location.from_degrees(48.137154, 11.576124))
    courier = SigningKey.generate()
    for _ in range(2):
        token = world.mint(car, courier=courier, geofence=fence)
        courier_present(car, token, courier)
        world.advance(40)
        car.unit.trunk_closed()
        courier_present(car, token, courier)  # the same code again: refused
        world.advance(3600)
    courier_gossip(world, car)
    export = world.history.export(car.vehicle_id, car.unit.receipts)
    Path(history_path).write_text(export.to_json(), encoding="utf-8")
    Path(key_path).write_bytes(car.unit.public_key.to_pem())
    out.data({"history": history_path, "vehicle_key": key_path, "entries": len(export.entries)})
    out.line(f"wrote {history_path} ({len(export.entries)} entries) and {key_path}")
    return EXIT_OK


def _log(args: argparse.Namespace, out: Output) -> int:
    if args.operation == "demo":
        return _demo(args.history, args.vehicle_key, out)
    history = _read(args.history)
    audit, unreadable = run_audit(history, args.vehicle_key)
    if args.operation == "report":
        if not args.out:
            raise CliError("report needs --out FILE.html")
        Path(args.out).write_text(render_report(audit), encoding="utf-8")
        out.data({"report": args.out, "ok": audit.ok and not unreadable})
        out.line(f"wrote {args.out}: {len(audit.entries)} entries, "
                 f"{'all proven' if audit.ok else 'NOT all proven'}")
        return EXIT_OK
    out.data({
        "vehicle_id": audit.vehicle_id, "ok": audit.ok and not unreadable,
        "entries": len(audit.entries),
        "findings": [{"proven": f.proven, "text": f.text,
                      "reason": None if f.reason is None else f.reason.value}
                     for f in audit.findings],
        "unreadable_receipts": unreadable,
    })
    out.line(f"history of {audit.vehicle_id}: {len(audit.entries)} entries, "
             f"{len(audit.checkpoints)} checkpoint(s)")
    for finding in audit.findings:
        mark = "proven:    " if finding.proven else "NOT proven:"
        code = "" if finding.reason is None else f" [{finding.reason.value}]"
        out.line(f"  {mark} {finding.text}{code}")
    if unreadable:
        out.line(f"  NOT proven: {unreadable} receipts are not signed by this car")
    return EXIT_OK if audit.ok and not unreadable else EXIT_DENIED


COMMANDS = (
    Command(
        name="log",
        help="'log verify|report|demo HISTORY --vehicle-key PEM': check a car's access history",
        examples=(
            "trunkkey log demo history.json --vehicle-key car.pub",
            "trunkkey log verify history.json --vehicle-key car.pub",
            "trunkkey log report history.json --vehicle-key car.pub --out history.html",
        ),
        configure=_args,
        run=_log,
    ),
)
