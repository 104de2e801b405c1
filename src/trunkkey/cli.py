"""The ``trunkkey`` command: keys, minting, inspection and verification from a shell.

Exit codes: 0 success (for ``verify``: access allowed), 1 access denied (or a
simulation that did not go as the story says), 2 bad input or any other error.
Errors are one line on stderr, ``trunkkey: error: ...``, never a traceback.

Commands register themselves in :data:`COMMANDS`; a later feature adds its
commands by appending a :class:`Command` there, without touching the others.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from . import __version__
from .claims import Action, Purpose, TokenClaims
from .clock import ManualClock, SystemClock
from .cose import Typ
from .errors import InsecureKeyFile, KeyFileError, LedgerCorrupted, TrunkkeyError
from .geo import Geofence, Location
from .inspect import inspect_unverified
from .issuer import Issuer
from .keys import Algorithm, SigningKey, VerificationKey
from .ledger import Ledger, MemoryLedger, SqliteLedger
from .proof import make_proof
from .reasons import Reason
from .trust import TrustedKey, TrustStore
from .verifier import Decision, Verifier

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_ERROR = 2

#: Biggest token or public-key input read from a file or stdin: well above
#: every size cap, small enough that a wrong file cannot exhaust memory.
MAX_INPUT_BYTES = 64 * 1024

_UNVERIFIED_BANNER = (
    "*** UNVERIFIED: nothing below is checked (signature, key, time, place). "
    "Never decide anything from it. ***"
)


class CliError(Exception):
    """Bad input on the command line: reported as one line, exit status 2."""


# -- argument parsing ---------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A subcommand: its name, one-line help, how to add its arguments, how to run it."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Output], int]


#: Every subcommand, in the order ``--help`` lists them. The consent-grant,
#: chain and revocation-list commands are appended by :mod:`trunkkey.consent.cli`.
COMMANDS: list[Command] = []


def register(cmd: Command) -> None:
    """Add a subcommand; a name may be registered once."""
    if any(existing.name == cmd.name for existing in COMMANDS):
        raise ValueError(f"command {cmd.name!r} is already registered")
    COMMANDS.append(cmd)


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS keeps a subcommand's default from overwriting a top-level --json.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print one JSON object for machines instead of text",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trunkkey",
        description="One-time trunk access tokens: make keys, mint, inspect and verify tokens.",
        epilog="Exit status: 0 success or access allowed, 1 access denied, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"trunkkey {__version__}")
    parser.add_argument("--json", action="store_true", default=False, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        _common(p)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


# -- output -------------------------------------------------------------------


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


# -- parsing values -----------------------------------------------------------

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


def parse_geofence(text: str) -> Geofence:
    lat, lon, radius = _floats(text, 3, "--geofence", "LAT,LON,RADIUS_M")
    if radius != int(radius):
        raise CliError("--geofence: the radius is a whole number of metres")
    try:
        return Geofence.from_degrees(lat, lon, int(radius))
    except TrunkkeyError as exc:
        raise CliError(f"--geofence: {exc}") from None


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


# -- reading files ------------------------------------------------------------


def _read_bounded(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise CliError(f"{what} {str(path)!r} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def _pem_label(data: bytes) -> str | None:
    match = re.match(rb"\s*-----BEGIN ([A-Z0-9 ]+)-----", data)
    return match.group(1).decode("ascii") if match else None


def load_signing_key(path_text: str) -> SigningKey:
    """A private key file (PEM or COSE_Key), refused if others can read it."""
    path = Path(path_text)
    try:
        return SigningKey.load(path)
    except InsecureKeyFile:
        # A public key file is world-readable by design: say what is really wrong.
        if _is_public_key_file(path):
            raise CliError(
                f"{path_text!r} holds a public key; this option needs a private key"
            ) from None
        raise
    except KeyFileError:
        raise
    except TrunkkeyError as exc:
        if _is_public_key_file(path):
            raise CliError(
                f"{path_text!r} holds a public key; this option needs a private key"
            ) from None
        raise CliError(f"{path_text!r}: {exc}") from None


def _is_public_key_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return _pem_label(head) == "PUBLIC KEY"


def load_public_key(path_text: str) -> VerificationKey:
    """A public key file: PEM, COSE_Key as hex text, or COSE_Key bytes."""
    data = _read_bounded(Path(path_text), "public key file")
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


TOKEN_FORMATS = ("hex", "base64url", "raw")


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
    if fmt == "hex" or (fmt is None and re.fullmatch(r"(?:[0-9a-fA-F]{2})+", text)):
        return parse_hex(text, "token")
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", text):
        raise CliError("token is not valid base64url" if fmt else "token is not hex or base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise CliError("token is not valid base64url") from None


def encode_token(token: bytes, fmt: str) -> str:
    if fmt == "base64url":
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")
    return token.hex()


# -- presenting ---------------------------------------------------------------


def utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (out of range)"


def human_duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return sign + ("".join(parts) or "0s")


def key_summary(key: VerificationKey) -> dict[str, Any]:
    return {
        "alg": key.algorithm.cose_name,
        "kid": key.kid.hex(),
        "cose_key": key.to_cose_key().hex(),
        "pem": key.to_pem().decode("ascii"),
    }


def print_key(out: Output, key: VerificationKey) -> None:
    out.line(f"algorithm: {key.algorithm.cose_name}")
    out.line(f"kid:       {key.kid.hex()}")
    out.line(f"COSE_Key:  {key.to_cose_key().hex()}")
    out.line(key.to_pem().decode("ascii").rstrip())


def claims_json(claims: TokenClaims) -> dict[str, Any]:
    g = claims.geofence
    return {
        "issuer": claims.issuer,
        "vehicle_id": claims.vehicle_id,
        "action": claims.action.value,
        "purpose": claims.purpose.value,
        "not_before": claims.not_before,
        "expires": claims.expires,
        "issued_at": claims.issued_at,
        "not_before_utc": utc(claims.not_before),
        "expires_utc": utc(claims.expires),
        "issued_at_utc": utc(claims.issued_at),
        "token_id": claims.token_id.hex(),
        "geofence": None if g is None else {
            "latitude": g.centre.latitude, "longitude": g.centre.longitude,
            "radius_m": g.radius_m,
        },
        "courier_key": None if claims.courier_key is None else {
            "alg": claims.courier_key.algorithm.cose_name,
            "kid": claims.courier_key.kid.hex(),
        },
        "order_ref": None if claims.order_ref is None else claims.order_ref.hex(),
    }


def print_claims(out: Output, claims: TokenClaims) -> None:
    out.line(f"issuer:      {claims.issuer}")
    out.line(f"vehicle:     {claims.vehicle_id}")
    out.line(f"action:      {claims.action.value}")
    out.line(f"purpose:     {claims.purpose.value}")
    out.line(f"not before:  {utc(claims.not_before)}  ({claims.not_before})")
    out.line(
        f"expires:     {utc(claims.expires)}  ({claims.expires}; "
        f"window {human_duration(claims.lifetime)})"
    )
    out.line(f"issued at:   {utc(claims.issued_at)}  ({claims.issued_at})")
    out.line(f"token id:    {claims.token_id.hex()}")
    g = claims.geofence
    if g is None:
        out.line("geofence:    none")
    else:
        out.line(
            f"geofence:    within {g.radius_m} m of "
            f"{g.centre.latitude:.7f},{g.centre.longitude:.7f}"
        )
    if claims.courier_key is None:
        out.line("courier key: none (anyone holding the token may present it)")
    else:
        out.line(
            f"courier key: {claims.courier_key.algorithm.cose_name} "
            f"kid {claims.courier_key.kid.hex()} (proof of possession required)"
        )
    if claims.order_ref is not None:
        shown = claims.order_ref.decode("utf-8", "replace")
        out.line(f"order ref:   {claims.order_ref.hex()}  ({shown!r})")


def _typ_name(typ: int) -> str:
    try:
        return f"trunkkey {Typ(typ).name.lower().replace('_', '-')}"
    except ValueError:
        return "not a trunkkey type"


def _alg_name(alg: int) -> str:
    try:
        return Algorithm(alg).cose_name
    except ValueError:
        return "unknown"


# -- keygen / pubkey ----------------------------------------------------------


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alg", choices=("ed25519", "p256"), default="ed25519",
                   help="Ed25519 (default) or ECDSA P-256")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="where to write the private key (PEM, created with mode 0600)")
    p.add_argument("--public-out", metavar="PATH",
                   help="also write the public key here (PEM, world-readable)")
    p.add_argument("--force", action="store_true", help="replace an existing key file")


def _keygen(args: argparse.Namespace, out: Output) -> int:
    algorithm = Algorithm.EDDSA if args.alg == "ed25519" else Algorithm.ES256
    for target in (args.out, args.public_out):
        if target and not args.force and Path(target).exists():
            raise CliError(f"{target!r} exists; pass --force to replace it")
    key = SigningKey.generate(algorithm)
    key.save(args.out, overwrite=args.force)
    if args.public_out:
        _write_public(Path(args.public_out), key.public_key, force=args.force)
    out.data({"private_key_file": args.out, "public_key_file": args.public_out,
              **key_summary(key.public_key)})
    out.line(f"private key written to {args.out} (mode 0600)")
    if args.public_out:
        out.line(f"public key written to {args.public_out}")
    print_key(out, key.public_key)
    return EXIT_OK


def _write_public(path: Path, key: VerificationKey, *, force: bool) -> None:
    try:
        with path.open("wb" if force else "xb") as f:
            f.write(key.to_pem())
    except FileExistsError:
        raise CliError(f"{str(path)!r} exists; pass --force to replace it") from None
    except OSError as exc:
        raise CliError(f"cannot write {str(path)!r}: {exc.strerror}") from None


def _pubkey_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="PATH", help="private key file")
    p.add_argument("--format", choices=("text", "pem", "cose-hex"), default="text",
                   help="text (default), or just the PEM or COSE_Key hex, for a file")


def _pubkey(args: argparse.Namespace, out: Output) -> int:
    public = load_signing_key(args.key).public_key
    out.data(key_summary(public))
    if args.format == "pem":
        out.line(public.to_pem().decode("ascii").rstrip())
    elif args.format == "cose-hex":
        out.line(public.to_cose_key().hex())
    else:
        print_key(out, public)
    return EXIT_OK


# -- mint ---------------------------------------------------------------------


def _mint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="PATH", help="issuer's private key file")
    p.add_argument("--issuer", required=True, help="issuer name (the iss claim)")
    p.add_argument("--vehicle", required=True, help="the vehicle's id (the aud claim)")
    p.add_argument("--action", required=True, choices=[a.value for a in Action])
    p.add_argument("--purpose", default=Purpose.DELIVERY.value, choices=[p.value for p in Purpose])
    window = p.add_mutually_exclusive_group(required=True)
    window.add_argument("--valid-for", metavar="DURATION",
                        help="window from --not-before (default now), e.g. 4h, 90m")
    window.add_argument("--expires", metavar="TIME", help="end of the window")
    p.add_argument("--not-before", metavar="TIME", default="now",
                   help="start of the window (Unix seconds or ISO-8601 with timezone)")
    p.add_argument("--geofence", metavar="LAT,LON,RADIUS_M",
                   help="the car must be within RADIUS_M metres (write --geofence=-33.9,...)")
    p.add_argument("--courier-key", metavar="PUBFILE",
                   help="bind the token to this courier device public key (cnf)")
    p.add_argument("--order-ref", metavar="TEXT", help="opaque order reference (UTF-8)")
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex", help="token encoding")


def _mint(args: argparse.Namespace, out: Output) -> int:
    key = load_signing_key(args.key)
    not_before = parse_time(args.not_before, "--not-before")
    if args.valid_for is not None:
        expires = not_before + parse_duration(args.valid_for)
    else:
        expires = parse_time(args.expires, "--expires")
    geofence = parse_geofence(args.geofence) if args.geofence else None
    courier = load_public_key(args.courier_key) if args.courier_key else None
    order_ref = args.order_ref.encode("utf-8") if args.order_ref else None
    issuer = Issuer(key, args.issuer)
    claims = issuer.claims_for(
        vehicle_id=args.vehicle, action=args.action, purpose=args.purpose,
        not_before=not_before, expires=expires, geofence=geofence,
        courier_key=courier, order_ref=order_ref,
    )
    token = issuer.sign_claims(claims)
    if out.json_mode:
        out.data({
            "token": encode_token(token, "hex" if args.format == "raw" else args.format),
            "format": "hex" if args.format == "raw" else args.format,
            "size": len(token), "kid": key.kid.hex(), "claims": claims_json(claims),
        })
    elif args.format == "raw":
        out.raw(token)
    else:
        out.line(encode_token(token, args.format))
    return EXIT_OK


# -- inspect ------------------------------------------------------------------


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("token", nargs="?", help="the token (hex or base64url); omit or - for stdin")
    p.add_argument("--format", choices=TOKEN_FORMATS, default=None,
                   help="how the token is encoded (default: detect)")


def _inspect(args: argparse.Namespace, out: Output) -> int:
    token = read_token(args.token, args.format, sys.stdin)
    try:
        seen = inspect_unverified(token)
    except TrunkkeyError as exc:
        raise CliError(f"cannot decode token ({len(token)} bytes): {exc}") from None
    h = seen.header
    out.data({
        "unverified": True,
        "warning": _UNVERIFIED_BANNER,
        "size": seen.size,
        "header": {"alg": h.alg, "alg_name": _alg_name(h.alg), "typ": h.typ,
                   "typ_name": _typ_name(h.typ), "kid": None if h.kid is None else h.kid.hex()},
        "signature_size": len(seen.signature),
        "claims": claims_json(seen.claims),
    })
    out.line(_UNVERIFIED_BANNER)
    out.line(f"size:        {seen.size} bytes (signature {len(seen.signature)})")
    out.line(f"algorithm:   {_alg_name(h.alg)} ({h.alg})")
    out.line(f"key id:      {'none' if h.kid is None else h.kid.hex()}")
    out.line(f"type:        {h.typ} ({_typ_name(h.typ)})")
    print_claims(out, seen.claims)
    out.line(_UNVERIFIED_BANNER)
    return EXIT_OK


# -- verify -------------------------------------------------------------------


def parse_trust(spec: str) -> TrustedKey:
    """``PUBKEYFILE:ISSUER[:NOT_BEFORE:NOT_AFTER]``; either time may be empty."""
    path, sep, rest = spec.partition(":")
    if not sep or not path:
        raise CliError(f"--trust {spec!r}: expected PUBKEYFILE:ISSUER[:NOT_BEFORE:NOT_AFTER]")
    issuer, sep, period = rest.partition(":")
    if not issuer:
        raise CliError(f"--trust {spec!r}: the issuer name is missing")
    not_before = not_after = None
    if sep:
        not_before, not_after = _split_period(period, spec)
    key = load_public_key(path)
    try:
        return TrustedKey.create(key, issuer, not_before=not_before, not_after=not_after)
    except TrunkkeyError as exc:
        raise CliError(f"--trust {spec!r}: {exc}") from None


def _split_period(period: str, spec: str) -> tuple[int | None, int | None]:
    # ISO-8601 times contain colons too: take the one split where both halves parse.
    found = []
    for i, ch in enumerate(period):
        if ch != ":":
            continue
        try:
            halves = [
                None if not part else parse_time(part, "--trust")
                for part in (period[:i], period[i + 1 :])
            ]
        except CliError:
            continue
        found.append((halves[0], halves[1]))
    if len(found) != 1:
        raise CliError(
            f"--trust {spec!r}: validity must be NOT_BEFORE:NOT_AFTER "
            "(Unix seconds or ISO-8601 with timezone; either may be empty)"
        )
    return found[0]


def load_trust_store_file(path_text: str) -> list[TrustedKey]:
    """A trust-store JSON file: ``{"keys": [{"issuer", "cose_key"|"pem", ...}]}``."""
    data = _read_bounded(Path(path_text), "trust store")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"trust store {path_text!r} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise CliError(f"trust store {path_text!r} must be an object with a \"keys\" list")
    entries = []
    for n, item in enumerate(document["keys"]):
        where = f"trust store {path_text!r} key {n}"
        if not isinstance(item, dict) or not isinstance(item.get("issuer"), str):
            raise CliError(f"{where}: needs an \"issuer\" string")
        try:
            if isinstance(item.get("cose_key"), str):
                raw = parse_hex(item["cose_key"], f"{where} cose_key")
                key = VerificationKey.from_cose_key(raw)
            elif isinstance(item.get("pem"), str):
                key = VerificationKey.from_pem(item["pem"].encode("ascii"))
            else:
                raise CliError(f"{where}: needs \"cose_key\" (hex) or \"pem\"")
            times = [
                None if item.get(name) is None else parse_time(str(item[name]), f"{where} {name}")
                for name in ("not_before", "not_after")
            ]
            entries.append(
                TrustedKey.create(key, item["issuer"], not_before=times[0], not_after=times[1])
            )
        except (TrunkkeyError, UnicodeEncodeError) as exc:
            raise CliError(f"{where}: {exc}") from None
    return entries


def _verify_args(p: argparse.ArgumentParser) -> None:
    _token_args(p)
    p.add_argument("--trust", action="append", default=[], metavar="PUBFILE:ISSUER[:NB:NA]",
                   help="trust this issuer key (repeatable)")
    p.add_argument("--trust-store", metavar="JSON", help="trust-store JSON file")
    p.add_argument("--vehicle", required=True, help="this vehicle's id")
    p.add_argument("--action", required=True, choices=[a.value for a in Action])
    p.add_argument("--purpose", choices=[p.value for p in Purpose],
                   help="also require this purpose")
    p.add_argument("--at", metavar="TIME", default="now", help="verification time (default now)")
    p.add_argument("--location", metavar="LAT,LON", help="the car's position")
    p.add_argument("--proof", metavar="HEX", help="the courier device's proof of possession")
    p.add_argument("--challenge", metavar="HEX", help="the challenge the proof answers")
    p.add_argument("--ledger", metavar="PATH",
                   help="SQLite replay ledger (default: in-memory, forgotten on exit)")
    from .consent.cli import add_verify_options  # noqa: PLC0415 -- it imports this module

    add_verify_options(p)


def _verify(args: argparse.Namespace, out: Output) -> int:
    from .consent.cli import consent_for_verify  # noqa: PLC0415 -- it imports this module

    token = read_token(args.token, args.format, sys.stdin)
    keys = [parse_trust(spec) for spec in args.trust]
    if args.trust_store:
        keys += load_trust_store_file(args.trust_store)
    if not keys and not args.root:
        raise CliError(
            "no trusted keys: give --trust PUBFILE:ISSUER, --trust-store FILE "
            "or --root PUBFILE (with --chain)"
        )
    try:
        store = TrustStore(keys)
    except TrunkkeyError as exc:
        raise CliError(str(exc)) from None
    now = parse_time(args.at, "--at")
    location = parse_location(args.location) if args.location else None
    proof = parse_hex(args.proof, "--proof") if args.proof else None
    challenge = parse_hex(args.challenge, "--challenge") if args.challenge else None
    consent, chain = consent_for_verify(args, now)
    with _open_ledger(args.ledger, create=True) as ledger:
        verifier = Verifier(
            trust_store=store, ledger=ledger, clock=ManualClock(now), consent=consent
        )
        decision = verifier.verify(
            token, vehicle_id=args.vehicle, action=args.action, purpose=args.purpose,
            location=location, proof=proof, challenge=challenge, chain=chain,
        )
    ledger_text = (
        f"sqlite {args.ledger}" if args.ledger
        else "in-memory (forgotten on exit: this run cannot detect a replay)"
    )
    _report_decision(out, decision, ledger_text)
    return EXIT_OK if decision.allowed else EXIT_DENIED


def _report_decision(out: Output, decision: Decision, ledger_text: str) -> None:
    out.data({
        "allowed": decision.allowed, "reason": decision.reason.value,
        "detail": decision.detail, "at": decision.at, "at_utc": utc(decision.at),
        "ledger": ledger_text,
        "claims": None if decision.claims is None else claims_json(decision.claims),
    })
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    out.line(f"{verdict}: {decision.reason.value}")
    out.line(f"detail:  {decision.detail}")
    out.line(f"at:      {utc(decision.at)}")
    out.line(f"ledger:  {ledger_text}")
    if decision.claims is not None:
        c = decision.claims
        out.line(f"token:   {c.token_id.hex()} from {c.issuer} for {c.vehicle_id}, "
                 f"{c.action.value}/{c.purpose.value}, until {utc(c.expires)}")


@contextlib.contextmanager
def _open_ledger(path_text: str | None, *, create: bool) -> Iterator[Ledger]:
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


# -- prove --------------------------------------------------------------------


def _prove_args(p: argparse.ArgumentParser) -> None:
    _token_args(p)
    p.add_argument("--device-key", required=True, metavar="PATH",
                   help="the courier device's private key file")
    p.add_argument("--vehicle", required=True, help="the vehicle the token is presented to")
    p.add_argument("--challenge", required=True, metavar="HEX",
                   help="the car's challenge, 16 to 32 bytes")


def _prove(args: argparse.Namespace, out: Output) -> int:
    token = read_token(args.token, args.format, sys.stdin)
    key = load_signing_key(args.device_key)
    proof = make_proof(key, token=token, vehicle_id=args.vehicle,
                       challenge=parse_hex(args.challenge, "--challenge"))
    out.data({"proof": proof.hex(), "size": len(proof)})
    out.line(proof.hex())
    return EXIT_OK


# -- ledger -------------------------------------------------------------------


def _ledger_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("operation", choices=("stats", "prune", "recover"))
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
        return _ledger_recover(args, path, out)
    with _open_ledger(args.path, create=False) as ledger:
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


def _ledger_recover(args: argparse.Namespace, path: Path, out: Output) -> int:
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


# -- simulate -----------------------------------------------------------------


def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--builtin", action="store_true",
                   help="accepted for older scripts: the story is always the one in the package")


def _simulate(args: argparse.Namespace, out: Output) -> int:
    # Only the story that ships in the package runs: a command that executed
    # examples/simulate_delivery.py from the current directory would run
    # whatever file someone planted there.
    del args
    steps = builtin_story()
    ok = all(step["reason"] == step["expected"] for step in steps)
    out.data({"source": "builtin", "steps": steps, "ok": ok})
    out.line("built-in story (the full one: python examples/simulate_delivery.py in a checkout):")
    for step in steps:
        mark = "ok " if step["reason"] == step["expected"] else "BAD"
        out.line(f"[{mark}] {step['time']}  {step['what']}: {step['reason']}")
    return EXIT_OK if ok else EXIT_DENIED


def builtin_story() -> list[dict[str, Any]]:
    """Mint one trunk token, open once, and show the refusals the core issue lists."""
    start = 1_780_000_000  # 2026-05-28 20:26:40 UTC: any fixed time will do
    clock = ManualClock(start)
    key = SigningKey.generate()
    issuer = Issuer(key, "shop.example", clock=clock)
    verifier = Verifier(
        trust_store=TrustStore([TrustedKey.create(key.public_key, "shop.example")]),
        ledger=MemoryLedger(), clock=clock,
    )
    car = "VIN-WAUZZZ-0001"
    token = issuer.mint(vehicle_id=car, action=Action.TRUNK, not_before=start,
                        expires=start + 4 * 3600)
    late = issuer.mint(vehicle_id=car, action=Action.TRUNK, not_before=start,
                       expires=start + 3600)
    other = issuer.mint(vehicle_id="VIN-OTHER-0002", action=Action.TRUNK, not_before=start,
                        expires=start + 3600)
    story: list[tuple[int, str, bytes, str, Action, Reason]] = [
        (600, "courier opens the trunk", token, car, Action.TRUNK, Reason.ALLOWED),
        (660, "same token again", token, car, Action.TRUNK, Reason.ALREADY_USED),
        (700, "trunk token asked to unlock the cabin", token, car, Action.UNLOCK_RELOCK,
         Reason.WRONG_ACTION),
        (720, "token for another car", other, car, Action.TRUNK, Reason.WRONG_VEHICLE),
        (2 * 3600, "a 1-hour token, 2 hours on", late, car, Action.TRUNK, Reason.EXPIRED),
    ]
    steps = []
    for offset, what, presented, vehicle, action, expected in story:
        clock.set(start + offset)
        decision = verifier.verify(presented, vehicle_id=vehicle, action=action)
        steps.append({"time": utc(clock.now()), "what": what, "reason": decision.reason.value,
                      "expected": expected.value})
    return steps


# -- the registry ---------------------------------------------------------------


for _cmd in (
    Command(
        name="keygen",
        help="make a signing key pair; write the private key owner-only",
        configure=_keygen_args,
        run=_keygen,
    ),
    Command(
        name="pubkey",
        help="print the public key and kid of a private key file",
        configure=_pubkey_args,
        run=_pubkey,
    ),
    Command(
        name="mint",
        help="mint a one-time token for one vehicle, action and window",
        configure=_mint_args,
        run=_mint,
    ),
    Command(
        name="inspect",
        help="decode a token WITHOUT verifying it (a debugger, not a check)",
        configure=_token_args,
        run=_inspect,
    ),
    Command(
        name="verify",
        help="verify a token as the car would; exit 0 only if allowed",
        configure=_verify_args,
        run=_verify,
    ),
    Command(
        name="prove",
        help="answer a car's challenge with the courier device key (hex out)",
        configure=_prove_args,
        run=_prove,
    ),
    Command(
        name="ledger",
        help="'ledger stats|prune|recover PATH' on a SQLite ledger",
        configure=_ledger_args,
        run=_ledger,
    ),
    Command(
        name="simulate",
        help="run the delivery story: one token opens the trunk once",
        configure=_simulate_args,
        run=_simulate,
    ),
):
    register(_cmd)


# -- entry point --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (never raises for bad input)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    json_mode = "--json" in arguments
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


# Consent grants, chains and revocation lists (issue 4) register their commands.
from .consent import cli as _consent_cli  # noqa: E402, F401

