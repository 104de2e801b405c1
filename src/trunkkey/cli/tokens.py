"""``mint`` and ``inspect``: make a token, and read one WITHOUT verifying it."""

from __future__ import annotations

import argparse
import sys

from ..claims import Action, Purpose
from ..errors import TrunkkeyError
from ..inspect import inspect_unverified
from ..issuer import Issuer
from ._io import (
    EXIT_OK,
    TOKEN_FORMATS,
    CliError,
    Command,
    Output,
    emit,
    load_public_key,
    load_signing_key,
    parse_duration,
    parse_geofence,
    parse_time,
    read_token,
)
from ._show import alg_name, claims_json, print_claims, typ_name

_UNVERIFIED_BANNER = (
    "*** UNVERIFIED: nothing below is checked (signature, key, time, place). "
    "Never decide anything from it. ***"
)


def token_args(p: argparse.ArgumentParser) -> None:
    """The token argument of every command that reads one."""
    p.add_argument("token", nargs="?", help="the token (hex or base64url); omit or - for stdin")
    p.add_argument("--format", choices=TOKEN_FORMATS, default=None,
                   help="how the token is encoded (default: detect)")


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
    p.add_argument("--parcel", metavar="ID", action="append", default=None,
                   help="a parcel of the order (repeat, up to 16): the car opens only for a "
                        "courier whose device scanned it; needs --courier-key")
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
        courier_key=courier, order_ref=order_ref, parcels=args.parcel,
    )
    token = issuer.sign_claims(claims)
    emit(out, "token", token, args.format,
         {"size": len(token), "kid": key.kid.hex(), "claims": claims_json(claims)})
    return EXIT_OK


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
        "header": {"alg": h.alg, "alg_name": alg_name(h.alg), "typ": h.typ,
                   "typ_name": typ_name(h.typ), "kid": None if h.kid is None else h.kid.hex()},
        "signature_size": len(seen.signature),
        "claims": claims_json(seen.claims),
    })
    out.line(_UNVERIFIED_BANNER)
    out.line(f"size:        {seen.size} bytes (signature {len(seen.signature)})")
    out.line(f"algorithm:   {alg_name(h.alg)} ({h.alg})")
    out.line(f"key id:      {'none' if h.kid is None else h.kid.hex()}")
    out.line(f"type:        {h.typ} ({typ_name(h.typ)})")
    print_claims(out, seen.claims)
    out.line(_UNVERIFIED_BANNER)
    return EXIT_OK


COMMANDS = (
    Command(
        name="mint",
        help="mint a one-time token for one vehicle, action and window",
        configure=_mint_args,
        run=_mint,
    ),
    Command(
        name="inspect",
        help="decode a token WITHOUT verifying it (a debugger, not a check)",
        configure=token_args,
        run=_inspect,
    ),
)
