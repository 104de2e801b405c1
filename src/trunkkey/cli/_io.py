"""What every command shares: the parser, output, one-line errors, exit codes, reading input.

Exit codes: 0 success (for ``verify``: access allowed), 1 access denied (or a
simulation that did not go as the story says), 2 bad input or any other error.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ..clock import SystemClock
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

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class CliError(Exception):
    """Bad input on the command line: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error."""

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


def json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json`` on a subcommand (argparse hands a subcommand the rest of the line).

    SUPPRESS keeps a subcommand's default from overwriting a top-level --json.
    """
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print one JSON object for machines instead of text",
    )


def emit(out: Output, name: str, data: bytes, fmt: str, summary: dict[str, Any]) -> None:
    """Print a signed object: encoded text, raw bytes, or JSON with ``summary``."""
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
    cleaned = "".join(text.split())
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CliError(f"{what} is not valid hex") from None


def hex_id(text: str, length: int, what: str) -> bytes:
    """An identifier of exactly ``length`` bytes, as hex."""
    try:
        value = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise CliError(f"{what} {text!r} is not valid hex") from None
    if len(value) != length:
        raise CliError(f"{what} {text!r} must be {length} bytes ({2 * length} hex digits)")
    return value


def _base64url(text: str) -> bytes:
    body = text.rstrip("=")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


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


def load_signing_key(path_text: str) -> SigningKey:
    """A private key file (PEM or COSE_Key), refused if others can read it."""
    path = Path(path_text)
    public = f"{path_text!r} holds a public key; this option needs a private key"
    try:
        return SigningKey.load(path)
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


def load_public_key(path_text: str) -> VerificationKey:
    """A public key file: PEM, COSE_Key as hex text, or COSE_Key bytes."""
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
        try:
            cose = bytes.fromhex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            cose = data
        return VerificationKey.from_cose_key(cose)
    except TrunkkeyError as exc:
        raise CliError(f"{path_text!r} is not a usable public key: {exc}") from None


def read_token(source: str | None, fmt: str | None, stdin: Any) -> bytes:
    """Token bytes from an argument or stdin; ``fmt`` None means detect."""
    if source is None or source == "-":
        data: bytes = stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise CliError(f"token on stdin is larger than {MAX_INPUT_BYTES} bytes")
    else:
        data = source.encode("utf-8", "surrogateescape")
    return decode_token_text(data, fmt)


def decode_token_text(data: bytes, fmt: str | None) -> bytes:
    if fmt == "raw" or (fmt is None and data[:1] == b"\xd2"):
        return data
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CliError("token is neither raw CBOR nor hex/base64url text") from None
    if not text:
        raise CliError("no token given (pass it as an argument or on stdin)")
    if fmt == "hex" or (fmt is None and _HEX.fullmatch(text)):
        return parse_hex(text, "token")
    if not _BASE64URL.fullmatch(text):
        raise CliError("token is not valid base64url" if fmt else "token is not hex or base64url")
    try:
        return _base64url(text)
    except (binascii.Error, ValueError):
        raise CliError("token is not valid base64url") from None


def encode_token(token: bytes, fmt: str) -> str:
    if fmt == "base64url":
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")
    return token.hex()


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long hex string is not a file name
        return False


def read_blob(text: str, what: str) -> bytes:
    """A grant, chain or list: a file (raw CBOR, hex or base64url) or hex/base64url inline."""
    if _is_file(text):
        data = read_bounded(Path(text), what, text)
    else:
        data = text.encode("utf-8", "surrogateescape")
    # Every object here starts with a tag or an array head: never an ASCII byte.
    if data[:1] and data[0] >= 0x80:
        return data
    try:
        cleaned = "".join(data.decode("ascii").split())
    except UnicodeDecodeError:
        raise CliError(f"{what} is neither raw CBOR nor hex/base64url text") from None
    if not cleaned:
        raise CliError(f"{what} is empty")
    if _HEX.fullmatch(cleaned):
        return bytes.fromhex(cleaned)
    if _BASE64URL.fullmatch(cleaned):
        try:
            return _base64url(cleaned)
        except (binascii.Error, ValueError):
            pass
    raise CliError(f"{what} is not a readable file, hex or base64url")
