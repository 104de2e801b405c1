"""Write ``docs/test-vectors.json``: known-answer vectors for trunkkey token v1.

Every vector is a token, the keys a verifier trusts, the verification
context and the reason code a conforming verifier must return. Together they
cover ``allowed`` and every reason code the core verifier can produce, so
that another implementation can be checked against trunkkey byte for byte.

The output is deterministic: keys come from fixed seeds, token ids from the
vector's name, times from fixed constants, and signatures are Ed25519 (or
ECDSA with RFC 6979 deterministic nonces), so running this script twice gives
identical bytes. ``tests/test_vectors.py`` checks that the checked-in file is
exactly what this script produces now, and replays every vector.

Usage::

    python -m tools.gen.vectors            # (re)write the file
    python -m tools.gen.vectors --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tools import ROOT
from tools.gen import _pq_vectors as _pq
from trunkkey import (
    Algorithm,
    Geofence,
    Issuer,
    ManualClock,
    Reason,
    SigningKey,
    Typ,
    cbor,
    make_proof,
)
from trunkkey.claims import (
    ACCESS,
    AUD,
    CTI,
    EXP,
    IAT,
    ISS,
    NBF,
    ORDER,
    access_bits,
    encode_claims,
)
from trunkkey.claims import Action as _Action
from trunkkey.claims import Purpose as _Purpose
from trunkkey.consent.grant import access_mask, encode_chain, make_grant, sign_root_grant
from trunkkey.cose import HDR_ALG, HDR_CRIT, HDR_CTY, HDR_KID, HDR_TYP, protected_header
from trunkkey.cose import sig_structure as _sig_structure
from trunkkey.sealed import CarKemKey, _seal
from trunkkey.verifier import DEFAULT_MAX_SKEW, DEFAULT_MAX_TOKEN_SIZE, VerifierPolicy

OUTPUT = ROOT / "docs" / "test-vectors.json"

# -- Fixed inputs -------------------------------------------------------------
NOW = 1_800_000_000  #: 2027-01-15T08:00:00Z: the verifier's clock in most vectors
ISSUED_AT = NOW - 3600  #: the issuer's clock when it minted
NOT_BEFORE = NOW - 600
EXPIRES = NOW + 3 * 3600
KEY_NOT_BEFORE = NOW - 90 * 86400
KEY_NOT_AFTER = NOW + 365 * 86400
ISSUER = "retailer.example"
VEHICLE = "WVWZZZ1JZXW000001"
OTHER_VEHICLE = "WVWZZZ1JZXW000002"
# Munich, where the owner parked; the geofence is 150 m around it.
PARKED = {"lat_e7": 481_374_300, "lon_e7": 115_754_900}
NEARBY = {"lat_e7": 481_378_300, "lon_e7": 115_754_900}  # about 44 m north
ELSEWHERE = {"lat_e7": 481_474_300, "lon_e7": 115_754_900}  # about 1.1 km north
GEOFENCE = Geofence(radius_m=150, **PARKED)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _seed(label: str) -> bytes:
    return hashlib.sha256(b"trunkkey test vectors v1: " + label.encode()).digest()


def _ed25519_key(label: str) -> SigningKey:
    private = ed25519.Ed25519PrivateKey.from_private_bytes(_seed(label))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey.from_pem(pem)


def _p256_private(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(_seed(label), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _p256_key(private: ec.EllipticCurvePrivateKey) -> SigningKey:
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey.from_pem(pem)


def _es256_sign_deterministic(private: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ES256 with RFC 6979 nonces, in trunkkey's low-s ``r || s`` form: reproducible."""
    der = private.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    s = min(s, _P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _token_id(name: str) -> bytes:
    return hashlib.sha256(b"token id: " + name.encode()).digest()[:16]


def _parcel_salt(name: str) -> bytes:
    return hashlib.sha256(b"parcel salt: " + name.encode()).digest()[:16]


# -- Hand-made COSE_Sign1 ----------------------------------------------------
def _envelope(
    protected: bytes, payload: bytes, signature: bytes, *, unprotected: bytes = b"\xa0",
    tagged: bool = True,
) -> bytes:
    body = (
        b"\x84" + cbor.encode(protected) + unprotected + cbor.encode(payload)
        + cbor.encode(signature)
    )
    return (b"\xd2" if tagged else b"") + body


def _signed(key: SigningKey, protected: bytes, payload: bytes, **kw: Any) -> bytes:
    return _envelope(protected, payload, key.sign(_sig_structure(protected, payload)), **kw)


def _claims_map(name: str, overrides: dict[int, Any] | None = None) -> dict[int, Any]:
    members: dict[int, Any] = {
        ISS: ISSUER, AUD: VEHICLE, EXP: EXPIRES, NBF: NOT_BEFORE, IAT: ISSUED_AT,
        CTI: _token_id(name),
        ACCESS: access_bits(_Action.TRUNK, _Purpose.DELIVERY),
    }
    members.update(overrides or {})
    return members


class _Keys:
    """The fixed keys every vector draws from."""

    def __init__(self) -> None:
        self.issuer = _ed25519_key("issuer")
        self.other = _ed25519_key("an issuer nobody trusts")
        self.device = _ed25519_key("courier device")
        self.other_device = _ed25519_key("another courier device")
        self.es256_private = _p256_private("issuer es256")
        self.es256 = _p256_key(self.es256_private)

    def header(self, key: SigningKey | None = None) -> bytes:
        key = key or self.issuer
        return protected_header(key.algorithm, Typ.TOKEN, key.kid)


def _trusted(
    key: SigningKey, issuer: str = ISSUER, not_before: int | None = KEY_NOT_BEFORE,
    not_after: int | None = KEY_NOT_AFTER,
) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "cose_key": key.public_key.to_cose_key().hex(),
        "not_before": not_before,
        "not_after": not_after,
    }


