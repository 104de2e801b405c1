"""The fuzz targets: one function per entry point that reads untrusted bytes.

Each target takes the fuzzer's bytes and must either return normally (a typed
trunkkey error or a denied decision is a normal outcome) or raise
``AssertionError`` for a real finding. Anything else escaping is a bug the
fuzzer reports. The fixed world (keys, tokens, proofs) is built once from a
fixed seed so that seed corpora and findings replay.
"""

from __future__ import annotations

import contextlib
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
    Purpose,
    Reason,
    SignatureError,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
    cbor,
    make_proof,
)
from trunkkey._fastpath import usual_claim_values
from trunkkey.claims import _LABELS, decode_claims
from trunkkey.consent import (
    ConsentVerifier,
    ResolvedChain,
    RevocationState,
    RootKey,
    Scope,
    UpdateRefused,
    VehicleAnchors,
    decode_grant,
    encode_chain,
    grant_digest,
    root_scope,
    sign_delegation,
    sign_revocation_list,
    sign_root_grant,
)
from trunkkey.consent.revocation import decode_revocations
from trunkkey.cose import (
    Typ,
    decode_protected,
    parse_sign1,
    sign1,
    split_encrypt0,
    verify_sign1,
)
from trunkkey.encodings import (
    TextDecodeError,
    TextFormat,
    decode_bytes,
    detect_format,
    encode_text,
)
from trunkkey.parcels import ParcelRecord, match_scan
from trunkkey.proof import check_proof, check_scan_proof, proof_aad
from trunkkey.sealed import (
    MAX_SEALED,
    CarKemKey,
    CarKeyring,
    _seal,
    describe_sealed,
    is_sealed,
    open_sealed,
)
from trunkkey.sealed_bundle import open_bundle
from trunkkey.testing.consent import carrier_delegation, retailer_consent
from trunkkey.vehicle import Receipt, make_time_sync, read_time_sync, sign_receipt, verify_receipt

NOW = 1_800_000_000
VEHICLE = "1HGCM82633A004352"
CHALLENGE = bytes(range(16))
ORDER = ("1Z999AA10123456784", "1Z999AA10123456785", "1Z999AA10123456786")


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
    #: The token bound to :data:`ORDER` (also the last of ``tokens``) and its scan proof.
    parcel_token: bytes
    scan_proof: bytes


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
    parcels = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                          expires=NOW + 3600, courier_key=device_key.public_key, parcels=ORDER)
    scan = make_proof(device_key, token=parcels, vehicle_id=VEHICLE, challenge=CHALLENGE,
                      scan=ORDER[:2])
    store = TrustStore([TrustedKey.create(issuer_key.public_key, "retailer")])
    return World(issuer_key, device_key, store, (plain, rich, parcels), (proof,), parcels, scan)


def fuzz_cbor(data: bytes) -> None:
    try:
        value = cbor.decode(data)
    except DecodeError:
        return
    # Whatever decodes is canonical: it re-encodes to exactly the same bytes.
    assert cbor.encode(value) == data


def fuzz_text(data: bytes) -> None:
    try:
        value = decode_bytes(data)
    except TextDecodeError:
        return
    if data[:1] and data[0] >= 0x80:
        assert value == data  # raw CBOR passes through untouched
        return
    # Whatever text decodes is one canonical form of the bytes, up to case and padding.
    body = data.decode("ascii").strip()
    written = body.lower() if detect_format(body) is TextFormat.HEX else body.rstrip("=")
    assert encode_text(value, detect_format(body)) == written, "text round trip differs"


