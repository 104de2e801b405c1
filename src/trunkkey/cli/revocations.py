"""``revocations make|inspect``: the carmaker's signed, versioned revocation lists."""

from __future__ import annotations

import argparse
from typing import Any

from ..consent.grant import DIGEST_LENGTH, grant_digest
from ..consent.revocation import RevocationList, decode_revocations, sign_revocation_list
from ..cose import ProtectedHeader, Typ, parse_sign1
from ..errors import DecodeError
from ..inspect import open_unverified
from ..keys import KID_LENGTH
from ._io import (
    EXIT_OK,
    TOKEN_FORMATS,
    CliError,
    Command,
    Output,
    emit,
    examples,
    hex_id,
    json_flag,
    load_public_key,
    load_signing_key,
    parse_time,
    password_flag,
    read_blob,
    refuse_raw_on_terminal,
)
from ._show import utc
from .grants import UNVERIFIED_BANNER, open_grant


def _revocations_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="revocations_operation", metavar="{make,inspect}",
                           parser_class=type(p))
    sub.required = True
    make = sub.add_parser("make", help="sign a versioned revocation list (a complete snapshot)",
                          description="sign a versioned revocation list (a complete snapshot)",
                          epilog=examples(
                              "trunkkey revocations make --key carmaker.key --version 1 "
                              "--grant consent.grant > v1.list",
                              "trunkkey revocations make --key carmaker.key --version 2 "
                              "--kid 8d5e0c1a2b3c4d5e --supersede 112-4408817=now > v2.list"))
    json_flag(make)
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
    make.add_argument("--previous", metavar="FILE_OR_TEXT",
                      help="the list this one replaces: every entry it holds is carried over "
                           "(a list is a complete snapshot: an entry left out is un-revoked)")
    make.add_argument("--format", choices=TOKEN_FORMATS, default="hex",
                      help="output encoding: hex (default), base64url, or raw bytes (redirected)")
    password_flag(make)
    inspect = sub.add_parser("inspect", help="decode a revocation list WITHOUT verifying it",
                             description="decode a revocation list WITHOUT verifying it",
                             epilog=examples("trunkkey revocations inspect v1.list",
                                             "trunkkey revocations inspect v1.list --json"))
    json_flag(inspect)
    inspect.add_argument("list", metavar="FILE_OR_TEXT", help="the signed list")


def _grant_digests(texts: list[str]) -> list[bytes]:
    digests = []
    for text in texts:
        blob = read_blob(text, "--grant")
        if len(blob) == DIGEST_LENGTH:
            digests.append(blob)
        else:
            open_grant(blob, "--grant")
            digests.append(grant_digest(blob))
    return digests


def _read_list(data: bytes, option: str = "") -> tuple[ProtectedHeader, RevocationList]:
    """The header and content of a signed revocation list, UNVERIFIED (``option``:
    the option that gave it, named in errors)."""
    where = f" ({option})" if option else ""
    try:
        opened = open_unverified(data, Typ.REVOCATION_LIST)
        if opened is None:
            raise CliError(f"not a revocation list{where} (wrong or malformed protected header)")
        return opened[0], decode_revocations(opened[1])
    except DecodeError as exc:
        raise CliError(f"not a revocation list{where}: {exc}") from None


def _carried(args: argparse.Namespace) -> RevocationList:
    """What ``--previous`` revoked (nothing without it): a new list keeps all of it."""
    if args.previous is None:
        return RevocationList()
    _, previous = _read_list(read_blob(args.previous, "--previous"), "--previous")
    if args.version <= previous.version:
        raise CliError(f"--version {args.version} is not newer than the previous list's "
                       f"version {previous.version}: a car that holds it refuses this one")
    return previous


def _revocations(args: argparse.Namespace, out: Output) -> int:
    if args.revocations_operation == "inspect":
        return _revocations_inspect(args, out)
    refuse_raw_on_terminal(args.format, out)
    key = load_signing_key(args.key, password_file=args.password_file)
    previous = _carried(args)
    grants = [*previous.grants, *_grant_digests(args.grant)]
    kids = [*previous.keys, *(hex_id(text, KID_LENGTH, "--kid") for text in args.kid)]
    kids += [load_public_key(path).kid for path in args.revoke_key]
    # Carried floors first: one given again on the command line replaces its own.
    supersede: dict[bytes, int] = dict(previous.supersede)
    for spec in args.supersede:
        ref, sep, when = spec.rpartition("=")
        if not sep or not ref:
            raise CliError(f"--supersede {spec!r}: expected ORDER_REF=TIME")
        supersede[ref.encode("utf-8")] = parse_time(when, "--supersede")
    signed = sign_revocation_list(
        key, version=args.version, issued_at=parse_time(args.issued_at, "--issued-at"),
        grants=grants, keys=kids,
        tokens=[*previous.tokens, *(hex_id(text, 16, "--token-id") for text in args.token_id)],
        supersede=supersede,
    )
    listing = decode_revocations(parse_sign1(signed).payload)
    emit(out, "list", signed, args.format, {"size": len(signed), "signer_kid": key.kid.hex(),
                                            "content": _revocations_json(listing)})
    return EXIT_OK


def _revocations_json(rl: RevocationList) -> dict[str, Any]:
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
    header, listing = _read_list(data)
    shown = _revocations_json(listing)
    kid = None if header.kid is None else header.kid.hex()
    out.data({"unverified": True, "warning": UNVERIFIED_BANNER, "size": len(data),
              "signer_kid": kid, "content": shown})
    out.line(UNVERIFIED_BANNER)
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
    out.line(UNVERIFIED_BANNER)
    return EXIT_OK


COMMANDS = (
    Command(
        name="revocations",
        help="'revocations make' signs a versioned revocation list; 'inspect' decodes one",
        examples=(
            "trunkkey revocations make --key carmaker.key --version 1 --grant consent.grant "
            "> v1.list",
            "trunkkey revocations inspect v1.list",
            "trunkkey revocations make --help",
        ),
        configure=_revocations_args,
        run=_revocations,
    ),
)