def _context(
    *, vehicle_id: str = VEHICLE, action: str = "trunk", purpose: str | None = "delivery",
    now: int = NOW, location: dict[str, int] | None = None, proof: bytes | None = None,
    challenge: bytes | None = None, ledger: Any = None, presentations: int = 1,
) -> dict[str, Any]:
    return {
        "vehicle_id": vehicle_id,
        "action": action,
        "purpose": purpose,
        "now": now,
        "location": location,
        "proof": None if proof is None else proof.hex(),
        "challenge": None if challenge is None else challenge.hex(),
        "ledger": {"spent": []} if ledger is None else ledger,
        "presentations": presentations,
    }


def _vectors(keys: _Keys, store: _pq.StoredSignatures) -> list[dict[str, Any]]:
    def issuer(name: str, key: SigningKey | None = None, iss: str = ISSUER,
               issued_at: int = ISSUED_AT, max_lifetime: int = 86400) -> Issuer:
        # The token id, then (for a token bound to parcels) the parcels' salt.
        draws = iter((_token_id(name), _parcel_salt(name)))
        return Issuer(
            key or keys.issuer, iss, clock=ManualClock(issued_at), max_lifetime=max_lifetime,
            _token_ids=lambda n: next(draws)[:n],
        )

    def mint(name: str, *, key: SigningKey | None = None, iss: str = ISSUER, **kw: Any) -> bytes:
        window = {
            "vehicle_id": VEHICLE, "action": "trunk", "not_before": NOT_BEFORE,
            "expires": EXPIRES,
        }
        window.update(kw)
        issued_at = window.pop("issued_at", ISSUED_AT)
        max_lifetime = window.pop("max_lifetime", 86400)
        return issuer(name, key, iss, issued_at, max_lifetime).mint(**window)

    trusted = [_trusted(keys.issuer)]
    challenge = _seed("challenge")[:16]
    other_challenge = _seed("another challenge")[:16]
    out: list[dict[str, Any]] = []

    def add(name: str, description: str, token: bytes, context: dict[str, Any],
            reason: Reason, *, trusted_keys: list[dict[str, Any]] | None = None) -> None:
        out.append({
            "name": name,
            "description": description,
            "trusted_keys": trusted if trusted_keys is None else trusted_keys,
            "token": token.hex(),
            "context": context,
            "reason": reason.value,
        })

    # -- allowed ------------------------------------------------------------
    add("allowed", "An Ed25519 trunk/delivery token for this car, inside its window.",
        mint("allowed"), _context(), Reason.ALLOWED)
    add("allowed_without_purpose",
        "The verifier is not asked about purpose (purpose null): the token's purpose is not "
        "checked.", mint("allowed_without_purpose"), _context(purpose=None), Reason.ALLOWED)
    add("allowed_unlock_relock_return_pickup", "An unlock-relock token for a return pickup.",
        mint("allowed_unlock_relock_return_pickup", action="unlock-relock",
             purpose="return-pickup"),
        _context(action="unlock-relock", purpose="return-pickup"), Reason.ALLOWED)
    es_claims = issuer("allowed_es256", keys.es256).claims_for(
        vehicle_id=VEHICLE, action="trunk", not_before=NOT_BEFORE, expires=EXPIRES)
    es_payload = encode_claims(es_claims)
    es_header = keys.header(keys.es256)
    add("allowed_es256",
        "An ES256 (P-256) token; the signature uses RFC 6979 deterministic nonces so the file "
        "is reproducible, but any valid ES256 signature is equally acceptable.",
        _envelope(es_header, es_payload,
                  _es256_sign_deterministic(keys.es256_private,
                                            _sig_structure(es_header, es_payload))),
        _context(), Reason.ALLOWED, trusted_keys=[_trusted(keys.es256)])
    mldsa = _pq.pq_key(Algorithm.MLDSA44, _seed, "issuer mldsa44")
    mldsa_token = mint("allowed_mldsa44", key=store.signer(mldsa))  # type: ignore[arg-type]
    add("allowed_mldsa44",
        "An ML-DSA-44 (FIPS 204, alg -48) token: the key is an AKP COSE_Key. ML-DSA signing "
        "is randomized; this signature is stored, and any valid one is equally acceptable. "
        "The size cap counts the signature as 64 bytes: a verifier trusting an ML-DSA-44 key "
        "takes tokens 2356 bytes longer than max_token_size.",
        mldsa_token, _context(), Reason.ALLOWED, trusted_keys=[_trusted(mldsa)])
    flipped = mldsa_token[:-1] + bytes([mldsa_token[-1] ^ 1])
    add("bad_signature_mldsa44", "The ML-DSA-44 token with one bit of its signature flipped.",
        flipped, _context(), Reason.BAD_SIGNATURE, trusted_keys=[_trusted(mldsa)])
    add("bad_signature_mldsa44_short",
        "The ML-DSA-44 token's claims under a 64-byte signature: the key decides the length.",
        mldsa_token[:-2423] + b"\x58\x40" + bytes(64), _context(), Reason.BAD_SIGNATURE,
        trusted_keys=[_trusted(mldsa)])
    device_token = mint("allowed_geofence_and_proof", geofence=GEOFENCE,
                        courier_key=keys.device.public_key, order_ref=b"order-0001")
    add("allowed_geofence_and_proof",
        "A token with a 150 m geofence, a cnf courier key and an order reference; the car is "
        "44 m from the centre and the courier's device answers the car's challenge.",
        device_token,
        _context(location=NEARBY, challenge=challenge,
                 proof=make_proof(keys.device, token=device_token, vehicle_id=VEHICLE,
                                  challenge=challenge)),
        Reason.ALLOWED)
    add("allowed_skew_before_nbf",
        "now is nbf - 60: inside the default 60 s clock-skew allowance.",
        mint("allowed_skew_before_nbf"), _context(now=NOT_BEFORE - DEFAULT_MAX_SKEW),
        Reason.ALLOWED)
    add("allowed_skew_after_exp",
        "now is exp + 59: the last second of the skew allowance after expiry.",
        mint("allowed_skew_after_exp"), _context(now=EXPIRES + DEFAULT_MAX_SKEW - 1),
        Reason.ALLOWED)

    # -- the bytes ----------------------------------------------------------
    big = cbor.encode(_claims_map("too_large", {ORDER: bytes(1000)}))
    add("too_large",
        f"A correctly signed token over the {DEFAULT_MAX_TOKEN_SIZE}-byte cap (a 1000-byte "
        "order reference): refused before parsing.",
        _signed(keys.issuer, keys.header(), big), _context(), Reason.TOO_LARGE)
    good = mint("malformed_trailing_byte")
    add("malformed_trailing_byte", "A valid token with one byte appended.",
        good + b"\x00", _context(), Reason.MALFORMED)
    good = mint("malformed_truncated")
    add("malformed_truncated", "A valid token with its last byte removed.",
        good[:-1], _context(), Reason.MALFORMED)
    good = mint("malformed_untagged")
    add("malformed_untagged",
        "A valid token without its COSE_Sign1 tag 18 (RFC 9052 allows it; the profile does "
        "not).", good[1:], _context(), Reason.MALFORMED)
    payload = cbor.encode(_claims_map("malformed_unprotected_kid"))
    sig = keys.issuer.sign(_sig_structure(keys.header(), payload))
    add("malformed_unprotected_kid",
        "A correctly signed token with the kid repeated in the unprotected header, which COSE "
        "does not sign: the profile requires it to be empty.",
        _envelope(keys.header(), payload, sig,
                  unprotected=cbor.encode({HDR_KID: keys.issuer.kid})),
        _context(), Reason.MALFORMED)
    canonical = cbor.encode(_claims_map("malformed_noncanonical_claims"))
    exp_item = cbor.encode(EXPIRES)
    assert exp_item[0] == 0x1A  # noqa: S101 -- a precondition of the byte surgery below
    loose = canonical.replace(b"\x04" + exp_item, b"\x04\x1b\x00\x00\x00\x00" + exp_item[1:], 1)
    add("malformed_noncanonical_claims",
        "Re-signed claims whose exp is encoded in 8 bytes instead of the shortest form.",
        _signed(keys.issuer, keys.header(), loose), _context(), Reason.MALFORMED)
    members = _claims_map("malformed_unsorted_claims")
    unsorted = b"\xa7" + b"".join(
        cbor.encode(k) + cbor.encode(v) for k, v in sorted(members.items(), reverse=True))
    add("malformed_unsorted_claims",
        "Re-signed claims whose map keys are not in deterministic order.",
        _signed(keys.issuer, keys.header(), unsorted), _context(), Reason.MALFORMED)
    add("malformed_unknown_claim",
        "Re-signed claims with an extra claim (sub, label 2): the claim set is closed.",
        _signed(keys.issuer, keys.header(),
                cbor.encode(_claims_map("malformed_unknown_claim", {2: "courier-17"}))),
        _context(), Reason.MALFORMED)
    add("malformed_inverted_window", "Re-signed claims with exp before nbf.",
        _signed(keys.issuer, keys.header(),
                cbor.encode(_claims_map("malformed_inverted_window", {EXP: NOT_BEFORE - 1}))),
        _context(), Reason.MALFORMED)
    no_kid = cbor.encode({HDR_ALG: int(Algorithm.EDDSA), HDR_TYP: int(Typ.TOKEN)})
    add("malformed_no_kid", "A signed token whose protected header has no kid.",
        _signed(keys.issuer, no_kid, cbor.encode(_claims_map("malformed_no_kid"))),
        _context(), Reason.MALFORMED)
    hdr = keys.header()
    # {1: -8, 4: kid, 16: typ} with the typ argument in 4 bytes instead of 2.
    loose_hdr = hdr.replace(b"\x10\x19" + int(Typ.TOKEN).to_bytes(2, "big"),
                            b"\x10\x1a\x00\x00" + int(Typ.TOKEN).to_bytes(2, "big"))
    assert loose_hdr != hdr  # noqa: S101 -- a precondition of the byte surgery above
    add("malformed_noncanonical_header",
        "A signed token whose protected header encodes typ in a longer form than needed.",
        _signed(keys.issuer, loose_hdr,
                cbor.encode(_claims_map("malformed_noncanonical_header"))),
        _context(), Reason.MALFORMED)

    grant_hdr = protected_header(Algorithm.EDDSA, Typ.GRANT, keys.issuer.kid)
    add("wrong_type_grant",
        "Token claims signed by the trusted key but typed as a consent grant (typ 65303).",
        _signed(keys.issuer, grant_hdr, cbor.encode(_claims_map("wrong_type_grant"))),
        _context(), Reason.WRONG_TYPE)
    add("wrong_type_proof",
        "A courier's proof of possession (typ 65302) passed off as a token.",
        make_proof(keys.issuer, token=mint("wrong_type_proof"), vehicle_id=VEHICLE,
                   challenge=challenge),
        _context(), Reason.WRONG_TYPE)
    crit_hdr = cbor.encode({
        HDR_ALG: int(Algorithm.EDDSA), HDR_CRIT: [HDR_TYP], HDR_KID: keys.issuer.kid,
        HDR_TYP: int(Typ.TOKEN),
    })
    add("unsupported_header_crit",
        "A signed token with a crit header parameter: trunkkey v1 defines none.",
        _signed(keys.issuer, crit_hdr, cbor.encode(_claims_map("unsupported_header_crit"))),
        _context(), Reason.UNSUPPORTED_HEADER)
    cty_hdr = cbor.encode({
        HDR_ALG: int(Algorithm.EDDSA), HDR_CTY: 61, HDR_KID: keys.issuer.kid,
        HDR_TYP: int(Typ.TOKEN),
    })
    add("unsupported_header_extra",
        "A signed token with an extra protected header parameter (content type 61, CWT).",
        _signed(keys.issuer, cty_hdr, cbor.encode(_claims_map("unsupported_header_extra"))),
        _context(), Reason.UNSUPPORTED_HEADER)

    # -- the signer ---------------------------------------------------------
    add("unknown_key", "A well-formed token from a key the car does not trust.",
        mint("unknown_key", key=keys.other), _context(), Reason.UNKNOWN_KEY)
    add("key_not_valid_retired",
        "The signing key is trusted but was retired a day before now.",
        mint("key_not_valid_retired"), _context(), Reason.KEY_NOT_VALID,
        trusted_keys=[_trusted(keys.issuer, not_before=KEY_NOT_BEFORE, not_after=NOW - 86400)])
    add("key_not_valid_not_yet_active",
        "The signing key is trusted only from a day after now (a rotation not yet due).",
        mint("key_not_valid_not_yet_active"), _context(), Reason.KEY_NOT_VALID,
        trusted_keys=[_trusted(keys.issuer, not_before=NOW + 86400, not_after=None)])
    es_hdr_on_ed_key = protected_header(Algorithm.ES256, Typ.TOKEN, keys.issuer.kid)
    add("alg_mismatch",
        "The header names the trusted Ed25519 key's kid but alg ES256: the key decides.",
        _signed(keys.issuer, es_hdr_on_ed_key, cbor.encode(_claims_map("alg_mismatch"))),
        _context(), Reason.ALG_MISMATCH)
    good = mint("bad_signature_bit_flip")
    flipped = good[:-1] + bytes([good[-1] ^ 0x01])
    add("bad_signature_bit_flip", "A valid token with the last bit of the signature flipped.",
        flipped, _context(), Reason.BAD_SIGNATURE)
    good = mint("bad_signature_claims_changed")
    changed = good.replace(VEHICLE.encode(), OTHER_VEHICLE.encode(), 1)
    add("bad_signature_claims_changed",
        "A valid token for car ...001 edited to name car ...002, presented to car ...002.",
        changed, _context(vehicle_id=OTHER_VEHICLE), Reason.BAD_SIGNATURE)
    add("bad_signature_other_key_same_kid",
        "Signed by an untrusted key under a protected header naming the trusted key's kid.",
        _signed(keys.other, keys.header(),
                cbor.encode(_claims_map("bad_signature_other_key_same_kid"))),
        _context(), Reason.BAD_SIGNATURE)
    add("wrong_issuer",
        "Signed by the trusted key, but iss names another issuer than the key speaks for.",
        mint("wrong_issuer", iss="impostor.example"), _context(), Reason.WRONG_ISSUER)

    # -- what it is for -----------------------------------------------------
    add("wrong_vehicle", "A token for car ...001 presented to car ...002.",
        mint("wrong_vehicle"), _context(vehicle_id=OTHER_VEHICLE), Reason.WRONG_VEHICLE)
    add("wrong_action", "A trunk token used to ask for a cabin unlock.",
        mint("wrong_action"), _context(action="unlock-relock"), Reason.WRONG_ACTION)
    add("wrong_purpose", "A return-pickup token where the car expects a delivery.",
        mint("wrong_purpose", purpose="return-pickup"), _context(purpose="delivery"),
        Reason.WRONG_PURPOSE)

    # -- when ---------------------------------------------------------------
    add("lifetime_too_long",
        "A 48-hour window (the issuer allowed it) against the verifier's 24-hour cap.",
        mint("lifetime_too_long", expires=NOT_BEFORE + 48 * 3600, max_lifetime=72 * 3600),
        _context(), Reason.LIFETIME_TOO_LONG)
    add("not_yet_valid", "now is nbf - 61: one second before the skew allowance starts.",
        mint("not_yet_valid"), _context(now=NOT_BEFORE - DEFAULT_MAX_SKEW - 1),
        Reason.NOT_YET_VALID)
    add("not_yet_valid_issued_in_future",
        "The window has started but iat is two hours ahead of the car's clock.",
        mint("not_yet_valid_issued_in_future", issued_at=NOW + 7200, expires=NOW + 9000),
        _context(), Reason.NOT_YET_VALID)
    add("expired", "now is exp + 60: the skew allowance has run out.",
        mint("expired"), _context(now=EXPIRES + DEFAULT_MAX_SKEW), Reason.EXPIRED)

    # -- where --------------------------------------------------------------
    add("location_unknown", "A geofenced token while the car cannot say where it is.",
        mint("location_unknown", geofence=GEOFENCE), _context(location=None),
        Reason.LOCATION_UNKNOWN)
    add("outside_geofence", "A 150 m geofence; the car is about 1.1 km away.",
        mint("outside_geofence", geofence=GEOFENCE), _context(location=ELSEWHERE),
        Reason.OUTSIDE_GEOFENCE)

    # -- who holds it -------------------------------------------------------
    def device_bound(name: str) -> bytes:
        return mint(name, courier_key=keys.device.public_key)

    token = device_bound("proof_missing")
    add("proof_missing", "A token bound to a courier device key, presented without a proof.",
        token, _context(challenge=challenge), Reason.PROOF_MISSING)
    token = device_bound("proof_invalid_other_challenge")
    add("proof_invalid_other_challenge", "The proof answers another challenge than the car's.",
        token,
        _context(challenge=challenge,
                 proof=make_proof(keys.device, token=token, vehicle_id=VEHICLE,
                                  challenge=other_challenge)),
        Reason.PROOF_INVALID)
    token = device_bound("proof_invalid_no_challenge")
    add("proof_invalid_no_challenge", "A proof is presented but the car issued no challenge.",
        token,
        _context(proof=make_proof(keys.device, token=token, vehicle_id=VEHICLE,
                                  challenge=challenge)),
        Reason.PROOF_INVALID)
    token = device_bound("proof_invalid_other_device")
    add("proof_invalid_other_device", "The proof is signed by another device's key.",
        token,
        _context(challenge=challenge,
                 proof=make_proof(keys.other_device, token=token, vehicle_id=VEHICLE,
                                  challenge=challenge)),
        Reason.PROOF_INVALID)
    token = device_bound("proof_invalid_other_token")
    sibling = device_bound("proof_invalid_other_token (sibling)")
    add("proof_invalid_other_token",
        "The proof was made for another token bound to the same device key.",
        token,
        _context(challenge=challenge,
                 proof=make_proof(keys.device, token=sibling, vehicle_id=VEHICLE,
                                  challenge=challenge)),
        Reason.PROOF_INVALID)

    _parcel_vectors(add, mint, keys, challenge, other_challenge)
    _sealed_vectors(out, add, mint, keys, challenge)

    # -- single use ---------------------------------------------------------
    add("already_used_presented_twice",
        "The same valid token presented twice: the first is allowed, the second refused.",
        mint("already_used_presented_twice"), _context(presentations=2), Reason.ALREADY_USED)
    add("already_used_in_ledger",
        "A valid token whose id the car's ledger already holds as spent.",
        mint("already_used_in_ledger"),
        _context(ledger={"spent": [{"vehicle_id": VEHICLE,
                                    "token_id": _token_id("already_used_in_ledger").hex()}]}),
        Reason.ALREADY_USED)
    add("ledger_unavailable", "A valid token while the ledger cannot record it: fail closed.",
        mint("ledger_unavailable"), _context(ledger="failing"), Reason.LEDGER_UNAVAILABLE)
    # Last, so that every vector before them keeps its place and its bytes.
    _bundle_vectors(out, add, mint, keys, challenge)
    return out