def fuzz_claims(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_claims(data)
    read = usual_claim_values(data)
    if read is not None:
        try:
            general: object = cbor.decode_map(data, _LABELS, not_a_map="", unknown="{}")
        except DecodeError:
            general = DecodeError
        assert read == general, "the claims shortcut and the general reader disagree"


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


@cache
def sealed_world() -> tuple[CarKemKey, tuple[bytes, ...], Verifier]:
    """The car's KEM key, the world's tokens sealed to it, and a verifier that opens them."""
    w = world()
    car = CarKemKey(hashlib.sha256(b"fuzz-car-kem").digest())
    sealed = tuple(
        _seal(token, car.public_key, hashlib.sha256(b"fuzz-ephemeral %d" % n).digest())
        for n, token in enumerate(w.tokens)
    )
    return car, sealed, Verifier(trust_store=w.store, ledger=MemoryLedger(),
                                 clock=ManualClock(NOW + 5), car_keys=CarKeyring([car]))


def fuzz_sealed(data: bytes) -> None:
    """The sealed envelope: strict parsing, all-or-nothing opening, and the verifier on top."""
    car, sealed, verifier = sealed_world()
    with contextlib.suppress(DecodeError):
        split_encrypt0(data)
    with contextlib.suppress(DecodeError):
        describe_sealed(data)
    opened = open_sealed(data, [car])
    if opened is not None:
        # The AEAD is unforgeable: only what was sealed opens, to what was sealed.
        assert data in sealed, "a sealed token nobody made opened"
        assert opened == world().tokens[sealed.index(data)], "opened to another plaintext"
    d = verifier.verify(data, vehicle_id=VEHICLE, action=Action.TRUNK)
    assert "unexpected error" not in d.detail, d.detail
    if data[:1] == b"\xd0" and opened is None:
        # Nothing that fails to open is read any further.
        assert d.reason in {Reason.CANNOT_OPEN, Reason.TOO_LARGE}, d.reason


def fuzz_proof(data: bytes) -> None:
    w = world()
    problem = check_proof(data, key=w.device_key.public_key, token=w.tokens[1],
                          vehicle_id=VEHICLE, challenge=CHALLENGE)
    if problem is None:
        # Ed25519 signatures are unique and the strict parser admits one
        # encoding, so only the genuine proof can pass.
        assert data == w.proofs[0], "a proof nobody made was accepted"


def fuzz_scan(data: bytes) -> None:
    """A scan proof for a token bound to parcels, whole (first byte 0) or as a
    payload the device signs correctly (first byte 1: a buggy handheld)."""
    w = world()
    signed, rest = data[:1] == b"\x01", data[1:]
    proof = rest
    if signed:
        proof = sign1(w.device_key, rest, typ=Typ.PROOF, include_kid=False,
                      external_aad=proof_aad(w.parcel_token, VEHICLE))
    parcels = decode_claims(parse_sign1(w.parcel_token).payload).parcels
    assert parcels is not None
    problem, scan = check_scan_proof(proof, key=w.device_key.public_key, token=w.parcel_token,
                                     vehicle_id=VEHICLE, challenge=CHALLENGE)
    if problem is not None:
        return
    if not signed:
        assert proof == w.scan_proof, "a scan nobody signed was accepted"
    outcome = match_scan(parcels, scan)
    if isinstance(outcome, ParcelRecord):
        assert scan is not None
        assert set(scan) <= set(ORDER), "a parcel outside the order was matched"
        assert len(outcome.scanned) == len(scan)


# -- consent chains, revocation lists, time-sync messages, receipts ----------------
# Each of these takes bytes from the radio or the network. A target runs in two
# modes chosen by the first byte: the rest as a whole message (can the parser be
# broken before the signature?), or the rest as a *payload* that the target
# signs correctly with the fixed key (can the decoder behind a valid signature
# be broken?). The second mode is what a compromised or buggy signer could send.


@dataclass(frozen=True)
class ConsentFuzzWorld:
    root: SigningKey
    vehicle_key: SigningKey
    anchors: VehicleAnchors
    chains: tuple[bytes, ...]
    token: bytes
    revocation_lists: tuple[bytes, ...]
    time_syncs: tuple[bytes, ...]
    receipts: tuple[bytes, ...]
    grants: tuple[bytes, ...]


SYNC_NONCE = bytes(range(100, 116))


@cache
def consent_world() -> ConsentFuzzWorld:
    root, retailer, carrier = (_fixed_key(f"fuzz-{n}") for n in ("root", "retailer", "carrier"))
    vehicle_key = _fixed_key("fuzz-vehicle")
    anchors = VehicleAnchors(vehicle_id=VEHICLE, vehicle_key=vehicle_key,
                             roots=[RootKey(key=root.public_key)])
    consent = retailer_consent(retailer, NOW)
    scope = root_scope(consent)
    assert isinstance(scope, Scope)
    root_grant = sign_root_grant(root, consent)
    carrier_grant = sign_delegation(retailer, scope, carrier_delegation(carrier, NOW))
    counter = iter(range(1 << 30))
    issuer = Issuer(carrier, "dhl", clock=ManualClock(NOW),
                    _token_ids=lambda n: next(counter).to_bytes(n, "big"))
    token = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600)
    receipt = Receipt(vehicle_id=VEHICLE, token_id=bytes(16), action=Action.TRUNK,
                      purpose=Purpose.DELIVERY, opened_at=NOW, closed_at=NOW + 30,
                      relocked_at=NOW + 30, relock_cause="closed", order_ref=b"order-1")
    return ConsentFuzzWorld(
        root=root, vehicle_key=vehicle_key, anchors=anchors,
        chains=(encode_chain([root_grant]), encode_chain([root_grant, carrier_grant])),
        token=token,
        revocation_lists=(
            sign_revocation_list(root, version=1, issued_at=NOW),
            sign_revocation_list(root, version=2, issued_at=NOW,
                                 grants=[grant_digest(carrier_grant)],
                                 supersede={b"order-1": NOW}),
        ),
        time_syncs=(make_time_sync(root, vehicle_id=VEHICLE, nonce=SYNC_NONCE, time=NOW),),
        receipts=(sign_receipt(vehicle_key, receipt),),
        grants=(root_grant, carrier_grant),
    )


