"""``verify`` and ``prove``: the car's decision on a token, and the courier's answer to it.

``verify --chain ... --root ...`` builds the car's consent side too: a
verifier whose only anchors are the carmaker root keys given, as in the car.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..claims import Action, Purpose
from ..clock import ManualClock
from ..cose import parse_sign1
from ..errors import DecodeError, TrunkkeyError
from ..keys import SigningKey, VerificationKey
from ..sealed import is_sealed
from ..trust import TrustedKey, TrustStore
from ..verifier import Decision, Verifier
from ._io import (
    EXIT_DENIED,
    EXIT_OK,
    CliError,
    Command,
    Output,
    load_public_key,
    load_signing_key,
    parse_hex,
    parse_location,
    parse_time,
    password_flag,
    read_blob,
    read_bounded,
    read_token,
)
from ._show import claims_json, parcels_json, utc
from .ledger import open_ledger
from .tokens import action_help, decode_token, presented_chain, token_args

if TYPE_CHECKING:
    from ..consent.chain import ConsentVerifier
    from ..sealed import CarKeyring


# -- trusted keys ---------------------------------------------------------------


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
    data = read_bounded(Path(path_text), "trust store", str(Path(path_text)))
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"trust store {path_text!r} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise CliError(f"trust store {path_text!r} must be an object with a \"keys\" list")
    return [
        _trusted_key(item, f"trust store {path_text!r} key {n}")
        for n, item in enumerate(document["keys"])
    ]


def _trusted_key(item: object, where: str) -> TrustedKey:
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
        return TrustedKey.create(key, item["issuer"], not_before=times[0], not_after=times[1])
    except (TrunkkeyError, UnicodeEncodeError) as exc:
        raise CliError(f"{where}: {exc}") from None


# -- the consent side: --root, --chain, --revocations ----------------------------


def _consent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", action="append", default=[], metavar="PUBFILE",
                   help="a carmaker root key the car holds as its anchor (repeatable); "
                        "enables consent chains")
    p.add_argument("--chain", metavar="FILE_OR_TEXT",
                   help="the consent chain the token hangs from (needs --root)")
    p.add_argument("--revocations", metavar="FILE_OR_TEXT",
                   help="a signed revocation list the car applies first (needs --root)")


def _consent_for_verify(
    args: argparse.Namespace, now: int
) -> tuple[ConsentVerifier | None, bytes | None]:
    """The car's consent side for one ``verify`` run, and the chain presented."""
    if not args.root:
        if args.chain or args.revocations:
            raise CliError("--chain and --revocations need --root PUBFILE "
                           "(the carmaker root key the car trusts)")
        return None, None
    # Imported only for a run that trusts a root: a plain ``verify`` is one
    # car's cold start, and the consent layer is a third of its imports.
    from ..consent.anchors import RootKey, VehicleAnchors  # noqa: PLC0415
    from ..consent.chain import ConsentVerifier  # noqa: PLC0415
    from ..consent.errors import UpdateRefused  # noqa: PLC0415
    from ..consent.revocation import RevocationState  # noqa: PLC0415

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
    chain = presented_chain(args.chain) if args.chain else None
    return ConsentVerifier(anchors=anchors, revocations=state), chain


# -- verify -----------------------------------------------------------------------


def _verify_args(p: argparse.ArgumentParser) -> None:
    token_args(p)
    p.add_argument("--trust", action="append", default=[], metavar="PUBFILE:ISSUER[:NB:NA]",
                   help="trust this issuer key (repeatable)")
    p.add_argument("--trust-store", metavar="JSON", help="trust-store JSON file")
    p.add_argument("--vehicle", required=True, help="this vehicle's id")
    p.add_argument("--action", required=True, choices=[a.value for a in Action],
                   help=action_help("what the courier asks this car to do"))
    p.add_argument("--purpose", choices=[p.value for p in Purpose],
                   help="also require this purpose")
    p.add_argument("--at", metavar="TIME", default="now", help="verification time (default now)")
    p.add_argument("--location", metavar="LAT,LON", help="the car's position")
    p.add_argument("--proof", metavar="HEX", help="the courier device's proof of possession")
    p.add_argument("--challenge", metavar="HEX", help="the challenge the proof answers")
    p.add_argument("--ledger", metavar="PATH",
                   help="SQLite replay ledger (default: in-memory, forgotten on exit)")
    p.add_argument("--car-key", action="append", default=[], metavar="CAR_KEYFILE",
                   help="this car's KEM private key, which opens sealed tokens (repeatable: "
                        "the old and the new key during a rotation)")
    _consent_args(p)


def _trust_store(args: argparse.Namespace) -> TrustStore:
    keys = [parse_trust(spec) for spec in args.trust]
    if args.trust_store:
        keys += load_trust_store_file(args.trust_store)
    if not keys and not args.root:
        raise CliError(
            "no trusted keys: give --trust PUBFILE:ISSUER, --trust-store FILE "
            "or --root PUBFILE (with --chain)"
        )
    try:
        return TrustStore(keys)
    except TrunkkeyError as exc:
        raise CliError(str(exc)) from None