#: The parcels of the order in the parcel vectors, and one that is not the order's.
ORDER_PARCELS = ("1Z999AA10123456784", "1Z999AA10123456785")
STRANGER_PARCEL = "1Z999AA10123456799"


def _parcel_vectors(
    add: Callable[..., None], mint: Callable[..., bytes], keys: _Keys, challenge: bytes,
    other_challenge: bytes,
) -> None:
    """Tokens bound to parcels (issue 19): the scan in the proof, checked before the spend."""
    order = list(ORDER_PARCELS)

    def bound(name: str) -> bytes:
        return mint(name, courier_key=keys.device.public_key, parcels=order)

    def scan(token: bytes, scanned: list[str] | None, answered: bytes = challenge) -> bytes:
        return make_proof(keys.device, token=token, vehicle_id=VEHICLE, challenge=answered,
                          scan=scanned)

    order_text = f"the order's parcels {order[0]} and {order[1]}"
    token = bound("allowed_parcels_all_scanned")
    add("allowed_parcels_all_scanned",
        f"A token bound to {order_text}; the device's proof carries a scan of both (in the "
        "reverse order), signed with the challenge.",
        token, _context(challenge=challenge, proof=scan(token, order[::-1])), Reason.ALLOWED)
    token = bound("allowed_parcels_partial")
    add("allowed_parcels_partial",
        f"A token bound to {order_text}; the scan names only the second: a partial delivery, "
        "allowed (and recorded as partial).",
        token, _context(challenge=challenge, proof=scan(token, order[1:])), Reason.ALLOWED)
    token = bound("parcel_missing")
    add("parcel_missing",
        f"A token bound to {order_text}; the proof is a plain one, with no scan.",
        token, _context(challenge=challenge, proof=scan(token, None)), Reason.PARCEL_MISSING)
    token = bound("parcel_missing_empty_scan")
    add("parcel_missing_empty_scan",
        f"A token bound to {order_text}; the proof carries an empty scan.",
        token, _context(challenge=challenge, proof=scan(token, [])), Reason.PARCEL_MISSING)
    token = bound("wrong_parcel")
    add("wrong_parcel",
        f"A token bound to {order_text}; the scan names {order[0]} and {STRANGER_PARCEL}, "
        "which is not the order's.",
        token, _context(challenge=challenge, proof=scan(token, [order[0], STRANGER_PARCEL])),
        Reason.WRONG_PARCEL)
    token = bound("wrong_parcel_scanned_twice")
    add("wrong_parcel_scanned_twice",
        f"A token bound to {order_text}; the scan names {order[0]} twice.",
        token, _context(challenge=challenge, proof=scan(token, [order[0], order[0]])),
        Reason.WRONG_PARCEL)
    token = bound("proof_invalid_scan_other_challenge")
    add("proof_invalid_scan_other_challenge",
        f"A token bound to {order_text}; the scan was signed with another challenge.",
        token, _context(challenge=challenge, proof=scan(token, order, other_challenge)),
        Reason.PROOF_INVALID)
    token = mint("proof_invalid_scan_for_token_without_parcels",
                 courier_key=keys.device.public_key)
    add("proof_invalid_scan_for_token_without_parcels",
        "A token bound to a device but to no parcels; the proof carries a scan, so it answers "
        "no challenge.",
        token, _context(challenge=challenge, proof=scan(token, order)), Reason.PROOF_INVALID)