def _signed_mode(data: bytes) -> tuple[bool, bytes]:
    """(sign the rest as a payload?, the rest)."""
    if not data:
        return False, data
    return bool(data[0] & 1), data[1:]


def fuzz_chain(data: bytes) -> None:
    w = consent_world()
    signed, rest = _signed_mode(data)
    if signed:
        # The rest as the payload of a root grant, correctly signed by the root.
        rest = encode_chain([sign1(w.root, rest, typ=Typ.GRANT)])
    consent = ConsentVerifier(anchors=w.anchors, revocations=RevocationState())
    got = consent.resolve(rest, now=NOW + 5, vehicle_id=VEHICLE, skew=60)
    if isinstance(got, ResolvedChain) and not signed:
        assert rest in w.chains, "a chain nobody signed resolved"
    verifier = Verifier(trust_store=TrustStore(), ledger=MemoryLedger(),
                        clock=ManualClock(NOW + 5), consent=consent)
    d = verifier.verify(w.token, vehicle_id=VEHICLE, action=Action.TRUNK, chain=rest)
    assert "unexpected error" not in d.detail, d.detail
    if d.allowed and not signed:
        assert rest == w.chains[1], "a token was allowed under a chain nobody signed"


@cache
def sealed_bundles() -> tuple[CarKemKey, tuple[bytes, ...]]:
    """The car's KEM key, and the consent world's token sealed with each of its chains."""
    w = consent_world()
    car = CarKemKey(hashlib.sha256(b"fuzz-car-kem").digest())
    return car, tuple(
        _seal(w.token, car.public_key, hashlib.sha256(b"fuzz-bundle %d" % n).digest(),
              chain=chain)
        for n, chain in enumerate(w.chains)
    )


def fuzz_sealed_bundle(data: bytes) -> None:
    """A token sealed with its chain: only a bundle someone sealed opens, and only the
    one whose chain the token hangs from opens the trunk."""
    w = consent_world()
    car, bundles = sealed_bundles()
    opened = open_bundle(data, [car])
    if opened is not None:
        assert data in bundles, "a sealed bundle nobody made opened"
    consent = ConsentVerifier(anchors=w.anchors, revocations=RevocationState())
    verifier = Verifier(trust_store=TrustStore(), ledger=MemoryLedger(),
                        clock=ManualClock(NOW + 5), consent=consent, car_keys=CarKeyring([car]))
    d = verifier.verify(data, vehicle_id=VEHICLE, action=Action.TRUNK)
    assert "unexpected error" not in d.detail, d.detail
    if d.allowed:
        assert data == bundles[1], "a sealed bundle nobody made was allowed"
    if is_sealed(data) and opened is None:
        assert d.reason in {Reason.CANNOT_OPEN, Reason.TOO_LARGE}, d.reason


