"""The ``trunkkey`` command: keys, tokens, consent and ledgers from a shell.

Exit codes: 0 success (for ``verify``: access allowed), 1 access denied (or a
simulation that did not go as the story says), 2 bad input or any other error.
Errors are one line on stderr, ``trunkkey: error: ...``, never a traceback.
``trunkkey`` with no command prints the help and exits 2: nothing was done,
so a script whose command went missing must not pass for a success.

The commands are the ``COMMANDS`` of the modules in :data:`GROUPS`, in that
order; a new group of commands is a new module added to that list, and its
command names to :data:`_GROUP_OF`. A run of one command imports only that
command's group (``trunkkey verify`` is a car's cold start, and the other
groups bring the consent layer, the car's log and the audit with them);
``--help``, a mistyped command and :data:`GROUPS` itself import them all.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from .. import __version__
from ..errors import TrunkkeyError
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

#: Every group of commands (a module of this package), in the order ``--help`` lists them.
_GROUP_NAMES = ("keys", "tokens", "verify", "ledger", "simulate", "grants", "revocations", "log")
#: The group that defines each command (tests/test_cold_start.py holds it to their COMMANDS).
_GROUP_OF = {
    "keygen": "keys", "pubkey": "keys", "mint": "tokens", "inspect": "tokens",
    "verify": "verify", "prove": "verify", "ledger": "ledger", "simulate": "simulate",
    "grant": "grants", "chain": "grants", "revocations": "revocations", "log": "log",
}


def _group(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def _commands(groups: Sequence[str]) -> tuple[Command, ...]:
    return tuple(cmd for name in groups for cmd in _group(name).COMMANDS)


def __getattr__(name: str) -> object:
    # GROUPS and COMMANDS as before, built on first use (PEP 562), and each
    # group reachable as an attribute as when this module imported them all.
    if name == "GROUPS":
        return tuple(_group(n) for n in _GROUP_NAMES)
    if name == "COMMANDS":
        return _commands(_GROUP_NAMES)
    if name in _GROUP_NAMES:
        return _group(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _needed(arguments: Sequence[str]) -> tuple[str, ...]:
    """The groups a run with ``arguments`` needs: the command's own, or all for help."""
    for argument in arguments:
        if argument in ("-h", "--help"):
            break
        if not argument.startswith("-"):  # the top-level options take no value
            group = _GROUP_OF.get(argument)
            return _GROUP_NAMES if group is None else (group,)
    return _GROUP_NAMES


def build_parser(groups: Sequence[str] = _GROUP_NAMES) -> argparse.ArgumentParser:
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
    for cmd in _commands(groups):
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
        args = build_parser(_needed(arguments)).parse_args(arguments)
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