#: The car's KEM key in the sealed vectors, and another car's.
CAR_KEM = CarKemKey(_seed("car kem key"))
OTHER_CAR_KEM = CarKemKey(_seed("another car's kem key"))


def _sealed(token: bytes, name: str, car: CarKemKey = CAR_KEM) -> bytes:
    """``token`` sealed with an ephemeral key fixed by the vector's name: reproducible."""
    return _seal(token, car.public_key, _seed(f"ephemeral: {name}"))


def _sealed_vectors(
    out: list[dict[str, Any]], add: Callable[..., None], mint: Callable[..., bytes],
    keys: _Keys, challenge: bytes,
) -> None:
    """Sealed tokens (issue 15): opened with ``car_keys``, then verified as ever."""
    first = len(out)
    add("sealed_allowed",
        "The `allowed` kind of token sealed to the car's KEM key (HPKE-4, 192-byte bucket).",
        _sealed(mint("sealed_allowed"), "sealed_allowed"), _context(), Reason.ALLOWED)
    bound = mint("sealed_allowed_with_proof", geofence=GEOFENCE,
                 courier_key=keys.device.public_key, order_ref=b"order-0001")
    sealed = _sealed(bound, "sealed_allowed_with_proof")
    add("sealed_allowed_with_proof",
        "A device-bound token with geofence and order, sealed (256-byte bucket); the "
        "device's proof covers the sealed bytes it holds.",
        sealed, _context(location=NEARBY, challenge=challenge, proof=make_proof(
            keys.device, token=sealed, vehicle_id=VEHICLE, challenge=challenge)),
        Reason.ALLOWED)
    sealed = _sealed(bound, "proof_invalid_sealed_proof_over_inner")
    add("proof_invalid_sealed_proof_over_inner",
        "As `sealed_allowed_with_proof`, but the proof covers the inner signed token, not "
        "the sealed bytes presented.",
        sealed, _context(location=NEARBY, challenge=challenge, proof=make_proof(
            keys.device, token=bound, vehicle_id=VEHICLE, challenge=challenge)),
        Reason.PROOF_INVALID)
    add("sealed_wrong_vehicle",
        "A token for another car, sealed to this car's key: it opens, and the inner token's "
        "reason is unchanged.",
        _sealed(mint("sealed_wrong_vehicle", vehicle_id=OTHER_VEHICLE), "sealed_wrong_vehicle"),
        _context(), Reason.WRONG_VEHICLE)
    add("cannot_open_other_car",
        "A valid token sealed to another car's KEM key.",
        _sealed(mint("cannot_open_other_car"), "cannot_open_other_car", OTHER_CAR_KEM),
        _context(), Reason.CANNOT_OPEN)
    sealed = _sealed(mint("cannot_open_tampered"), "cannot_open_tampered")
    add("cannot_open_tampered",
        "A sealed token with one bit of its ciphertext flipped.",
        sealed[:-20] + bytes((sealed[-20] ^ 1,)) + sealed[-19:], _context(), Reason.CANNOT_OPEN)
    for vector in out[first:]:
        vector["car_keys"] = [CAR_KEM.private_bytes().hex()]
    add("cannot_open_without_car_key",
        "A sealed token presented to a verifier that holds no KEM key.",
        _sealed(mint("cannot_open_without_car_key"), "cannot_open_without_car_key"),
        _context(), Reason.CANNOT_OPEN)
    out[-1]["car_keys"] = []


