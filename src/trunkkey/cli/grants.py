"""``grant``, ``grant inspect`` and ``chain``: consent grants and the chains couriers carry.

Every grant or chain argument is ``FILE_OR_TEXT``: a file holding raw CBOR,
hex or base64url, or the hex/base64url text itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from .. import cbor
from ..claims import Action, Purpose
from ..consent.grant import (
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
from ..cose import ProtectedHeader, Typ
from ..errors import DecodeError
from ..inspect import open_unverified
from ._io import (
    EXIT_OK,
    TOKEN_FORMATS,
    CliError,
    Command,
    Output,
    emit,
    examples,
    json_flag,
    load_public_key,
    load_signing_key,
    parse_duration,
    parse_geofence,
    parse_time,
    password_flag,
    read_blob,
    refuse_raw_on_terminal,
)
from ._show import alg_name, human_duration, utc

#: Above and below every consent object shown without checking it.
UNVERIFIED_BANNER = (
    "*** UNVERIFIED: nothing below is checked (signature, signer, narrowing, time). "
    "Never decide anything from it. ***"
)
_TAG_SIGN1 = 0xD2


# -- reading grants and chains, UNVERIFIED ------------------------------------------


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


def open_grant(link: bytes, where: str) -> tuple[ProtectedHeader, Grant]:
    """Header and decoded payload of one grant, UNVERIFIED."""
    if len(link) == DIGEST_LENGTH:
        raise CliError(f"{where} names a grant by its digest; give the grant itself")
    try:
        opened = open_unverified(link, Typ.GRANT)
        if opened is None:
            raise CliError(f"{where} is not a grant (wrong or malformed protected header)")
        return opened[0], decode_grant(opened[1])
    except DecodeError as exc:
        raise CliError(f"{where} is not a grant: {exc}") from None


def _unverified_scope(links: list[bytes], what: str) -> tuple[Scope, Grant]:
    """The narrowest scope of a chain and its last grant, read WITHOUT checking signatures."""
    scope: Scope | None = None
    grant: Grant | None = None
    for index, link in enumerate(links):
        where = f"{what} link {index}"
        _, grant = open_grant(link, where)
        got = root_scope(grant) if scope is None else narrow(scope, grant)
        if isinstance(got, str):
            raise CliError(f"{where}: {got}")
        scope = got
    if scope is None or grant is None:
        raise CliError(f"{what} holds no grant")
    return scope, grant


def _window(args: argparse.Namespace) -> tuple[int, int]:
    not_before = parse_time(args.not_before, "--not-before")
    if (args.valid_for is None) == (args.expires is None):
        raise CliError("give the window as --valid-for DURATION or --expires TIME")
    if args.valid_for is not None:
        return not_before, not_before + parse_duration(args.valid_for)
    return not_before, parse_time(args.expires, "--expires")


# -- grant ----------------------------------------------------------------------------


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
                   choices=[a.value for a in Action],
                   help="an allowed action (repeatable): trunk (open the trunk, then relock) "
                        "or unlock-relock (unlock the doors, then relock)")
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
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex",
                   help="output encoding: hex (default), base64url, or raw bytes (redirected)")
    password_flag(p)
    sub = p.add_subparsers(dest="grant_operation", metavar="{inspect}", parser_class=type(p))
    sub.required = False
    inspect = sub.add_parser("inspect", help="decode a grant or chain WITHOUT verifying it",
                             description="decode a grant or chain WITHOUT verifying it",
                             epilog=examples("trunkkey grant inspect consent.grant",
                                             "trunkkey grant inspect delivery.chain --json"))
    json_flag(inspect)
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
    refuse_raw_on_terminal(args.format, out)
    key = load_signing_key(args.key, password_file=args.password_file)
    grantee = load_public_key(args.grantee)
    not_before, expires = _window(args)
    grant = make_grant(
        grantee=grantee, grantee_name=args.grantee_name,
        access=access_mask(args.action, args.purpose or [Purpose.DELIVERY]),
        not_before=not_before, expires=expires, depth=args.depth,
        vehicle_ids=args.vehicle or None,
        places=[parse_geofence(text, "--place") for text in args.place] or None,
        daily_limit=args.daily_limit,
    )
    if args.parent:
        scope, leaf = _unverified_scope(chain_links(read_blob(args.parent, "--parent"),
                                                    "--parent"), "--parent")
        if leaf.grantee != key.public_key:
            raise CliError("--key is not the grantee of the --parent chain's last grant; "
                           "only that key may delegate under it")
        signed = sign_delegation(key, scope, grant)
    else:
        signed = sign_root_grant(key, grant)
    emit(out, "grant", signed, args.format, {
        "size": len(signed), "digest": grant_digest(signed).hex(),
        "delegation": bool(args.parent), "signer_kid": key.kid.hex(),
        "content": _grant_json(grant),
    })
    return EXIT_OK


def _grant_json(grant: Grant) -> dict[str, Any]:
    return {
        "grantee": {"alg": grant.grantee.algorithm.cose_name, "kid": grant.grantee.kid.hex()},
        "grantee_name": grant.grantee_name,
        "actions": [a.value for a in Action if grant.access & a.bit],
        "purposes": [x.value for x in Purpose if grant.access & x.bit],
        "access": grant.access,
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
        header, grant = open_grant(link, where)
        shown.append({
            "position": index,
            "size": len(link), "digest": grant_digest(link).hex(), "by_digest": False,
            "header": {"alg": header.alg, "alg_name": alg_name(header.alg),
                       "kid": None if header.kid is None else header.kid.hex()},
            "content": _grant_json(grant),
        })
    out.data({"unverified": True, "warning": UNVERIFIED_BANNER, "links": shown})
    out.line(UNVERIFIED_BANNER)
    for index, item in enumerate(shown):
        if len(shown) > 1:
            out.line(f"-- link {index} " + "-" * 40)
        _print_link(out, item)
    out.line(UNVERIFIED_BANNER)
    return EXIT_OK


def _print_link(out: Output, item: dict[str, Any]) -> None:
    if item["by_digest"]:
        out.line(f"by digest:   {item['digest']} (a grant the car must already hold)")
        return
    g, h = item["content"], item["header"]
    # Named by the header and the place together: a header out of its place is a
    # link the car refuses, and must not read like one it takes.
    first = item["position"] == 0
    if h["kid"]:
        signer = (f"carmaker root kid {h['kid']} (first grant)" if first else
                  f"kid {h['kid']} in a delegation: REFUSED by a car, only a first grant "
                  "names its signer")
    else:
        signer = ("the previous link's grantee (delegation)" if not first else
                  "no kid: REFUSED by a car, a first grant names its carmaker root")
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
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex",
                   help="output encoding: hex (default), base64url, or raw bytes (redirected)")


def _chain(args: argparse.Namespace, out: Output) -> int:
    links: list[bytes] = []
    for n, text in enumerate(args.links):
        links += chain_links(read_blob(text, f"link {n}"), f"link {n}")
    for n, link in enumerate(links):
        if len(link) != DIGEST_LENGTH:
            open_grant(link, f"link {n}")
    if args.by_digest:
        links = [link if len(link) == DIGEST_LENGTH else grant_digest(link) for link in links]
    chain = encode_chain(links)
    emit(out, "chain", chain, args.format, {
        "size": len(chain),
        "links": [
            {"digest": (link if len(link) == DIGEST_LENGTH else grant_digest(link)).hex(),
             "size": len(link), "by_digest": len(link) == DIGEST_LENGTH}
            for link in links
        ],
    })
    return EXIT_OK


COMMANDS = (
    Command(
        name="grant",
        help="sign a consent grant (root or delegation); 'grant inspect' decodes one UNVERIFIED",
        examples=(
            "trunkkey grant --key carmaker.key --grantee retailer.pub \\",
            "    --grantee-name shop.example --vehicle WAUZZZ8V0KA000001 --action trunk \\",
            "    --valid-for 30d --depth 1 > consent.grant",
            "trunkkey grant --key retailer.key --parent consent.grant --grantee carrier.pub \\",
            "    --grantee-name dhl --action trunk --valid-for 7d > carrier.grant",
            "trunkkey grant inspect consent.grant",
        ),
        configure=_grant_args,
        run=_grant,
    ),
    Command(
        name="chain",
        help="join grants into the consent chain a courier presents with a token",
        examples=(
            "trunkkey chain consent.grant carrier.grant > delivery.chain",
            "trunkkey chain consent.grant carrier.grant --by-digest",
        ),
        configure=_chain_args,
        run=_chain,
    ),
)