#: The longest input the coverage-guided run tries, per target: one byte past
#: the largest sealed token for the sealed targets, 2048 bytes for the others.
MAX_LEN = {"sealed": MAX_SEALED + 1, "sealed_bundle": MAX_SEALED + 1}


def max_len(name: str) -> int:
    return MAX_LEN.get(name, 2048)


def fuzz_revocation(data: bytes) -> None:
    w = consent_world()
    signed, rest = _signed_mode(data)
    if signed:
        rest = sign1(w.root, rest, typ=Typ.REVOCATION_LIST)
    else:
        with contextlib.suppress(DecodeError):
            decode_revocations(rest)
    state = RevocationState()
    try:
        state.apply(rest, w.anchors, now=NOW)
    except UpdateRefused:
        return
    if not signed:
        assert rest in w.revocation_lists, "a revocation list nobody signed was applied"


def fuzz_time_sync(data: bytes) -> None:
    w = consent_world()
    signed, rest = _signed_mode(data)
    if signed:
        rest = sign1(w.root, rest, typ=Typ.TIME_SYNC)
    try:
        sync = read_time_sync(rest, w.root.public_key)
    except (DecodeError, SignatureError):
        return
    assert 0 <= sync.time < 2**40
    if not signed:
        assert rest in w.time_syncs, "a time-sync message nobody signed was read"


def fuzz_receipt(data: bytes) -> None:
    w = consent_world()
    signed, rest = _signed_mode(data)
    if signed:
        rest = sign1(w.vehicle_key, rest, typ=Typ.RECEIPT)
    try:
        verify_receipt(rest, w.vehicle_key.public_key)
    except (DecodeError, SignatureError):
        return
    if not signed:
        assert rest in w.receipts, "a receipt nobody signed was accepted"


def fuzz_grant(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_grant(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "cbor": fuzz_cbor,
    "text": fuzz_text,
    "claims": fuzz_claims,
    "cose": fuzz_cose,
    "verify": fuzz_verify,
    "proof": fuzz_proof,
    "scan": fuzz_scan,
    "chain": fuzz_chain,
    "revocation": fuzz_revocation,
    "time_sync": fuzz_time_sync,
    "receipt": fuzz_receipt,
    "grant": fuzz_grant,
    "sealed": fuzz_sealed,
    "sealed_bundle": fuzz_sealed_bundle,
}


def seeds(name: str) -> list[bytes]:
    """Valid objects (and a few near-misses) to start each target from."""
    w = world()
    tokens = list(w.tokens)
    payloads = [parse_sign1(t).payload for t in tokens]
    protected = [parse_sign1(t).protected for t in tokens]
    common = {
        "cbor": payloads + protected + tokens,
        "text": [encode_text(t, f).encode() for t in tokens for f in TextFormat]
        + [encode_text(t, padded=True).encode() + b"\n" for t in tokens] + tokens[:1],
        "claims": payloads,
        "cose": tokens + list(w.proofs),
        "verify": tokens + [t[:-1] for t in tokens],
        "proof": list(w.proofs),
        "scan": [b"\x00" + w.scan_proof, b"\x01" + parse_sign1(w.scan_proof).payload],
        "sealed": list(sealed_world()[1]),
    }
    if name in common:
        return common[name]
    c = consent_world()
    mode = {False: b"\x00", True: b"\x01"}
    grant_payloads = [parse_sign1(g).payload for g in c.grants]
    consent_seeds = {
        "sealed_bundle": list(sealed_bundles()[1]),
        "chain": [mode[False] + ch for ch in c.chains]
        + [mode[True] + p for p in grant_payloads],
        "revocation": [mode[False] + r for r in c.revocation_lists]
        + [mode[True] + parse_sign1(r).payload for r in c.revocation_lists],
        "time_sync": [mode[False] + t for t in c.time_syncs]
        + [mode[True] + parse_sign1(t).payload for t in c.time_syncs],
        "receipt": [mode[False] + r for r in c.receipts]
        + [mode[True] + parse_sign1(r).payload for r in c.receipts],
        "grant": grant_payloads,
    }
    return consent_seeds[name]
