"""What every command shares: the parser, output, one-line errors, exit codes, reading input.

Exit codes: 0 success (for ``verify``: access allowed), 1 access denied (or a
simulation that did not go as the story says), 2 bad input or any other error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from .._keyfiles import read_private_file
from ..clock import SystemClock
from ..encodings import TextDecodeError, TextFormat, decode_bytes, decode_text, encode_text
from ..errors import InsecureKeyFile, KeyFileError, TrunkkeyError
from ..geo import Geofence, Location
from ..keys import SigningKey, VerificationKey

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_ERROR = 2

#: Biggest token, key, grant or list read from a file or stdin: well above
#: every size cap, small enough that a wrong file cannot exhaust memory.
MAX_INPUT_BYTES = 64 * 1024

TOKEN_FORMATS = ("hex", "base64url", "raw")

#: Where a command finds the password of an encrypted private key file when
#: no ``--password-file`` is given.
PASSWORD_ENV = "TRUNKKEY_KEY_PASSWORD"  # noqa: S105 -- the variable's name, not a password


class CliError(Exception):
    """Bad input on the command line: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error.

    Abbreviated options are refused: a script written against ``--veh``
    would silently change meaning the day a second option starts with it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


class Output:
    """Where a command writes: text lines, or one JSON object at the end."""

    def __init__(self, *, json_mode: bool, stdout: TextIO) -> None:
        self.json_mode = json_mode
        self._stdout = stdout

    def line(self, text: str = "") -> None:
        if not self.json_mode:
            print(text, file=self._stdout)

    def data(self, obj: dict[str, Any]) -> None:
        if self.json_mode:
            print(json.dumps(obj, indent=2, sort_keys=True), file=self._stdout)

    def raw(self, data: bytes) -> None:
        self._stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A subcommand: its name, one-line help, how to add its arguments, how to run it."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Output], int]
    #: Shell lines shown under "examples:" at the end of the command's --help.
    examples: tuple[str, ...] = ()


def json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json`` on a subcommand (argparse hands a subcommand the rest of the line).

    SUPPRESS keeps a subcommand's default from overwriting a top-level --json.
    """
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print one JSON object for machines instead of text",
    )


def examples(*lines: str) -> str:
    """The epilog of a --help: shell lines under a heading."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def password_flag(parser: argparse.ArgumentParser) -> None:
    """``--password-file`` on a command that reads a private key."""
    parser.add_argument(
        "--password-file", metavar="PATH",
        help=f"file holding the password of an encrypted private key (else ${PASSWORD_ENV}, "
             "else asked for on a terminal)",
    )


def refuse_raw_on_terminal(fmt: str, out: Output) -> None:
    """Binary on a terminal garbles it and shows nothing useful: ask for a redirect."""
    if fmt == "raw" and not out.json_mode and sys.stdout.isatty():
        raise CliError("--format raw writes binary: redirect it to a file or a pipe "
                       "(... --format raw > token.cbor), or use hex or base64url")


def emit(out: Output, name: str, data: bytes, fmt: str, summary: dict[str, Any]) -> None:
    """Print a signed object: encoded text, raw bytes, or JSON with ``summary``."""
    refuse_raw_on_terminal(fmt, out)
    if out.json_mode:
        shown = "hex" if fmt == "raw" else fmt
        out.data({**summary, "format": shown, name: encode_token(data, shown)})
    elif fmt == "raw":
        out.raw(data)
    else:
        out.line(encode_token(data, fmt))


