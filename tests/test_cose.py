"""COSE_Sign1: trunkkey's strict envelope, its typ values, and the standard verifier."""

from __future__ import annotations

import dataclasses

import pytest

from support import NOW
from trunkkey import (
    Algorithm,
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
    Typ,
    Verifier,
    cbor,
    make_proof,
)
from trunkkey.consent.grant import grant_digest
from trunkkey.cose import (
    identity_of,
    open_sign1,
    parse_sign1,
    sig_structure,
    sign1,
    signed_identity,
    split_sign1,
    to_be_signed,
    verify_sign1,
)


def test_typ_values_are_the_published_wire_values_and_distinct() -> None:
    assert {t.name: int(t) for t in Typ} == {
        "TOKEN": 65301, "PROOF": 65302, "GRANT": 65303, "RECEIPT": 65304, "TIME_SYNC": 65305,
        "REVOCATION_LIST": 65306, "TRUST_UPDATE": 65307, "CHECKPOINT": 65308, "LOG_ACK": 65309,
        "KEM_PROPOSAL": 65310,
    }
    assert len({int(t) for t in Typ}) == len(Typ.__members__)  # no aliases


# -- the strict envelope ---------------------------------------------------------------


def test_strict_envelope_reads_two_byte_lengths_and_refuses_longer() -> None:
    key, courier = SigningKey.generate(Algorithm.ES256), SigningKey.generate(Algorithm.ES256)
    clock, name, car = ManualClock(NOW), "i" * 64, "v" * 64
    verifier = Verifier(trust_store=TrustStore([TrustedKey.create(key.public_key, name)]),
                        ledger=MemoryLedger(), clock=clock)
    token = Issuer(key, name, clock=clock).mint(
        vehicle_id=car, action="trunk", not_before=NOW, expires=NOW + 60, order_ref=b"o" * 64,
        courier_key=courier.public_key, geofence=Geofence(lat_e7=0, lon_e7=0, radius_m=100),
    )
    parts = parse_sign1(token)
    assert len(parts.payload) >= 256  # the payload's head uses a 2-byte length
    assert parts.payload_item[0] == 0x59
    challenge = bytes(16)
    proof = make_proof(courier, token=token, vehicle_id=car, challenge=challenge)
    d = verifier.verify(token, vehicle_id=car, action="trunk",
                        location=Location(lat_e7=0, lon_e7=0), proof=proof, challenge=challenge)
    assert d.allowed, d.detail
    with pytest.raises(DecodeError, match=r"^expected a byte string$"):
        parse_sign1(b"\xd2\x84\x00\xa0\x40\x40")
    with pytest.raises(DecodeError, match=r"^byte string length out of range$"):
        parse_sign1(b"\xd2\x84\x5a\x00\x01\x00\x00")
    with pytest.raises(DecodeError, match=r"^argument not in shortest form$"):
        parse_sign1(b"\xd2\x84\x59\x00\xff" + bytes(255))
    with pytest.raises(DecodeError, match=r"^argument not in shortest form$"):
        parse_sign1(b"\xd2\x84\x58\x17" + bytes(23))


@pytest.mark.parametrize(("data", "message"), [
    (b"\xd3\x84", "not a tagged COSE_Sign1 (tag 18)"),
    (b"\x84\x40\xa0\x40\x40", "not a tagged COSE_Sign1 (tag 18)"),
    (b"\xd2\x83\x40\xa0\x40", "COSE_Sign1 must be an array of four items"),
    (b"\xd2\x84\x40\xa1\x01\x26\x40\x58\x40" + bytes(64),
     "unprotected header must be an empty map"),
    (b"\xd2\x84\x40\xa0\x40", "truncated COSE_Sign1"),
    (b"\xd2", "truncated COSE_Sign1"),
    (b"\xd2\x84\x40\xa0\x40\x58\x40" + bytes(63), "truncated byte string"),
    (b"\xd2\x84\x40\xa0\x40\x58\x40" + bytes(65), "trailing bytes after COSE_Sign1"),
    (b"\xd2\x84\x40\xa0\x40\x58\x3f" + bytes(63), "signature must be 64, 2420 or 3373 bytes"),
    (b"\xd2\x84\x40\xa0\x40\x58\x41" + bytes(65), "signature must be 64, 2420 or 3373 bytes"),
], ids=repr)
def test_strict_envelope_refusals_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as raised:
        parse_sign1(data)
    assert str(raised.value) == message


