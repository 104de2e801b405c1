"""The fuzz targets: one function per entry point that reads untrusted bytes.

Each target takes the fuzzer's bytes and must either return normally (a typed
trunkkey error or a denied decision is a normal outcome) or raise
``AssertionError`` for a real finding. Anything else escaping is a bug the
fuzzer reports. The fixed world (keys, tokens, proofs) is built once from a
fixed seed so that seed corpora and findings replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trunkkey import (
    Action,
    DecodeError,
    Geofence,
    Issuer,
    Location,
    ManualClock,
    MemoryLedger,
    SignatureError,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
    cbor,
    make_proof,
)
from trunkkey.claims import _decode_claims_generic, decode_claims
from trunkkey.cose import decode_protected, parse_sign1, verify_sign1
from trunkkey.proof import check_proof

NOW = 1_800_000_000
VEHICLE = "1HGCM82633A004352"
CHALLENGE = bytes(range(16))


def _fixed_key(label: str) -> SigningKey:
    seed = hashlib.sha256(label.encode()).digest()
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey.from_pem(pem)


@dataclass(frozen=True)
class World:
    issuer_key: SigningKey
    device_key: SigningKey
    store: TrustStore
    tokens: tuple[bytes, ...]
    proofs: tuple[bytes, ...]


@cache
def world() -> World:
    issuer_key = _fixed_key("fuzz-issuer")
    device_key = _fixed_key("fuzz-device")
    counter = iter(range(1 << 30))
    issuer = Issuer(issuer_key, "retailer", clock=ManualClock(NOW),
                    _token_ids=lambda n: next(counter).to_bytes(n, "big"))
    plain = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600)
    rich = issuer.mint(vehicle_id=VEHICLE, action="unlock-relock", purpose="return-pickup",
                       not_before=NOW, expires=NOW + 3600, order_ref=b"order-1",
                       courier_key=device_key.public_key,
                       geofence=Geofence.from_degrees(48.1374, 11.5755, 100))
    proof = make_proof(device_key, token=rich, vehicle_id=VEHICLE, challenge=CHALLENGE)
    store = TrustStore([TrustedKey.create(issuer_key.public_key, "retailer")])
    return World(issuer_key, device_key, store, (plain, rich), (proof,))


def fuzz_cbor(data: bytes) -> None:
    try:
        value = cbor.decode(data)
    except DecodeError:
        return
    # Whatever decodes is canonical: it re-encodes to exactly the same bytes.
    assert cbor.encode(value) == data


def fuzz_claims(data: bytes) -> None:
    outcomes = []
    for decode in (decode_claims, _decode_claims_generic):
        try:
            outcomes.append(decode(data))
        except DecodeError:
            outcomes.append(DecodeError)
    assert outcomes[0] == outcomes[1], "fast and generic claim decoders disagree"


def fuzz_cose(data: bytes) -> None:
    w = world()
    try:
        parts = parse_sign1(data)
        decode_protected(parts.protected)
    except DecodeError:
        pass
    try:
        payload = verify_sign1(data, w.issuer_key.public_key)
    except (DecodeError, SignatureError):
        return
    # Accepted by the standard layer: Ed25519 is unforgeable, so the payload
    # must be one the issuer key really signed.
    assert payload in {parse_sign1(t).payload for t in w.tokens}, "forged COSE_Sign1 accepted"


def fuzz_verify(data: bytes) -> None:
    w = world()
    verifier = Verifier(trust_store=w.store, ledger=MemoryLedger(), clock=ManualClock(NOW + 5))
    for action in (Action.TRUNK, Action.UNLOCK_RELOCK):
        d = verifier.verify(data, vehicle_id=VEHICLE, action=action,
                            location=Location.from_degrees(48.1374, 11.5755),
                            proof=w.proofs[0], challenge=CHALLENGE)
        assert "unexpected error" not in d.detail, d.detail
        if d.allowed:
            assert data in w.tokens, "a token nobody minted was allowed"


def fuzz_proof(data: bytes) -> None:
    w = world()
    problem = check_proof(data, key=w.device_key.public_key, token=w.tokens[1],
                          vehicle_id=VEHICLE, challenge=CHALLENGE)
    if problem is None:
        # Ed25519 signatures are unique and the strict parser admits one
        # encoding, so only the genuine proof can pass.
        assert data == w.proofs[0], "a proof nobody made was accepted"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "cbor": fuzz_cbor,
    "claims": fuzz_claims,
    "cose": fuzz_cose,
    "verify": fuzz_verify,
    "proof": fuzz_proof,
}


def seeds(name: str) -> list[bytes]:
    """Valid objects (and a few near-misses) to start each target from."""
    w = world()
    tokens = list(w.tokens)
    payloads = [parse_sign1(t).payload for t in tokens]
    protected = [parse_sign1(t).protected for t in tokens]
    common = {
        "cbor": payloads + protected + tokens,
        "claims": payloads,
        "cose": tokens + list(w.proofs),
        "verify": tokens + [t[:-1] for t in tokens],
        "proof": list(w.proofs),
    }
    return common[name]