def _bundle_vectors(
    out: list[dict[str, Any]], add: Callable[..., None], mint: Callable[..., bytes],
    keys: _Keys, challenge: bytes,
) -> None:
    """Sealed bundles (issue 15): a token sealed with the consent chain it hangs from.

    These verifiers hold no consent anchors, so a bundle's chain is refused as
    one in the clear would be. They fix the bundle's framing and its strict decoding.
    """
    first = len(out)
    grant = make_grant(
        grantee=keys.issuer.public_key, grantee_name=ISSUER,
        access=access_mask([_Action.TRUNK], [_Purpose.DELIVERY]), not_before=NOW - 86400,
        expires=NOW + 30 * 86400, depth=0, vehicle_ids=[VEHICLE],
    )
    chain = encode_chain([sign_root_grant(_ed25519_key("carmaker root"), grant)])
    bound = mint("sealed_bundle_allowed", geofence=GEOFENCE,
                 courier_key=keys.device.public_key, order_ref=b"order-0002")
    sealed = _seal(bound, CAR_KEM.public_key, _seed("ephemeral: sealed_bundle"),
                   chain=chain)
    add("chain_invalid_sealed_bundle_without_anchors",
        "A device-bound token sealed with a one-grant consent chain as the bundle [token, "
        "chain] (512-byte bucket), to a car that holds no consent anchors: it opens, and its "
        "chain is refused as one in the clear would be.",
        sealed, _context(location=NEARBY, challenge=challenge, proof=make_proof(
            keys.device, token=sealed, vehicle_id=VEHICLE, challenge=challenge)),
        Reason.CHAIN_INVALID)
    token = mint("malformed_sealed_bundle")
    head = cbor.head(2, len(token)) + token
    for name, plaintext, what in (
        ("malformed_sealed_bundle_empty_chain", b"\x82" + head + b"\x40",
         "an empty chain"),
        ("malformed_sealed_bundle_trailing_bytes",
         b"\x82" + head + cbor.head(2, len(chain)) + chain + b"\x00", "a byte after the chain"),
        ("malformed_sealed_bundle_nested",
         cbor.encode([cbor.encode([token, chain]), chain]), "a bundle for its token"),
    ):
        add(name, f"A sealed bundle whose plaintext holds {what}: refused before the token "
            "inside is read.", _seal(plaintext, CAR_KEM.public_key, _seed(f"ephemeral: {name}")),
            _context(), Reason.MALFORMED)
    for vector in out[first:]:
        vector["car_keys"] = [CAR_KEM.private_bytes().hex()]


