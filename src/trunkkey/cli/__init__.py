"""The ``trunkkey`` command: keys, tokens, consent and ledgers from a shell.

Exit codes: 0 success (for ``verify``: access allowed), 1 access denied (or a
simulation that did not go as the story says), 2 bad input or any other error.
Errors are one line on stderr, ``trunkkey: error: ...``, never a traceback.
``trunkkey`` with no command prints the help and exits 2: nothing was done,
so a script whose command went missing must not pass for a success.

The commands are the ``COMMANDS`` of the modules in :data:`GROUPS`, in that
order; a new group of commands is a new module added to that list.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import TrunkkeyError
from . import grants, keys, ledger, log, revocations, simulate, tokens, verify
from ._io import (
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    Command,
    Output,
    Parser,
    examples,
    json_flag,
)

__all__ = ["COMMANDS", "EXIT_DENIED", "EXIT_ERROR", "EXIT_OK", "Command", "build_parser", "main"]

#: Every group of commands, in the order ``--help`` lists them.
GROUPS = (keys, tokens, verify, ledger, simulate, grants, revocations, log)

COMMANDS: tuple[Command, ...] = tuple(cmd for group in GROUPS for cmd in group.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="trunkkey",
        description="One-time trunk access tokens: make keys, mint, inspect and verify tokens.",
        epilog=examples(
            "trunkkey keygen --out issuer.key --public-out issuer.pub",
            "trunkkey mint --key issuer.key --issuer shop.example --vehicle VIN --action trunk "
            "--valid-for 4h",
            "trunkkey verify TOKEN --trust issuer.pub:shop.example --vehicle VIN --action trunk",
            "trunkkey COMMAND --help",
        ) + "\n\nExit status: 0 success or access allowed, 1 access denied, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"trunkkey {__version__}")
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    names: set[str] = set()
    for cmd in COMMANDS:
        if cmd.name in names:
            raise ValueError(f"command {cmd.name!r} is defined twice")
        names.add(cmd.name)
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help,
                           epilog=examples(*cmd.examples) if cmd.examples else None)
        json_flag(p)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (never raises for bad input)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in arguments
    if not [a for a in arguments if a != "--json"]:
        build_parser().print_help(sys.stdout)
        return EXIT_ERROR
    try:
        args = build_parser().parse_args(arguments)
        json_mode = bool(getattr(args, "json", False))
        out = Output(json_mode=json_mode, stdout=sys.stdout)
        result: int = args._run(args, out)
    except (CliError, TrunkkeyError) as exc:
        return _fail(str(exc), json_mode)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return EXIT_ERROR
        return _fail(f"{exc.strerror or type(exc).__name__}", json_mode)
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except Exception as exc:  # noqa: BLE001 -- a command line prints one line, never a traceback
        # The message may quote secret material from deep inside a library: name the type only.
        return _fail(f"unexpected {type(exc).__name__} (please report this)", json_mode)
    return result


def _fail(message: str, json_mode: bool) -> int:
    message = " ".join(message.split())
    print(f"trunkkey: error: {message}", file=sys.stderr)
    if json_mode:
        print(json.dumps({"error": message}), file=sys.stdout)
    return EXIT_ERROR


def run() -> NoReturn:
    sys.exit(main())