@pytest.mark.parametrize("length", [255, 256, 257, 65535])
def test_strict_envelope_reads_every_one_and_two_byte_payload_length(length: int) -> None:
    key = SigningKey.generate()
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    message = sign1(key, payload, typ=Typ.RECEIPT)
    parts = parse_sign1(message)
    assert parts.payload == payload
    assert parts.payload_item == cbor.encode(payload)
    key.public_key.verify(parts.signature, to_be_signed(parts.protected_item, parts.payload_item))
    # The standard verifier reads the same message to the same payload (within its cap).
    if len(message) <= 65536:
        assert verify_sign1(message, key.public_key) == payload


def test_parsed_envelope_and_header_are_frozen_and_slotted() -> None:
    from trunkkey.cose import ProtectedHeader, decode_protected

    key = SigningKey.generate()
    parts = parse_sign1(sign1(key, b"x", typ=Typ.TOKEN))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parts.payload = b"y"  # type: ignore[misc]
    assert not hasattr(parts, "__dict__")
    header = decode_protected(parts.protected)
    assert isinstance(header, ProtectedHeader)
    assert (header.alg, header.typ, header.kid) == (-8, int(Typ.TOKEN), key.kid)
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.typ = int(Typ.GRANT)  # type: ignore[misc]
    assert not hasattr(header, "__dict__")


# -- the standard verifier -------------------------------------------------------------


def _std_message(key: SigningKey, protected: dict[int, object], unprotected: bytes = b"\xa0",
                 payload: bytes | None = b"payload", detached: bytes | None = None) -> bytes:
    prot = cbor.encode(protected) if protected else b""
    signed_payload = payload if payload is not None else detached
    assert signed_payload is not None
    sig = key.sign(sig_structure(prot, signed_payload))
    body = b"\xf6" if payload is None else cbor.head(2, len(payload)) + payload
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + unprotected + body
            + cbor.head(2, len(sig)) + sig)


def test_standard_verifier_alg_must_match_the_key_in_either_bucket() -> None:
    key = SigningKey.generate()
    assert verify_sign1(_std_message(key, {1: -8}), key.public_key) == b"payload"
    with pytest.raises(SignatureError, match=r"^alg does not match the verification key$"):
        verify_sign1(_std_message(key, {1: -7}), key.public_key)
    with pytest.raises(SignatureError, match=r"^alg does not match the verification key$"):
        verify_sign1(_std_message(key, {}, unprotected=b"\xa1\x01\x26"), key.public_key)
    assert verify_sign1(_std_message(key, {}, unprotected=b"\xa1\x01\x27"), key.public_key)


def test_standard_verifier_accepts_only_protected_understood_crit_headers() -> None:
    key = SigningKey.generate()
    pub = key.public_key
    for understood in (3, 5, 6, 16):
        header = {1: -8, 2: [understood], understood: 0 if understood in (3, 16) else b"x"}
        assert verify_sign1(_std_message(key, header), pub) == b"payload", understood
    for refused in ({1: -8, 2: [7], 7: 0}, {1: -8, 2: [99], 99: 0}, {1: -8, 2: [3]},
                    {1: -8, 2: []}, {1: -8, 2: 3}):
        with pytest.raises(DecodeError):
            verify_sign1(_std_message(key, refused), pub)
    with pytest.raises(DecodeError, match=r"^crit must be protected$"):
        verify_sign1(_std_message(key, {1: -8}, unprotected=b"\xa1\x02\x81\x01"), pub)
    with pytest.raises(DecodeError, match=r"^a header parameter appears in both buckets$"):
        verify_sign1(_std_message(key, {1: -8}, unprotected=b"\xa1\x01\x27"), pub)


def test_standard_verifier_refuses_bad_shapes_and_misplaced_detached_payloads() -> None:
    key = SigningKey.generate()
    pub = key.public_key
    with pytest.raises(DecodeError, match=r"^COSE_Sign1 must be an array of four items$"):
        verify_sign1(b"\xd2\x83\x40\xa0\x40", pub)
    with pytest.raises(DecodeError, match=r"^malformed COSE_Sign1 headers$"):
        verify_sign1(b"\x84\x00\xa0\x40\x40", pub)
    detached = _std_message(key, {1: -8}, payload=None, detached=b"outside")
    assert verify_sign1(detached, pub, detached_payload=b"outside") == b"outside"
    with pytest.raises(DecodeError, match=r"^detached payload not supplied$"):
        verify_sign1(detached, pub)
    with pytest.raises(DecodeError, match=r"^payload is attached; do not supply a detached one$"):
        verify_sign1(_std_message(key, {1: -8}), pub, detached_payload=b"payload")