FORMAT = {
    "summary": (
        "Known-answer vectors for trunkkey token v1 (docs/token-format.md). For each "
        "vector, build a verifier that trusts exactly `trusted_keys` under `policy`, with a "
        "replay ledger in the state given by `context.ledger`, present `token` with the "
        "context, and expect `reason`."
    ),
    "token": (
        "hex of the token bytes (a tagged COSE_Sign1, or a hostile variant of one; or a "
        "sealed token, a tagged COSE_Encrypt0: docs/token-format.md section 11)"
    ),
    "car_keys": (
        "present on sealed-token vectors only: hex of the car's X25519 KEM private keys "
        "(raw, 32 bytes) the verifier opens sealed tokens with; an empty list means none"
    ),
    "trusted_keys": (
        "list of {issuer, cose_key, not_before, not_after}: cose_key is the hex of a public "
        "COSE_Key (RFC 9052 section 7); issuer is the iss the key speaks for; not_before / "
        "not_after bound when the key may be used, as [not_before, not_after) in Unix "
        "seconds, null meaning unbounded"
    ),
    "context.vehicle_id": "the verifying car's own id (compared with aud)",
    "context.action": "the action asked for: trunk | unlock-relock",
    "context.purpose": "the purpose the car expects: delivery | return-pickup | null (not checked)",
    "context.now": "the verifier's clock, Unix seconds",
    "context.location": (
        "the car's position {lat_e7, lon_e7} in units of 1e-7 degree, or null (unknown)"
    ),
    "context.proof": (
        "hex of the courier device's proof of possession, or null; for a token bound to "
        "parcels, its payload is the scan [challenge, [identifiers]]"
    ),
    "context.challenge": "hex of the challenge the car issued, or null",
    "context.ledger": (
        "{spent: [{vehicle_id, token_id (hex)}]}: token ids already spent before the first "
        "presentation; or the string \"failing\": every consume raises"
    ),
    "context.presentations": (
        "how many times the token is presented in a row with this context: every "
        "presentation but the last must be allowed; the last gives `reason`"
    ),
    "reason": "the expected reason code (trunkkey.Reason): allowed, or why access is denied",
    "determinism": (
        "Ed25519 signatures are deterministic; the ES256 vector uses RFC 6979 nonces. "
        "Another implementation must reach the same reason, not reproduce the bytes. Sealed "
        "tokens use an ephemeral key fixed per vector; a real seal draws a fresh one."
    ),
}

