"""``ledger stats|prune|recover``: look after a SQLite replay ledger."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import LedgerCorrupted
from ..ledger import Ledger, MemoryLedger, SqliteLedger
from ._io import EXIT_OK, CliError, Command, Output, parse_time
from ._show import utc


@contextlib.contextmanager
def open_ledger(path_text: str | None, *, create: bool) -> Iterator[Ledger]:
    """The SQLite ledger at ``path_text``, or a memory one that is forgotten on exit."""
    if path_text is None:
        yield MemoryLedger()
        return
    path = Path(path_text)
    if not create and not path.is_file():
        raise CliError(f"no ledger at {path_text!r}")
    ledger = SqliteLedger(path)
    try:
        yield ledger
    finally:
        ledger.close()


def _ledger_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("operation", choices=("stats", "prune", "recover"),
                   help="stats: check and count; prune: drop expired entries; "
                        "recover: move a damaged ledger aside and start afresh")
    p.add_argument("path", metavar="PATH", help="the SQLite ledger file")
    p.add_argument("--at", metavar="TIME", default="now",
                   help="prune: entries kept until before this time; recover: the current "
                        "trusted time (default now)")
    p.add_argument("--limit", type=int, metavar="N", help="prune at most N entries")
    p.add_argument("--force", action="store_true",
                   help="recover: start afresh even though the ledger opens")


def _ledger(args: argparse.Namespace, out: Output) -> int:
    path = Path(args.path)
    if args.limit is not None and args.limit <= 0:
        raise CliError("--limit must be a positive number")
    if args.operation == "recover":
        return _recover(args, path, out)
    with open_ledger(args.path, create=False) as ledger:
        if args.operation == "prune":
            now = parse_time(args.at, "--at")
            removed = ledger.prune(now, limit=args.limit)
            left = ledger.count()
            out.data({"path": str(path), "pruned": removed, "entries": left, "at": now})
            out.line(f"pruned {removed} entries kept until before {utc(now)}; {left} remain")
            return EXIT_OK
        entries = ledger.count()
        floor = ledger.start_floor if isinstance(ledger, SqliteLedger) else 0
    sizes = {
        name: (Path(str(path) + suffix).stat().st_size if Path(str(path) + suffix).exists() else 0)
        for name, suffix in (("file_bytes", ""), ("wal_bytes", "-wal"))
    }
    out.data({"path": str(path), "entries": entries, "start_floor": floor, **sizes})
    out.line(f"ledger:   {path} (SQLite, checked: intact)")
    out.line(f"entries:  {entries} spent tokens (expired ones count until pruned)")
    out.line(f"size:     {sizes['file_bytes']} bytes + {sizes['wal_bytes']} bytes of WAL")
    if floor:
        out.line(f"started:  afresh; refuses tokens issued before {utc(floor)}")
    return EXIT_OK


def _recover(args: argparse.Namespace, path: Path, out: Output) -> int:
    now = parse_time(args.at, "--at")
    if (path.exists() or path.is_symlink()) and not args.force:
        try:
            SqliteLedger(path).close()
        except LedgerCorrupted:
            pass  # what recover is for
        else:
            raise CliError(
                f"the ledger at {str(path)!r} opens and passes its checks: nothing to recover. "
                "Starting afresh refuses every token issued before now; add --force to do it "
                "anyway"
            )
    ledger = SqliteLedger.start_afresh(path, now=now)
    floor, moved = ledger.start_floor, [str(p) for p in ledger.moved_aside]
    ledger.close()
    out.data({"path": str(path), "moved_aside": moved, "start_floor": floor,
              "start_floor_utc": utc(floor)})
    for name in moved:
        out.line(f"moved aside: {name}")
    out.line(f"new ledger:  {path}")
    out.line(f"refuses:     every token issued before {utc(floor)} (issued_before_ledger); "
             "re-issue tokens for open deliveries")
    return EXIT_OK


COMMANDS = (
    Command(
        name="ledger",
        help="'ledger stats|prune|recover PATH' on a SQLite ledger",
        examples=(
            "trunkkey ledger stats car-ledger.db",
            "trunkkey ledger prune car-ledger.db --at now --limit 10000 --json",
            "trunkkey ledger recover car-ledger.db   # a damaged ledger: start afresh",
        ),
        configure=_ledger_args,
        run=_ledger,
    ),
)