# -- values -------------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, what: str) -> int:
    """Unix seconds from ``now``, an integer, or ISO-8601 with a timezone."""
    text = text.strip()
    if text == "now":
        return SystemClock().now()
    if re.fullmatch(r"-?\d+", text):
        value = int(text)
        if value < 0:
            raise CliError(f"{what}: {text!r} is before 1970")
        return value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{what}: {text!r} is not a time (use Unix seconds or ISO-8601 with a timezone, "
            "e.g. 2026-05-04T09:00:00Z)"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise CliError(f"{what}: {text!r} has no timezone; add Z or +HH:MM")
    return int(when.timestamp())


def parse_duration(text: str) -> int:
    """Seconds from ``90s``, ``30m``, ``4h``, ``1d``, ``1h30m`` or a bare number of seconds."""
    text = text.strip()
    if text.isdigit():
        seconds = int(text)
    elif text and _DURATION.sub("", text) == "":
        seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    else:
        raise CliError(f"--valid-for: {text!r} is not a duration (e.g. 4h, 30m, 1h30m, 900)")
    if seconds <= 0:
        raise CliError("--valid-for must be longer than zero")
    return seconds


def _floats(text: str, count: int, what: str, shape: str) -> list[float]:
    parts = text.split(",")
    if len(parts) != count:
        raise CliError(f"{what}: expected {shape}, got {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise CliError(f"{what}: expected numbers as {shape}, got {text!r}") from None


def parse_geofence(text: str, option: str = "--geofence") -> Geofence:
    """``LAT,LON,RADIUS_M`` for ``option`` (a token's ``--geofence``, a grant's ``--place``)."""
    lat, lon, radius = _floats(text, 3, option, "LAT,LON,RADIUS_M")
    if radius != int(radius):
        raise CliError(f"{option}: the radius is a whole number of metres")
    try:
        return Geofence.from_degrees(lat, lon, int(radius))
    except TrunkkeyError as exc:
        raise CliError(f"{option}: {exc}") from None


def parse_location(text: str) -> Location:
    lat, lon = _floats(text, 2, "--location", "LAT,LON")
    try:
        return Location.from_degrees(lat, lon)
    except TrunkkeyError as exc:
        raise CliError(f"--location: {exc}") from None


def parse_hex(text: str, what: str) -> bytes:
    """Bytes written as hex (``what`` names them in the error)."""
    return decode_text(text, TextFormat.HEX, max_bytes=MAX_INPUT_BYTES, what=what)


def hex_id(text: str, length: int, what: str) -> bytes:
    """An identifier of exactly ``length`` bytes, as hex."""
    value = parse_hex(text, f"{what} {text!r}")
    if len(value) != length:
        raise CliError(f"{what} {text!r} must be {length} bytes ({2 * length} hex digits)")
    return value


# -- files, keys, tokens and blobs --------------------------------------------


def read_bounded(path: Path, what: str, shown: str) -> bytes:
    """At most :data:`MAX_INPUT_BYTES` of ``path``; ``shown`` names it in errors."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {what} {shown!r}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise CliError(f"{what} {shown!r} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def _pem_label(data: bytes) -> str | None:
    match = re.match(rb"\s*-----BEGIN ([A-Z0-9 ]+)-----", data)
    return match.group(1).decode("ascii") if match else None


def _is_public_key_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return _pem_label(head) == "PUBLIC KEY"


def load_signing_key(path_text: str, *, password_file: str | None = None) -> SigningKey:
    """A private key file (PEM, encrypted or not, or COSE_Key), refused if others can read it."""
    path = Path(path_text)
    public = f"{path_text!r} holds a public key; this option needs a private key"
    try:
        return SigningKey.load(path, password=_password_for(path, path_text, password_file))
    except InsecureKeyFile:
        # A public key file is world-readable by design: say what is really wrong.
        if _is_public_key_file(path):
            raise CliError(public) from None
        raise
    except KeyFileError:
        raise
    except TrunkkeyError as exc:
        if _is_public_key_file(path):
            raise CliError(public) from None
        raise CliError(f"{path_text!r}: {exc}") from None


def _password_for(path: Path, shown: str, password_file: str | None) -> bytes | None:
    """The password of an encrypted key file: from the file, the environment, or asked."""
    try:
        with path.open("rb") as f:
            encrypted = _pem_label(f.read(64)) == "ENCRYPTED PRIVATE KEY"
    except OSError:
        return None  # SigningKey.load says why it cannot read the file
    if not encrypted:
        if password_file is not None:
            raise CliError(f"{shown!r} is not encrypted: --password-file is for encrypted keys")
        return None
    if password_file is not None:
        return read_password_file(password_file)
    if os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV].encode("utf-8", "surrogateescape")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {shown}: ").encode("utf-8", "surrogateescape")
    else:
        raise CliError(
            f"{shown!r} is encrypted: give --password-file FILE or set {PASSWORD_ENV} "
            "(or run on a terminal to be asked)"
        )
    if not password:
        raise CliError(f"the password for {shown!r} is empty")
    return password


def read_password_file(path_text: str) -> bytes:
    """A password file's content, without the one line ending an editor adds.

    Held to the rule for private key files (owner-only, no symlink, bounded):
    a password that others can read makes the key it locks a key in the clear.
    """
    try:
        data = read_private_file(path_text)
    except KeyFileError as exc:
        raise CliError(f"password file: {exc}") from None
    for ending in (b"\r\n", b"\n"):
        if data.endswith(ending):
            data = data[: -len(ending)]
            break
    if not data:
        raise CliError(f"password file {path_text!r} is empty")
    return data


def load_public_key(path_text: str) -> VerificationKey:
    """A public key file: PEM, COSE_Key as hex (or base64url) text, or COSE_Key bytes."""
    path = Path(path_text)
    data = read_bounded(path, "public key file", str(path))
    label = _pem_label(data)
    try:
        if label is not None:
            if "PRIVATE" in label:
                raise CliError(
                    f"{path_text!r} holds a private key; give the public key "
                    "(made by 'trunkkey pubkey --format pem')"
                )
            return VerificationKey.from_pem(data)
        # A COSE_Key is a CBOR map (first byte 0xA0 or above), or its text form.
        return VerificationKey.from_cose_key(
            decode_bytes(data, max_bytes=MAX_INPUT_BYTES, what="COSE_Key text")
        )
    except TrunkkeyError as exc:
        raise CliError(f"{path_text!r} is not a usable public key: {exc}") from None


def read_token(source: str | None, fmt: str | None, stdin: Any) -> bytes:
    """Token bytes from a file, the argument's text, or stdin; ``fmt`` None means detect."""
    if source is None or source == "-":
        data: bytes = stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise CliError(f"token on stdin is larger than {MAX_INPUT_BYTES} bytes")
        if not data.strip():
            raise CliError("no token given (pass it as an argument, a file or on stdin)")
        return decode_input(data, fmt, "token")
    if is_file(source):
        return decode_input(read_bounded(Path(source), "token file", source), fmt, "token")
    return decode_input(source.encode("utf-8", "surrogateescape"), fmt, "token", inline=True)


def decode_input(data: bytes, fmt: str | None, what: str, *, inline: bool = False) -> bytes:
    """Raw bytes (``fmt`` raw, or detected), or the bytes of hex or base64url text.

    ``inline`` says the text came on the command line, where a file was meant
    as often as text: an argument that is neither says both.
    """
    if fmt == "raw":
        return data
    try:
        return decode_bytes(data, fmt, max_bytes=MAX_INPUT_BYTES, what=what)
    except TextDecodeError as exc:
        if inline and fmt is None and exc.problem in ("not_base64url", "whitespace"):
            raise CliError(f"{what} is not a readable file, hex or base64url") from None
        raise


def encode_token(token: bytes, fmt: str) -> str:
    return encode_text(token, fmt)


def is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long hex string is not a file name
        return False


def read_blob(text: str, what: str) -> bytes:
    """A grant, chain or list: a file (raw CBOR, hex or base64url) or hex/base64url inline."""
    if is_file(text):
        return decode_input(read_bounded(Path(text), what, text), None, what)
    return decode_input(text.encode("utf-8", "surrogateescape"), None, what, inline=True)
