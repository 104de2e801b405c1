"""``mint`` and ``inspect``: make a token, and read one WITHOUT verifying it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..claims import Action, Purpose
from ..encodings import transport_footprint
from ..errors import TrunkkeyError
from ..inspect import UnverifiedToken, inspect_unverified
from ..issuer import Issuer
from ..sealed import is_sealed
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
    password_flag,
    read_blob,
    read_bounded,
    read_token,
    refuse_raw_on_terminal,
)
from ._show import alg_name, claims_json, print_claims, typ_name

_TAG_SIGN1 = b"\xd2"

_UNVERIFIED_BANNER = (
    "*** UNVERIFIED: nothing below is checked (signature, key, time, place). "
    "Never decide anything from it. ***"
)


def token_args(p: argparse.ArgumentParser) -> None:
    """The token argument of every command that reads one."""
    p.add_argument("token", nargs="?",
                   help="the token: hex or base64url text, a file holding it (text or raw "
                        "CBOR), or - or nothing for stdin")
    p.add_argument("--format", choices=TOKEN_FORMATS, default=None,
                   help="how the token is encoded (default: detect)")


def action_help(who: str) -> str:
    """The help of an ``--action`` option."""
    return (f"{who}: trunk (open the trunk, then relock) or unlock-relock (unlock the "
            "doors, then relock)")


def decode_token(token: bytes) -> UnverifiedToken:
    """The token's header and claims, UNVERIFIED; a token that does not decode is an error.

    One rule for every command: bytes that are not a whole token (cut short,
    padded, not CBOR) are bad input, exit 2, whatever length they were cut to.
    """
    try:
        return inspect_unverified(token)
    except TrunkkeyError as exc:
        raise CliError(f"cannot decode token ({len(token)} bytes; truncated?): {exc}") from None


def _mint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, metavar="PATH", help="issuer's private key file")
    p.add_argument("--issuer", required=True, help="issuer name (the iss claim)")
    p.add_argument("--vehicle", required=True, help="the vehicle's id (the aud claim)")
    p.add_argument("--action", required=True, choices=[a.value for a in Action],
                   help=action_help("what the token allows"))
    p.add_argument("--purpose", default=Purpose.DELIVERY.value, choices=[p.value for p in Purpose],
                   help="delivery (default) or return-pickup")
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
    p.add_argument("--seal-to", metavar="CAR_PUBFILE",
                   help="seal the token to this car's KEM public key (PEM from 'trunkkey "
                        "keygen --kem'): only the car can read it")
    p.add_argument("--chain", metavar="FILE_OR_TEXT",
                   help="with --seal-to: the consent chain the token hangs from (or its one "
                        "grant), sealed inside with the token, so the courier carries nothing "
                        "else that names the car")
    p.add_argument("--format", choices=TOKEN_FORMATS, default="hex",
                   help="token encoding: hex (default), base64url, or raw bytes (redirected)")
    password_flag(p)


def presented_chain(text: str) -> bytes:
    """A ``--chain`` argument as the car takes it: a single grant is a one-link chain;
    anything else goes to the car as given."""
    from ..consent.grant import encode_chain  # noqa: PLC0415 -- the consent layer, when used

    data = read_blob(text, "--chain")
    return encode_chain([data]) if data[:1] == _TAG_SIGN1 else data


def _sealed_to(path_text: str, token: bytes, chain: bytes | None) -> bytes:
    from ..sealed import car_public_key, seal  # noqa: PLC0415 -- loads pyhpke

    data = read_bounded(Path(path_text), "car KEM public key file", path_text)
    try:
        key = car_public_key(data)
    except TrunkkeyError as exc:
        raise CliError(f"{path_text!r} is not a car's KEM public key: {exc}") from None
    try:
        return seal(token, key, chain=chain)
    except TrunkkeyError as exc:
        raise CliError(f"cannot seal the token{' with --chain' if chain else ''}: {exc}") from None


def _mint(args: argparse.Namespace, out: Output) -> int:
    refuse_raw_on_terminal(args.format, out)
    if args.chain and not args.seal_to:
        raise CliError("--chain is sealed with the token: give --seal-to CAR_PUBFILE "
                       "(a chain in the clear is passed to 'verify --chain' instead)")
    chain = presented_chain(args.chain) if args.chain else None
    key = load_signing_key(args.key, password_file=args.password_file)
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
    if args.seal_to:
        from ..sealed import describe_sealed  # noqa: PLC0415

        sealed = _sealed_to(args.seal_to, token, chain)
        emit(out, "token", sealed, args.format,
             {"size": len(sealed), "sealed": True, "suite": describe_sealed(sealed).suite,
              "signed_size": len(token), "chain_size": None if chain is None else len(chain),
              "kid": key.kid.hex(), "claims": claims_json(claims)})
        return EXIT_OK
    emit(out, "token", token, args.format,
         {"size": len(token), "kid": key.kid.hex(), "claims": claims_json(claims)})
    return EXIT_OK


def _inspect_sealed(token: bytes, out: Output) -> int:
    """All a sealed token shows without its car's key: that it is sealed, its size, its suite."""
    from ..sealed import describe_sealed  # noqa: PLC0415

    try:
        info = describe_sealed(token)
    except TrunkkeyError as exc:
        raise CliError(f"cannot decode sealed token ({len(token)} bytes): {exc}") from None
    out.data({"sealed": True, "size": info.size, "suite": info.suite,
              "transport": dataclasses.asdict(transport_footprint(info.size))})
    out.line("sealed:      yes: only the car it was sealed to can read it")
    out.line(f"size:        {info.size} bytes")
    out.line(f"suite:       {info.suite} (COSE-HPKE integrated encryption)")
    out.line(f"transport:   {_transport_line(info.size)}")
    return EXIT_OK