def test_standard_verifier_size_cap_is_exactly_64_kib() -> None:
    key = SigningKey.generate()
    overhead = len(sign1(key, b"", typ=Typ.RECEIPT, include_kid=False))
    # A payload that lands the whole message on exactly 65536 bytes, then one more.
    fits = sign1(key, bytes(65536 - overhead - 2), typ=Typ.RECEIPT, include_kid=False)
    assert len(fits) == 65536
    assert verify_sign1(fits, key.public_key) == bytes(65536 - overhead - 2)
    over = fits[:-64 - 3] + b"\x00" + fits[-64 - 3:]
    assert len(over) == 65537
    with pytest.raises(DecodeError, match=r"^COSE message too large$"):
        verify_sign1(over, key.public_key)


def test_standard_verifier_refusals_are_exact() -> None:
    key = SigningKey.generate()
    pub = key.public_key
    with pytest.raises(DecodeError, match=r"^not CBOR: CBORDecodeEOF$"):
        verify_sign1(b"\x84\x40", pub)
    with pytest.raises(DecodeError, match=r"^CBOR tag 98 is not COSE_Sign1$"):
        verify_sign1(b"\xd8\x62\x84\x40\xa0\x40\x40", pub)
    with pytest.raises(DecodeError, match=r"^protected header must be a map$"):
        verify_sign1(b"\x84\x41\x80\xa0\x40\x40", pub)
    with pytest.raises(DecodeError, match=r"^crit must be a non-empty array$"):
        verify_sign1(_std_message(key, {1: -8, 2: []}), pub)
    with pytest.raises(DecodeError, match=r"^crit must be a non-empty array$"):
        verify_sign1(_std_message(key, {1: -8, 2: 3}), pub)
    with pytest.raises(DecodeError, match=r"^critical header 99 not understood$"):
        verify_sign1(_std_message(key, {1: -8, 2: [99], 99: 0}), pub)
    with pytest.raises(DecodeError, match=r"^crit labels must be integers or text strings$"):
        verify_sign1(_std_message(key, {1: -8, 2: [b"x"]}), pub)
    with pytest.raises(DecodeError, match=r"^critical header 3 not understood$"):
        verify_sign1(_std_message(key, {1: -8, 2: [3]}), pub)
    with pytest.raises(DecodeError, match=r"^payload and signature must be byte strings$"):
        verify_sign1(b"\x84\x43\xa1\x01\x27\xa0\x40\x61\x78", pub)


# -- opening a signed object, and naming it --------------------------------------------


def test_open_sign1_says_which_object_failed_and_why() -> None:
    key = SigningKey.generate()
    sync = sign1(key, b"\xa0", typ=Typ.TIME_SYNC)
    assert open_sign1(sync, key.public_key, typ=Typ.TIME_SYNC, kid=key.kid).payload == b"\xa0"
    with pytest.raises(SignatureError, match=r"^header is not \{alg of the key, typ TIME_SYNC\}$"):
        open_sign1(sync, key.public_key, typ=Typ.TIME_SYNC, kid=None)
    with pytest.raises(SignatureError, match=r"^header is not \{alg of the key, kid, typ RECEIPT"):
        open_sign1(sync, key.public_key, typ=Typ.RECEIPT, kid=key.kid)
    with pytest.raises(SignatureError, match=r"^header is not \{alg of the key, typ RECEIPT\}$"):
        open_sign1(sync, key.public_key, typ=Typ.RECEIPT, kid=None)
    other = SigningKey.generate()
    forged = sign1(other, b"\xa0", typ=Typ.TIME_SYNC, include_kid=False)
    with pytest.raises(SignatureError, match=r"^time sync signature does not verify$"):
        open_sign1(forged, key.public_key, typ=Typ.TIME_SYNC, kid=None)


def test_identity_covers_the_header_and_payload_but_not_the_signature() -> None:
    key = SigningKey.generate(Algorithm.ES256)
    a = sign1(key, b"\x01", typ=Typ.RECEIPT)
    b = sign1(key, b"\x02", typ=Typ.RECEIPT)
    c = sign1(key, b"\x01", typ=Typ.TIME_SYNC)
    assert len({signed_identity(a), signed_identity(b), signed_identity(c)}) == 3
    _, _, _, protected_item, payload_item = split_sign1(a)
    assert signed_identity(a) == identity_of(protected_item, payload_item)
    assert parse_sign1(a).identity == signed_identity(a)
    assert grant_digest(a) == signed_identity(a)