_VEHICLE_UNIT = (
    "produced by the vehicle unit (trunkkey.vehicle) around the core verifier, not by the "
    "core token verifier these vectors exercise"
)
_CONSENT = (
    "produced by consent-chain checks (trunkkey.consent) on the grants a token hangs from; "
    "the core token verifier knows no grants"
)
_REVOCATION = (
    "produced by revocation-list checks (trunkkey.consent); the core token verifier takes "
    "no revocation list"
)
_ACCESS_LOG = (
    "produced by the backend's judgement of a car's access-log checkpoints "
    "(trunkkey.CheckpointStore), never by the token verifier"
)
#: Reason codes no vector here can produce, each with why. Plain strings, so
#: that a renamed member shows up as a test failure rather than an import error.
NOT_COVERED = {
    "clock_untrusted": (
        f"{_VEHICLE_UNIT}: the unit's clock went back below its trusted floor; the core "
        "verifier takes `now` as given"
    ),
    "challenge_unknown": f"{_VEHICLE_UNIT}: the proof answers no challenge the car issued",
    "challenge_expired": f"{_VEHICLE_UNIT}: the challenge outlived its lifetime (relay bound)",
    "car_moved": _VEHICLE_UNIT,
    "unit_busy": _VEHICLE_UNIT,
    "actuator_failed": f"{_VEHICLE_UNIT}: the lock actuator failed",
    "scope_widened": _CONSENT,
    "grant_not_yet_valid": _CONSENT,
    "grant_expired": _CONSENT,
    "daily_limit_reached": (
        f"{_CONSENT}; the ledger counts it in the step that spends the token"
    ),
    "issued_before_ledger": (
        "produced by a ledger started afresh after a loss (SqliteLedger.start_afresh) for a "
        "token issued before that start; the vectors' ledgers are never started afresh"
    ),
    "grant_revoked": _REVOCATION,
    "key_revoked": _REVOCATION,
    "token_revoked": _REVOCATION,
    "superseded": _REVOCATION,
    "revocations_stale": (
        "produced by trunkkey.consent.ConsentVerifier(max_list_age=...) when the car's "
        "revocation list is too old; the core token verifier takes no revocation list"
    ),
    "rollback": (
        "produced when a signed update (revocation list, trust update) is no newer than the "
        "one held; the core token verifier takes no signed updates"
    ),
    "checkpoint_invalid": _ACCESS_LOG,
    "log_fork": _ACCESS_LOG,
    "log_rollback": _ACCESS_LOG,
    "log_gap": _ACCESS_LOG,
}