def _verify(args: argparse.Namespace, out: Output) -> int:
    token = read_token(args.token, args.format, sys.stdin)
    store = _trust_store(args)
    now = parse_time(args.at, "--at")
    location = parse_location(args.location) if args.location else None
    proof = parse_hex(args.proof, "--proof") if args.proof else None
    challenge = parse_hex(args.challenge, "--challenge") if args.challenge else None
    consent, chain = _consent_for_verify(args, now)
    try:
        # Bytes that are no whole COSE_Sign1 (cut short, or trailing bytes) were
        # never a token: bad input (exit 2), as an odd-length hex text is. A
        # whole signed object the car refuses is a denial (exit 1). A sealed
        # token cannot be judged so without the car's key: the car decides.
        if not is_sealed(token):
            parse_sign1(token)
    except DecodeError as exc:
        raise CliError(f"cannot decode token ({len(token)} bytes; truncated?): {exc}") from None
    car_keys = _car_keyring(args.car_key)
    with open_ledger(args.ledger, create=True) as ledger:
        verifier = Verifier(
            trust_store=store, ledger=ledger, clock=ManualClock(now), consent=consent,
            car_keys=car_keys,
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


def _car_keyring(paths: list[str]) -> CarKeyring | None:
    if not paths:
        return None
    from ..sealed import CarKeyring, load_car_key  # noqa: PLC0415 -- loads pyhpke

    try:
        return CarKeyring(load_car_key(path) for path in paths)
    except TrunkkeyError as exc:
        raise CliError(f"--car-key: {exc}") from None


def _report_decision(out: Output, decision: Decision, ledger_text: str) -> None:
    out.data({
        "allowed": decision.allowed, "reason": decision.reason.value,
        "detail": decision.detail, "at": decision.at, "at_utc": utc(decision.at),
        "ledger": ledger_text,
        "claims": None if decision.claims is None else claims_json(decision.claims),
        "parcels": None if decision.parcels is None else parcels_json(decision.parcels),
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
    if decision.parcels is not None:
        out.line(f"parcels: {decision.parcels.describe()} scanned")


# -- prove --------------------------------------------------------------------------


def _prove_args(p: argparse.ArgumentParser) -> None:
    token_args(p)
    p.add_argument("--device-key", required=True, metavar="PATH",
                   help="the courier device's private key file")
    p.add_argument("--vehicle", required=True, help="the vehicle the token is presented to")
    p.add_argument("--challenge", required=True, metavar="HEX",
                   help="the car's challenge, 16 to 32 bytes")
    p.add_argument("--scan", metavar="ID", action="append", default=None,
                   help="a parcel identifier the handheld scanned (repeat, up to 16), "
                        "signed with the challenge")
    password_flag(p)


def _prove(args: argparse.Namespace, out: Output) -> int:
    # prove only: the proof module compares through hmac, which loads libcrypto.
    from ..proof import challenge_problem, make_proof  # noqa: PLC0415

    challenge = parse_hex(args.challenge, "--challenge")
    problem = challenge_problem(challenge)
    if problem is not None:
        raise CliError(f"--challenge: {problem}")
    token = read_token(args.token, args.format, sys.stdin)
    key = load_signing_key(args.device_key, password_file=args.password_file)
    if not is_sealed(token):  # a sealed token's claims are the car's to read, not the device's
        claims = decode_token(token).claims
        _check_presentation(claims.courier_key, claims.vehicle_id, key, args.vehicle)
    proof = make_proof(key, token=token, vehicle_id=args.vehicle, challenge=challenge,
                       scan=args.scan)
    out.data({"proof": proof.hex(), "size": len(proof)})
    out.line(proof.hex())
    return EXIT_OK


def _check_presentation(
    bound: VerificationKey | None, token_vehicle: str, key: SigningKey, vehicle: str
) -> None:
    """Refuse to sign a proof the car would refuse anyway, saying why in plain words."""
    if bound is None:
        raise CliError("the token is bound to no device (it has no courier key): "
                       "the car needs no proof for it; mint it with --courier-key")
    if bound != key.public_key:
        raise CliError(f"--device-key (kid {key.kid.hex()}) is not the device the token is "
                       f"bound to (kid {bound.kid.hex()})")
    if token_vehicle != vehicle:
        raise CliError(f"the token is for vehicle {token_vehicle!r}, not {vehicle!r}")


COMMANDS = (
    Command(
        name="verify",
        help="verify a token as the car would; exit 0 only if allowed",
        examples=(
            "trunkkey verify TOKEN --trust issuer.pub:shop.example \\",
            "    --vehicle WAUZZZ8V0KA000001 --action trunk --ledger car-ledger.db",
            "trunkkey verify token.hex --trust-store trust.json --vehicle VIN --action trunk "
            "--json",
            "trunkkey verify TOKEN --root carmaker.pub --chain delivery.chain --vehicle VIN "
            "--action trunk --proof PROOF --challenge CHALLENGE",
            "trunkkey verify SEALED --car-key car-kem.key --trust issuer.pub:shop.example "
            "--vehicle VIN --action trunk",
        ),
        configure=_verify_args,
        run=_verify,
    ),
    Command(
        name="prove",
        help="answer a car's challenge with the courier device key (hex out)",
        examples=(
            "trunkkey prove TOKEN --device-key handheld.key --vehicle WAUZZZ8V0KA000001 \\",
            "    --challenge 8f1d3a5be0c94c7e9a2b6d0f4e1c7a93",
            "trunkkey prove token.hex --device-key handheld.key --password-file pw.txt "
            "--vehicle VIN --challenge HEX",
        ),
        configure=_prove_args,
        run=_prove,
    ),
)