def _inspect(args: argparse.Namespace, out: Output) -> int:
    token = read_token(args.token, args.format, sys.stdin)
    if is_sealed(token):
        return _inspect_sealed(token, out)
    seen = decode_token(token)
    h = seen.header
    out.data({
        "unverified": True,
        "warning": _UNVERIFIED_BANNER,
        "size": seen.size,
        "header": {"alg": h.alg, "alg_name": alg_name(h.alg), "typ": h.typ,
                   "typ_name": typ_name(h.typ), "kid": None if h.kid is None else h.kid.hex()},
        "signature_size": len(seen.signature),
        "claims": claims_json(seen.claims),
        "transport": dataclasses.asdict(transport_footprint(seen.size)),
    })
    out.line(_UNVERIFIED_BANNER)
    out.line(f"size:        {seen.size} bytes (signature {len(seen.signature)})")
    out.line(f"algorithm:   {alg_name(h.alg)} ({h.alg})")
    out.line(f"key id:      {'none' if h.kid is None else h.kid.hex()}")
    out.line(f"type:        {h.typ} ({typ_name(h.typ)})")
    out.line(f"transport:   {_transport_line(seen.size)}")
    print_claims(out, seen.claims)
    out.line(_UNVERIFIED_BANNER)
    return EXIT_OK


def _transport_line(size: int) -> str:
    """The room the token takes as text and on a courier's links (see docs/encodings.md)."""
    fp = transport_footprint(size)
    ble = "/".join(str(fp.ble_writes[mtu]) for mtu in sorted(fp.ble_writes))
    return (f"hex {fp.hex_chars} chars, base64url {fp.base64url_chars}; BLE {ble} writes "
            f"at MTU 23/247/517; NFC {fp.nfc_short_apdus} short APDU(s); "
            f"QR version {fp.qr_version_bytes['M']} (level M)")


COMMANDS = (
    Command(
        name="mint",
        help="mint a one-time token for one vehicle, action and window",
        examples=(
            "trunkkey mint --key issuer.key --issuer shop.example --vehicle WAUZZZ8V0KA000001 \\",
            "    --action trunk --valid-for 4h --courier-key handheld.pub > token.hex",
            "trunkkey mint ... --not-before 2030-01-01T09:00:00Z --expires 2030-01-01T13:00:00Z",
            "trunkkey mint ... --format raw > token.cbor",
            "trunkkey mint ... --seal-to car-kem.pub > sealed.hex   # only the car reads it",
        ),
        configure=_mint_args,
        run=_mint,
    ),
    Command(
        name="inspect",
        help="decode a token WITHOUT verifying it (a debugger, not a check)",
        examples=(
            "trunkkey inspect d28443a10127...",
            "trunkkey inspect token.hex --json",
            "trunkkey mint ... | trunkkey inspect",
        ),
        configure=token_args,
        run=_inspect,
    ),
)