#: What each member of a ``root_signed`` vector means.
ROOT_SIGNED_FIELDS = {
    "summary": (
        "objects signed by a carmaker root (trust updates and a root grant), opened by a car "
        "that holds exactly one root: the hybrid key root_cose_key (an AKP COSE_Key: EdDSA + "
        "ML-DSA-65, alg -65601, or ES256 + ML-DSA-65, alg -65602; see docs/token-format.md "
        "section 4.1)"
    ),
    "signed": "hex of the signed object (a tagged COSE_Sign1, or a tampered one)",
    "typ": "the trunkkey.Typ the car opens it as",
    "now": "the car's clock, Unix seconds",
    "reason": "null if the car must accept it, else the reason it must refuse it with",
}


def build(store: _pq.StoredSignatures | None = None) -> dict[str, Any]:
    """The whole vector file as a JSON-ready dict (deterministic, given the stored signatures)."""
    store = _pq.StoredSignatures() if store is None else store
    policy = VerifierPolicy()
    return {
        "format": FORMAT,
        "policy": {
            "max_skew": policy.max_skew,
            "max_lifetime": policy.max_lifetime,
            "max_token_size": policy.max_token_size,
        },
        "reasons": [r.value for r in Reason],
        "not_covered": NOT_COVERED,
        "vectors": _vectors(_Keys(), store),
        "root_signed": _pq.root_signed_vectors(
            store, _seed, _signed, now=NOW, token_key=_pq.pq_key(Algorithm.MLDSA44, _seed,
                                                                 "issuer mldsa44")),
        "root_signed_fields": ROOT_SIGNED_FIELDS,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from what would be written")
    args = parser.parse_args(argv)
    store = _pq.StoredSignatures()
    text = render(build(store))
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run tools/gen/vectors.py", file=sys.stderr)
            return 1
        return 0
    store.save()  # the ML-DSA signatures made this time, so the next run makes the same file
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {len(json.loads(text)['vectors'])} vectors to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
