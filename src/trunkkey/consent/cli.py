"""Consent from a shell: ``grant``, ``grant inspect``, ``chain``, ``revocations make|inspect``.

Registered into :mod:`trunkkey.cli` (whose last lines import this module), so
the commands share its parser, its ``--json`` output, its one-line errors
and its exit codes. ``verify --chain ... --root ...`` is built here too
(:func:`consent_for_verify`): a verifier whose only anchors are the carmaker
root keys given, as in the car.

Every grant, chain or list argument is ``FILE_OR_TEXT``: a file holding raw
CBOR, hex or base64url, or the hex/base64url text itself.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
from pathlib import Path
from typing import Any

from .. import cbor
from ..claims import Action, Purpose
from ..cli import (
    EXIT_OK,
    MAX_INPUT_BYTES,
    TOKEN_FORMATS,
    CliError,
    Command,
    Output,
    encode_token,
    human_duration,
    load_public_key,
    load_signing_key,
    parse_duration,
    parse_time,
    register,
    utc,
)
from ..cose import HeaderProblem, Typ, decode_protected, parse_sign1
from ..errors import DecodeError, TrunkkeyError
from ..geo import Geofence
from ..keys import KID_LENGTH, Algorithm, SigningKey
from .anchors import RootKey, VehicleAnchors
from .chain import ConsentVerifier
from .errors import UpdateRefused
from .grant import (
    DIGEST_LENGTH,
    Grant,
    Scope,
    access_mask,
    decode_grant,
    encode_chain,
    grant_digest,
    make_grant,
    narrow,
    root_scope,
    sign_delegation,
    sign_root_grant,
)
from .revocation import RevocationList, RevocationState, decode_revocations, sign_revocation_list

_UNVERIFIED_BANNER = (
    "*** UNVERIFIED: nothing below is checked (signature, signer, narrowing, time). "
    "Never decide anything from it. ***"
)
_TAG_SIGN1 = 0xD2


# -- reading grants, chains and lists -------------------------------------------


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a long hex string is not a file name
        return False


def read_blob(text: str, what: str) -> bytes:
    """Bytes from ``text``: a file (raw CBOR, hex or base64url) or hex/base64url inline."""
    if _is_file(text):
        try:
            with Path(text).open("rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise CliError(f"cannot read {what} {text!r}: {exc.strerror}") from None
        if len(data) > MAX_INPUT_BYTES:
            raise CliError(f"{what} {text!r} is larger than {MAX_INPUT_BYTES} bytes")
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
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", cleaned):
        return bytes.fromhex(cleaned)
    if re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", cleaned):
        body = cleaned.rstrip("=")
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            pass
    raise CliError(f"{what} is not a readable file, hex or base64url")


def chain_links(data: bytes, what: str) -> list[bytes]:
    """The links of a chain, or of a single grant given alone."""
    if data[:1] == bytes([_TAG_SIGN1]):
        return [data]
    try:
        links = cbor.decode(data)
    except DecodeError as exc:
        raise CliError(f"{what} is not a grant or a chain: {exc}") from None
    if type(links) is not list or not links or any(type(x) is not bytes for x in links):
        raise CliError(f"{what} is not a grant or a chain (an array of grants)")
    return list(links)


def _open_grant(link: bytes, where: str) -> tuple[Any, Grant]:
    """Header and decoded payload of one grant, UNVERIFIED."""
    if len(link) == DIGEST_LENGTH:
        raise CliError(f"{where} names a grant by its digest; give the grant itself")
    try:
        parts = parse_sign1(link)
        header = decode_protected(parts.protected)
        if isinstance(header, HeaderProblem) or header.typ != Typ.GRANT:
            raise CliError(f"{where} is not a grant (wrong or malformed protected header)")
        return header, decode_grant(parts.payload)
    except DecodeError as exc:
        raise CliError(f"{where} is not a grant: {exc}") from None


def unverified_scope(links: list[bytes], what: str) -> tuple[Scope, Grant]:
    """The narrowest scope of a chain and its last grant, read WITHOUT checking signatures."""
    scope: Scope | None = None
    grant: Grant | None = None
    for index, link in enumerate(links):
        where = f"{what} link {index}"
        _, grant = _open_grant(link, where)
        got = root_scope(grant) if scope is None else narrow(scope, grant)
        if isinstance(got, str):
            raise CliError(f"{where}: {got}")
        scope = got
    if scope is None or grant is None:
        raise CliError(f"{what} holds no grant")
    return scope, grant


# -- parsing values ------------------------------------------------------------------


def parse_place(text: str) -> Geofence:
    parts = text.split(",")
    if len(parts) != 3:
        raise CliError(f"--place: expected LAT,LON,RADIUS_M, got {text!r}")
    try:
        lat, lon, radius = (float(p) for p in parts)
    except ValueError:
        raise CliError(f"--place: expected numbers as LAT,LON,RADIUS_M, got {text!r}") from None
    if radius != int(radius):
        raise CliError("--place: the radius is a whole number of metres")
    try:
        return Geofence.from_degrees(lat, lon, int(radius))
    except TrunkkeyError as exc:
        raise CliError(f"--place: {exc}") from None


def _hex_id(text: str, length: int, what: str) -> bytes:
    try:
        value = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise CliError(f"{what} {text!r} is not valid hex") from None
    if len(value) != length:
        raise CliError(f"{what} {text!r} must be {length} bytes ({2 * length} hex digits)")
    return value


def _window(args: argparse.Namespace) -> tuple[int, int]:
    not_before = parse_time(args.not_before, "--not-before")
    if (args.valid_for is None) == (args.expires is None):
        raise CliError("give the window as --valid-for DURATION or --expires TIME")
    if args.valid_for is not None:
        return not_before, not_before + parse_duration(args.valid_for)
    return not_before, parse_time(args.expires, "--expires")


def _emit(out: Output, name: str, data: bytes, fmt: str, summary: dict[str, Any]) -> None:
    """Print a signed object like ``mint`` prints a token: encoded text, raw bytes or JSON."""
    if out.json_mode:
        shown = "hex" if fmt == "raw" else fmt
        out.data({**summary, "format": shown, name: encode_token(data, shown)})
    elif fmt == "raw":
        out.raw(data)
    else:
        out.line(encode_token(data, fmt))


def _json_flag(p: argparse.ArgumentParser) -> None:
    # Subcommands of a subcommand need their own --json (argparse hands them the rest).
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print one JSON object for machines instead of text")


# -- grant --------------------------------------------------------------------------


def _grant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", metavar="PATH",
                   help="the signer's private key: a carmaker root (first grant) or the "
                        "grantee of --parent (delegation)")
    p.add_argument("--grantee", metavar="PUBFILE", help="the grantee's public key file")
    p.add_argument("--grantee-name", metavar="NAME",
                   help="the grantee's name: tokens under a chain ending here carry it as iss")
    p.add_argument("--vehicle", action="append", default=[], metavar="ID",
                   help="a vehicle the grant covers (repeatable; required in a first grant)")
    p.add_argument("--action", action="append", default=[],
                   choices=[a.value for a in Action], help="an allowed action (repeatable)")
    p.add_argument("--purpose", action="append", default=[],
                   choices=[x.value for x in Purpose],
                   help="an allowed purpose (repeatable; default delivery)")
    p.add_argument("--not-before", metavar="TIME", default="now", help="start (default now)")
    p.add_argument("--valid-for", metavar="DURATION", help="length, e.g. 30d, 7d, 12h")
    p.add_argument("--expires", metavar="TIME", help="end of the window")
    p.add_argument("--place", action="append", default=[], metavar="LAT,LON,RADIUS_M",
                   help="a geofence the grant is limited to (repeatable; write --place=-33.9,..)")
    p.add_argument("--daily-limit", type=int, metavar="N", help="opens per UTC day (1-1000)")
    p.add_argument("--depth", type=int, default=0, metavar="N",
                   help="delegations allowed below this grant (0-3, default 0)")
    p.add_argument("--parent", metavar="FILE_OR_TEXT",
                   help="delegate under this chain (or single grant); the grant must narrow it")
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex", help="output encoding")
    sub = p.add_subparsers(dest="grant_operation", metavar="{inspect}", parser_class=type(p))
    sub.required = False
    inspect = sub.add_parser("inspect", help="decode a grant or chain WITHOUT verifying it",
                             description="decode a grant or chain WITHOUT verifying it")
    _json_flag(inspect)
    inspect.add_argument("grant", metavar="FILE_OR_TEXT", help="a grant or a chain")


def _grant(args: argparse.Namespace, out: Output) -> int:
    if args.grant_operation == "inspect":
        return _grant_inspect(args, out)
    missing = [name for name, value in (
        ("--key", args.key), ("--grantee", args.grantee), ("--grantee-name", args.grantee_name),
        ("--action", args.action),
    ) if not value]
    if missing:
        raise CliError(f"grant needs {', '.join(missing)} (see 'trunkkey grant --help')")
    key = load_signing_key(args.key)
    grantee = load_public_key(args.grantee)
    not_before, expires = _window(args)
    grant = make_grant(
        grantee=grantee, grantee_name=args.grantee_name,
        access=access_mask(args.action, args.purpose or [Purpose.DELIVERY]),
        not_before=not_before, expires=expires, depth=args.depth,
        vehicle_ids=args.vehicle or None,
        places=[parse_place(text) for text in args.place] or None,
        daily_limit=args.daily_limit,
    )
    if args.parent:
        scope, leaf = unverified_scope(chain_links(read_blob(args.parent, "--parent"),
                                                   "--parent"), "--parent")
        if leaf.grantee != key.public_key:
            raise CliError("--key is not the grantee of the --parent chain's last grant; "
                           "only that key may delegate under it")
        signed = sign_delegation(key, scope, grant)
    else:
        signed = sign_root_grant(key, grant)
    _emit(out, "grant", signed, args.format, {
        "size": len(signed), "digest": grant_digest(signed).hex(),
        "delegation": bool(args.parent), "signer_kid": key.kid.hex(),
        "content": grant_json(grant),
    })
    return EXIT_OK


def _access_names(access: int) -> tuple[list[str], list[str]]:
    return ([a.value for a in Action if access & a.bit],
            [x.value for x in Purpose if access & x.bit])


def grant_json(grant: Grant) -> dict[str, Any]:
    actions, purposes = _access_names(grant.access)
    return {
        "grantee": {"alg": grant.grantee.algorithm.cose_name, "kid": grant.grantee.kid.hex()},
        "grantee_name": grant.grantee_name,
        "actions": actions, "purposes": purposes, "access": grant.access,
        "not_before": grant.not_before, "expires": grant.expires,
        "not_before_utc": utc(grant.not_before), "expires_utc": utc(grant.expires),
        "depth": grant.depth,
        "vehicle_tags": None if grant.vehicles is None else sorted(v.hex() for v in grant.vehicles),
        "places": None if grant.places is None else [
            {"latitude": p.centre.latitude, "longitude": p.centre.longitude,
             "radius_m": p.radius_m} for p in grant.places
        ],
        "daily_limit": grant.daily_limit,
    }


def _grant_inspect(args: argparse.Namespace, out: Output) -> int:
    links = chain_links(read_blob(args.grant, "grant"), "grant")
    shown = []
    for index, link in enumerate(links):
        where = "grant" if len(links) == 1 else f"link {index}"
        if len(link) == DIGEST_LENGTH:
            shown.append({"digest": link.hex(), "by_digest": True})
            continue
        header, grant = _open_grant(link, where)
        shown.append({
            "size": len(link), "digest": grant_digest(link).hex(), "by_digest": False,
            "header": {"alg": header.alg, "alg_name": _alg_name(header.alg),
                       "kid": None if header.kid is None else header.kid.hex()},
            "content": grant_json(grant),
        })
    out.data({"unverified": True, "warning": _UNVERIFIED_BANNER, "links": shown})
    out.line(_UNVERIFIED_BANNER)
    for index, item in enumerate(shown):
        if len(shown) > 1:
            out.line(f"-- link {index} " + "-" * 40)
        _print_link(out, item)
    out.line(_UNVERIFIED_BANNER)
    return EXIT_OK


def _alg_name(alg: int) -> str:
    try:
        return Algorithm(alg).cose_name
    except ValueError:
        return "unknown"


def _print_link(out: Output, item: dict[str, Any]) -> None:
    if item["by_digest"]:
        out.line(f"by digest:   {item['digest']} (a grant the car must already hold)")
        return
    g, h = item["content"], item["header"]
    signer = (f"carmaker root kid {h['kid']} (first grant)" if h["kid"]
              else "the previous link's grantee (delegation)")
    out.line(f"size:        {item['size']} bytes, digest {item['digest']}")
    out.line(f"signed by:   {signer}, {h['alg_name']}")
    out.line(f"grantee:     {g['grantee_name']} ({g['grantee']['alg']} kid {g['grantee']['kid']})")
    out.line(f"actions:     {', '.join(g['actions'])}")
    out.line(f"purposes:    {', '.join(g['purposes'])}")
    out.line(f"not before:  {g['not_before_utc']}  ({g['not_before']})")
    out.line(f"expires:     {g['expires_utc']}  ({g['expires']}; "
             f"window {human_duration(g['expires'] - g['not_before'])})")
    out.line(f"depth:       {g['depth']} further delegation(s) allowed")
    tags = g["vehicle_tags"]
    out.line("vehicles:    inherited" if tags is None
             else f"vehicles:    {', '.join(tags)} (SHA-256(vehicle id)[:8])")
    places = g["places"]
    if places is None:
        out.line("places:      inherited (in a first grant: anywhere)")
    for p in places or []:
        out.line(f"place:       within {p['radius_m']} m of "
                 f"{p['latitude']:.7f},{p['longitude']:.7f}")
    limit = g["daily_limit"]
    out.line("daily limit: inherited / none" if limit is None
             else f"daily limit: {limit} opens per UTC day")


# -- chain ----------------------------------------------------------------------------


def _chain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("links", nargs="+", metavar="FILE_OR_TEXT",
                   help="grants in order, root grant first (a chain given here is spliced in)")
    p.add_argument("--by-digest", action="store_true",
                   help="name every grant by its digest (for a car that already holds them)")
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex", help="output encoding")


def _chain(args: argparse.Namespace, out: Output) -> int:
    links: list[bytes] = []
    for n, text in enumerate(args.links):
        links += chain_links(read_blob(text, f"link {n}"), f"link {n}")
    for n, link in enumerate(links):
        if len(link) != DIGEST_LENGTH:
            _open_grant(link, f"link {n}")
    if args.by_digest:
        links = [link if len(link) == DIGEST_LENGTH else grant_digest(link) for link in links]
    chain = encode_chain(links)
    _emit(out, "chain", chain, args.format, {
        "size": len(chain),
        "links": [
            {"digest": (link if len(link) == DIGEST_LENGTH else grant_digest(link)).hex(),
             "size": len(link), "by_digest": len(link) == DIGEST_LENGTH}
            for link in links
        ],
    })
    return EXIT_OK


# -- revocations ------------------------------------------------------------------------


def _revocations_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="revocations_operation", metavar="{make,inspect}",
                           parser_class=type(p))
    sub.required = True
    make = sub.add_parser("make", help="sign a versioned revocation list (a complete snapshot)",
                          description="sign a versioned revocation list (a complete snapshot)")
    _json_flag(make)
    make.add_argument("--key", required=True, metavar="PATH", help="carmaker root private key")
    make.add_argument("--version", required=True, type=int, metavar="N",
                      help="list version; a car applies only a version above the one it holds")
    make.add_argument("--issued-at", metavar="TIME", default="now", help="default now")
    make.add_argument("--grant", action="append", default=[], metavar="FILE_OR_TEXT",
                      help="revoke this grant (the grant, or its 32-byte digest in hex)")
    make.add_argument("--kid", action="append", default=[], metavar="HEX",
                      help="revoke this key id (8 bytes hex)")
    make.add_argument("--revoke-key", action="append", default=[], metavar="PUBFILE",
                      help="revoke this public key (by its kid)")
    make.add_argument("--token-id", action="append", default=[], metavar="HEX",
                      help="revoke this token id (16 bytes hex)")
    make.add_argument("--supersede", action="append", default=[], metavar="ORDER_REF=TIME",
                      help="refuse tokens for this order issued before TIME")
    make.add_argument("--format", choices=TOKEN_FORMATS, default="hex", help="output encoding")
    inspect = sub.add_parser("inspect", help="decode a revocation list WITHOUT verifying it",
                             description="decode a revocation list WITHOUT verifying it")
    _json_flag(inspect)
    inspect.add_argument("list", metavar="FILE_OR_TEXT", help="the signed list")


def _revocations(args: argparse.Namespace, out: Output) -> int:
    if args.revocations_operation == "inspect":
        return _revocations_inspect(args, out)
    key = load_signing_key(args.key)
    grants = []
    for text in args.grant:
        blob = read_blob(text, "--grant")
        if len(blob) == DIGEST_LENGTH:
            grants.append(blob)
        else:
            _open_grant(blob, "--grant")
            grants.append(grant_digest(blob))
    kids = [_hex_id(text, KID_LENGTH, "--kid") for text in args.kid]
    kids += [load_public_key(path).kid for path in args.revoke_key]
    supersede: dict[bytes, int] = {}
    for spec in args.supersede:
        ref, sep, when = spec.rpartition("=")
        if not sep or not ref:
            raise CliError(f"--supersede {spec!r}: expected ORDER_REF=TIME")
        supersede[ref.encode("utf-8")] = parse_time(when, "--supersede")
    signed = sign_revocation_list(
        key, version=args.version, issued_at=parse_time(args.issued_at, "--issued-at"),
        grants=grants, keys=kids,
        tokens=[_hex_id(text, 16, "--token-id") for text in args.token_id],
        supersede=supersede,
    )
    listing = decode_revocations(parse_sign1(signed).payload)
    _emit(out, "list", signed, args.format, {"size": len(signed), "signer_kid": key.kid.hex(),
                                             "content": revocations_json(listing)})
    return EXIT_OK


def revocations_json(rl: RevocationList) -> dict[str, Any]:
    return {
        "version": rl.version, "issued_at": rl.issued_at, "issued_at_utc": utc(rl.issued_at),
        "grants": sorted(d.hex() for d in rl.grants),
        "kids": sorted(k.hex() for k in rl.keys),
        "token_ids": sorted(t.hex() for t in rl.tokens),
        "supersede": [
            {"order_ref": ref.decode("utf-8", "replace"), "order_ref_hex": ref.hex(),
             "min_iat": floor, "min_iat_utc": utc(floor)}
            for ref, floor in sorted(rl.supersede.items())
        ],
    }


def _revocations_inspect(args: argparse.Namespace, out: Output) -> int:
    data = read_blob(args.list, "revocation list")
    try:
        parts = parse_sign1(data)
        header = decode_protected(parts.protected)
        if isinstance(header, HeaderProblem) or header.typ != Typ.REVOCATION_LIST:
            raise CliError("not a revocation list (wrong or malformed protected header)")
        listing = decode_revocations(parts.payload)
    except DecodeError as exc:
        raise CliError(f"not a revocation list: {exc}") from None
    shown = revocations_json(listing)
    kid = None if header.kid is None else header.kid.hex()
    out.data({"unverified": True, "warning": _UNVERIFIED_BANNER, "size": len(data),
              "signer_kid": kid, "content": shown})
    out.line(_UNVERIFIED_BANNER)
    out.line(f"size:        {len(data)} bytes, signed by root kid {kid}")
    out.line(f"version:     {listing.version}")
    out.line(f"issued at:   {shown['issued_at_utc']}  ({listing.issued_at})")
    for label, key in (("grant", "grants"), ("key id", "kids"), ("token id", "token_ids")):
        values = shown[key]
        out.line(f"{label + 's:':<12} {len(values)}")
        for value in values:
            out.line(f"  revoked {label}: {value}")
    out.line(f"{'orders:':<12} {len(shown['supersede'])}")
    for item in shown["supersede"]:
        out.line(f"  order {item['order_ref']!r}: tokens issued before "
                 f"{item['min_iat_utc']} are superseded")
    out.line(_UNVERIFIED_BANNER)
    return EXIT_OK


# -- verify --chain / --root -------------------------------------------------------------


def add_verify_options(p: argparse.ArgumentParser) -> None:
    """The consent options of ``verify``."""
    p.add_argument("--root", action="append", default=[], metavar="PUBFILE",
                   help="a carmaker root key the car holds as its anchor (repeatable); "
                        "enables consent chains")
    p.add_argument("--chain", metavar="FILE_OR_TEXT",
                   help="the consent chain the token hangs from (needs --root)")
    p.add_argument("--revocations", metavar="FILE_OR_TEXT",
                   help="a signed revocation list the car applies first (needs --root)")


def consent_for_verify(
    args: argparse.Namespace, now: int
) -> tuple[ConsentVerifier | None, bytes | None]:
    """The car's consent side for one ``verify`` run, and the chain presented."""
    if not args.root:
        if args.chain or args.revocations:
            raise CliError("--chain and --revocations need --root PUBFILE "
                           "(the carmaker root key the car trusts)")
        return None, None
    roots = [RootKey(key=load_public_key(path)) for path in args.root]
    # The car's own key signs receipts only; this one-shot check never makes one.
    anchors = VehicleAnchors(
        vehicle_id=args.vehicle, vehicle_key=SigningKey.generate(), roots=roots
    )
    state = RevocationState()
    if args.revocations:
        try:
            state.apply(read_blob(args.revocations, "--revocations"), anchors, now=now)
        except UpdateRefused as exc:
            raise CliError(f"--revocations refused: {exc.reason.value}: {exc.detail}") from None
    chain = None
    if args.chain:
        data = read_blob(args.chain, "--chain")
        # A single grant is a one-link chain; anything else goes to the car as given.
        chain = encode_chain([data]) if data[:1] == bytes([_TAG_SIGN1]) else data
    return ConsentVerifier(anchors=anchors, revocations=state), chain


for _cmd in (
    Command(
        name="grant",
        help="sign a consent grant (root or delegation); 'grant inspect' decodes one UNVERIFIED",
        configure=_grant_args,
        run=_grant,
    ),
    Command(
        name="chain",
        help="join grants into the consent chain a courier presents with a token",
        configure=_chain_args,
        run=_chain,
    ),
    Command(
        name="revocations",
        help="'revocations make' signs a versioned revocation list; 'inspect' decodes one",
        configure=_revocations_args,
        run=_revocations,
    ),
):
    register(_cmd)
