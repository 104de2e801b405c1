"""Tests written to kill mutants that survived ``scripts/mutation.py``.

Each pins an exact boundary or message that the broader suites left loose:
a mutant that moves a boundary by one, or changes which error is raised,
must fail here. See docs/mutation-testing.md for the scores and the
survivors judged equivalent.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import NoReturn

import pytest

from support import NOW, VEHICLE, make_world
from trunkkey import (
    Algorithm,
    Decision,
    DecodeError,
    Geofence,
    InvalidRequest,
    Issuer,
    LedgerError,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SignatureError,
    SigningKey,
    SqliteLedger,
    TrustedKey,
    TrustStore,
    Typ,
    Verifier,
    VerifierPolicy,
    cbor,
    make_proof,
)
from trunkkey.claims import (
    TokenClaims,
    _decode_claims_generic,
    _decode_common_shape,
    decode_claims,
    encode_claims,
)
from trunkkey.cose import parse_sign1, sig_structure, sign1, to_be_signed, verify_sign1
from trunkkey.proof import check_proof

# -- cbor ---------------------------------------------------------------------------


def test_max_depth_is_exactly_8() -> None:
    assert cbor.MAX_DEPTH == 8
    assert cbor.decode(b"\x81" * 8 + b"\x00") == [[[[[[[[0]]]]]]]]
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 9 + b"\x00")


@pytest.mark.parametrize(("encoded", "value"), [
    (b"\x17", 23),
    (b"\x18\x18", 24),
    (b"\x18\xff", 255),
    (b"\x19\x01\x00", 256),
    (b"\x19\xff\xff", 65535),
    (b"\x1a\x00\x01\x00\x00", 65536),
    (b"\x1a\xff\xff\xff\xff", 2**32 - 1),
    (b"\x1b\x00\x00\x00\x01\x00\x00\x00\x00", 2**32),
    (b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", 2**64 - 1),
    (b"\x38\x18", -25),
    (b"\x39\x01\x00", -257),
])
def test_shortest_form_boundaries_decode_and_encode(encoded: bytes, value: int) -> None:
    assert cbor.decode(encoded) == value
    assert cbor.encode(value) == encoded


@pytest.mark.parametrize("encoded", [
    b"\x18\x17",
    b"\x19\x00\xff",
    b"\x1a\x00\x00\xff\xff",
    b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff",
    b"\x58\x17" + bytes(23),
    b"\x99\x00\x17" + bytes(23),
])
def test_one_below_each_long_form_is_not_shortest(encoded: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^argument not in shortest form$"):
        cbor.decode(encoded)


def test_map_count_is_checked_against_the_bytes_left() -> None:
    # One pair declared, one byte left: refused as a truncated map, before parsing.
    with pytest.raises(DecodeError, match=r"^truncated map$"):
        cbor.decode(b"\xa1\x00")
    with pytest.raises(DecodeError, match=r"^truncated map$"):
        cbor.decode(b"\x81\xa2\x00\x00\x01")
    assert cbor.decode(b"\xa1\x00\x00") == {0: 0}


def test_array_count_is_checked_against_the_bytes_left() -> None:
    with pytest.raises(DecodeError, match=r"^truncated array$"):
        cbor.decode(b"\x82\x00")
    assert cbor.decode(b"\x82\x00\x00") == [0, 0]


def test_map_keys_count_towards_nesting() -> None:
    # A map at the last level whose key is itself nested: too deep, not "bad key".
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\xa1" + b"\x81" * 8 + b"\x00" + b"\x00")
    # And the key's depth is bounded, so a deep key cannot recurse without limit.
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 7 + b"\xa1" + b"\x81" * 3000 + b"\x00\x00")
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 7 + b"\xa1\x00" + b"\x81" * 3000 + b"\x00")


def test_input_type_and_emptiness_messages() -> None:
    with pytest.raises(DecodeError, match=r"^expected bytes$"):
        cbor.decode(bytearray(b"\x00"))  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"^empty input$"):
        cbor.decode(b"")


def test_head_boundaries() -> None:
    for major in range(8):
        for arg, size in ((23, 1), (24, 2), (255, 2), (256, 3), (65535, 3), (65536, 5),
                          (2**32 - 1, 5), (2**32, 9), (2**64 - 1, 9)):
            out = cbor.head(major, arg)
            assert len(out) == size, (major, arg)
            assert out[0] >> 5 == major
    with pytest.raises(ValueError, match="out of CBOR range"):
        cbor.head(0, 2**64)


def test_encoder_refusals_say_why() -> None:
    with pytest.raises(TypeError, match=r"^cannot encode float in trunkkey's CBOR subset$"):
        cbor.encode(1.5)
    with pytest.raises(ValueError, match=r"^integer out of CBOR range$"):
        cbor.encode(2**64)
    with pytest.raises(ValueError, match=r"^integer out of CBOR range$"):
        cbor.encode(-(2**64) - 1)


# -- proof ----------------------------------------------------------------------------


def _proof_world() -> tuple[SigningKey, bytes]:
    device = SigningKey.generate()
    return device, b"\xd2token-bytes"


def test_make_proof_refusals_say_why() -> None:
    device, token = _proof_world()
    with pytest.raises(InvalidRequest, match=r"^device_key must be a trunkkey\.SigningKey$"):
        make_proof(device.public_key, token=token, vehicle_id="V",  # type: ignore[arg-type]
                   challenge=bytes(16))
    with pytest.raises(InvalidRequest, match=r"^challenge must be 16 to 32 bytes$"):
        make_proof(device, token=token, vehicle_id="V", challenge=bytes(15))


def test_check_proof_details_name_the_failed_check() -> None:
    device, token = _proof_world()
    challenge = bytes(range(16))
    good = make_proof(device, token=token, vehicle_id="V", challenge=challenge)
    p256 = SigningKey.generate(Algorithm.ES256)
    by_p256 = make_proof(p256, token=token, vehicle_id="V", challenge=challenge)

    def problem(proof: bytes, **over: object) -> str | None:
        args: dict[str, object] = {"key": device.public_key, "token": token, "vehicle_id": "V",
                                   "challenge": challenge}
        args.update(over)
        return check_proof(proof, **args)  # type: ignore[arg-type]

    assert problem(good) is None
    assert problem(by_p256) == "proof header is not {alg of the cnf key, typ proof}"
    assert problem(good, token=token + b"x") == (
        "proof signature does not verify for this token, vehicle and key"
    )
    assert problem(good, vehicle_id="W") == (
        "proof signature does not verify for this token, vehicle and key"
    )
    assert problem(good, challenge=bytes(16)) == "proof answers another challenge"
    assert problem(bytearray(good)) == "proof is not bytes of a bounded size"  # type: ignore[arg-type]


# -- ledgers ----------------------------------------------------------------------------


def test_memory_ledger_repr_counts_spent_tokens() -> None:
    ledger = MemoryLedger()
    assert repr(ledger) == "MemoryLedger(0 spent)"
    assert ledger.consume("V", b"t", 10) is True
    assert repr(ledger) == "MemoryLedger(1 spent)"


def test_sqlite_ledger_errors_say_what_failed(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = SqliteLedger(path)
    assert repr(ledger) == f"SqliteLedger({str(path)!r})"
    # Someone drops the table behind the ledger's back: every operation fails closed.
    other = sqlite3.connect(path)
    other.execute("DROP TABLE spent")
    other.commit()
    other.close()
    with pytest.raises(LedgerError, match=r"^ledger write failed: no such table: spent$"):
        ledger.consume("V", b"t", 10)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10)
    with pytest.raises(LedgerError, match=r"^ledger prune failed: no such table: spent$"):
        ledger.prune(10, limit=5)
    with pytest.raises(LedgerError, match=r"^ledger read failed: no such table: spent$"):
        ledger.count()
    ledger.close()
    with pytest.raises(LedgerError, match=r"^ledger is closed$"):
        ledger.consume("V", b"t", 10)


def test_sqlite_ledger_refuses_what_it_cannot_make_durable(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"^cannot put :memory: in WAL mode: a ledger needs"):
        SqliteLedger(":memory:")
    with pytest.raises(LedgerError, match=r"^cannot put an empty path in WAL mode"):
        SqliteLedger("")
    assert not (Path.cwd() / ":memory:").exists()
    with pytest.raises(LedgerError, match=r"^cannot open ledger .*: unable to open database file$"):
        SqliteLedger(tmp_path / "no-such-dir" / "l.db")


# -- verifier ---------------------------------------------------------------------------


def test_verifier_policy_is_frozen_slotted_and_keyword_only() -> None:
    policy = VerifierPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_skew = 300  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    with pytest.raises(TypeError):
        VerifierPolicy(60)  # type: ignore[misc]


def test_verifier_policy_refusals_say_why() -> None:
    with pytest.raises(InvalidRequest, match=r"^max_skew must be 0 to 300 seconds$"):
        VerifierPolicy(max_skew=301)
    positive = r"^max_lifetime must be a positive number of seconds$"
    with pytest.raises(InvalidRequest, match=positive):
        VerifierPolicy(max_lifetime=0)
    with pytest.raises(InvalidRequest, match=r"^max_token_size must be 64 to 65536 bytes$"):
        VerifierPolicy(max_token_size=63)
    assert VerifierPolicy(max_lifetime=1).max_lifetime == 1


def test_decision_is_frozen_slotted_and_keyword_only() -> None:
    world = make_world()
    decision = world.verifier.verify(world.mint(), vehicle_id=VEHICLE, action="trunk")
    assert decision.allowed
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reason = Reason.EXPIRED  # type: ignore[misc]
    assert not hasattr(decision, "__dict__")
    assert dataclasses.fields(decision)
    assert all(f.kw_only for f in dataclasses.fields(decision))


# -- cose --------------------------------------------------------------------------------


def test_typ_values_are_the_published_wire_values_and_distinct() -> None:
    assert {t.name: int(t) for t in Typ} == {
        "TOKEN": 65301, "PROOF": 65302, "GRANT": 65303, "RECEIPT": 65304, "TIME_SYNC": 65305,
        "REVOCATION_LIST": 65306, "TRUST_UPDATE": 65307,
    }
    assert len({int(t) for t in Typ}) == len(Typ.__members__)  # no aliases


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


def test_standard_verifier_crit_handling() -> None:
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


def test_standard_verifier_shapes_and_detached_payloads() -> None:
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


def test_verifier_caller_mistakes_say_why() -> None:
    world = make_world()
    token = world.mint()
    decision = world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk")
    with pytest.raises(TypeError, match=r"^Decisions are made by a Verifier, not constructed$"):
        Decision(reason=Reason.ALLOWED, detail="", at=0)
    with pytest.raises(TypeError, match=r"^test decision\.allowed, not the decision itself$"):
        bool(decision)
    v = world.verifier
    cases: list[tuple[dict[str, object], str]] = [
        ({"vehicle_id": ""}, r"^vehicle_id must be a non-empty string$"),
        ({"action": "fly"}, r"^unknown action or purpose$"),
        ({"purpose": "joyride"}, r"^unknown action or purpose$"),
        ({"location": (48.1, 11.5)}, r"^location must be a trunkkey\.Location$"),
        ({"now": 1.5}, r"^now must be an int of Unix seconds$"),
    ]
    for change, message in cases:
        args: dict[str, object] = {"now": NOW, "vehicle_id": VEHICLE, "action": "trunk"}
        args.update(change)
        with pytest.raises(InvalidRequest, match=message):
            v.verify_at(token, **args)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"^trust_store must be a trunkkey\.TrustStore$"):
        Verifier(trust_store=[], ledger=MemoryLedger(), clock=world.clock)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest,
                       match=r"^consent must be a trunkkey\.consent\.ConsentVerifier$"):
        Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                 consent=object())  # type: ignore[arg-type]


# -- claims ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 23, 24, 25, 64])
def test_claims_fast_paths_at_the_one_byte_length_boundary(length: int) -> None:
    key = SigningKey.generate()
    name, car = "i" * length, "v" * length
    issuer = Issuer(key, name, clock=ManualClock(NOW))
    claims = issuer.claims_for(vehicle_id=car, action="unlock-relock", purpose="return-pickup",
                               not_before=NOW, expires=NOW + 60)
    payload = encode_claims(claims)
    # The hand-written encoding is the canonical one, whichever path produced it.
    assert payload == cbor.encode(cbor.decode(payload))
    assert _decode_claims_generic(payload) == claims
    # And the fast decoder takes the common shape itself rather than deferring.
    assert _decode_common_shape(payload) == claims
    token = issuer.sign_claims(claims)
    store = TrustStore([TrustedKey.create(key.public_key, name)])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ManualClock(NOW))
    assert verifier.verify(token, vehicle_id=car, action="unlock-relock",
                           purpose="return-pickup").allowed


def test_claims_fast_decoder_defers_on_anything_unusual() -> None:
    issuer = Issuer(SigningKey.generate(), "shop", clock=ManualClock(NOW))
    plain = encode_claims(issuer.claims_for(vehicle_id="car", action="trunk", not_before=NOW,
                                            expires=NOW + 60))
    assert _decode_common_shape(plain) is not None
    assert _decode_common_shape(plain[:-1] + b"\x10") is None  # a reserved access bit
    assert _decode_common_shape(plain[:-1] + b"\x01") is None  # no purpose bit
    assert _decode_common_shape(plain[:-1] + b"\x04") is None  # no action bit
    assert _decode_common_shape(plain.replace(b"\x03\x63car", b"\x02\x63car")) is None
    with pytest.raises(DecodeError, match=r"^exp must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 4: -1}))
    with pytest.raises(DecodeError, match=r"^iat must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 6: -1}))
    with pytest.raises(DecodeError, match=r"^nbf must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 5: -1}))


# -- verifier: every denial's detail, exactly ---------------------------------------------


def _forge(key: SigningKey, header: dict[int, object], payload: bytes) -> bytes:
    prot = cbor.encode(header)
    sig = key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
            + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)


class _FailingLedger(MemoryLedger):
    def spend(self, *args: object, **kwargs: object) -> NoReturn:
        raise OSError("disk gone")


def test_every_denial_detail_is_exact() -> None:
    world = make_world()
    key, kid, v = world.key, world.key.kid, world.verifier
    header = {1: -8, 4: kid, 16: int(Typ.TOKEN)}
    base = world.issuer.claims_for(vehicle_id=VEHICLE, action="trunk", not_before=NOW,
                                   expires=NOW + 3600)

    def forged(**changes: object) -> bytes:
        return _forge(key, header, encode_claims(dataclasses.replace(base, **changes)))

    def detail(token: object, **context: object) -> tuple[Reason, str]:
        args: dict[str, object] = {"now": NOW, "vehicle_id": VEHICLE, "action": "trunk"}
        args.update(context)
        fresh = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock)
        d = fresh.verify_at(token, **args)  # type: ignore[arg-type]
        return d.reason, d.detail

    device = SigningKey.generate()
    fence = Geofence(lat_e7=0, lon_e7=0, radius_m=100)
    bound = world.mint(courier_key=device.public_key)
    fenced = world.mint(geofence=fence)
    stranger = SigningKey.generate()
    assert detail("x") == (Reason.MALFORMED, "token must be bytes")
    assert detail(b"\xd2" * 1025) == (Reason.TOO_LARGE, "1025 bytes > cap of 1024")
    assert detail(_forge(key, {1: -8, 2: [1], 4: kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.UNSUPPORTED_HEADER, "protected header refused")
    assert detail(_forge(key, {1: -8, 4: kid, 16: 1}, b"\xa0")) == (
        Reason.WRONG_TYPE, "typ 1 is not a trunkkey token")
    assert detail(_forge(key, {1: -8, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.MALFORMED, "token has no kid")
    assert detail(_forge(stranger, {1: -8, 4: stranger.kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.UNKNOWN_KEY, f"no trusted key {stranger.kid.hex()}")
    assert detail(_forge(key, {1: -7, 4: kid, 16: int(Typ.TOKEN)}, b"\xa0")) == (
        Reason.ALG_MISMATCH, "alg -7 is not the key's EdDSA")
    long_typ = b"\xa3\x01\x27\x04\x48" + kid + b"\x10\x1a\x00\x00\xff\x15"
    sig = key.sign(sig_structure(long_typ, b"\xa0"))
    assert detail(b"\xd2\x84" + cbor.head(2, len(long_typ)) + long_typ + b"\xa0\x41\xa0\x58\x40"
                  + sig) == (Reason.MALFORMED, "protected header refused")
    tampered = bytearray(world.mint())
    tampered[-1] ^= 1
    assert detail(bytes(tampered)) == (Reason.BAD_SIGNATURE, "signature does not verify")
    assert detail(_forge(key, header, b"\xa0")) == (
        Reason.MALFORMED, "claims: missing claims: [-65537, 1, 3, 4, 5, 6, 7]")
    assert detail(forged(expires=NOW)) == (Reason.MALFORMED, "window is empty or inverted")
    assert detail(forged(expires=NOW - 1))[1] == "window is empty or inverted"
    assert detail(forged(issuer="someone")) == (
        Reason.WRONG_ISSUER, "iss does not match the signing key")
    assert detail(world.mint(), vehicle_id="OTHER") == (
        Reason.WRONG_VEHICLE, "token is for another vehicle")
    assert detail(world.mint(), action="unlock-relock") == (
        Reason.WRONG_ACTION, "token grants trunk, not unlock-relock")
    assert detail(world.mint(), purpose="return-pickup") == (
        Reason.WRONG_PURPOSE, "token is for delivery, not return-pickup")
    assert detail(forged(expires=NOW + 86401)) == (
        Reason.LIFETIME_TOO_LONG, "window of 86401 s exceeds 86400 s")
    assert detail(world.mint(), now=NOW - 61) == (Reason.NOT_YET_VALID, "window has not started")
    assert detail(world.mint(), now=NOW + 4 * 3600 + 60) == (Reason.EXPIRED, "window has ended")
    assert detail(fenced) == (Reason.LOCATION_UNKNOWN, "token has a geofence; position unknown")
    assert detail(fenced, location=Location(lat_e7=10**6, lon_e7=0)) == (
        Reason.OUTSIDE_GEOFENCE, "vehicle is outside the geofence")
    assert detail(bound) == (Reason.PROOF_MISSING, "token is bound to a device; no proof given")
    assert detail(bound, proof=b"p") == (
        Reason.PROOF_INVALID, "no challenge was issued for this proof")
    failing = Verifier(trust_store=world.store, ledger=_FailingLedger(), clock=world.clock)
    d = failing.verify_at(world.mint(), now=NOW, vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.LEDGER_UNAVAILABLE, "ledger failed: OSError")
    token = world.mint()
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").detail == "all checks passed"
    again = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (again.reason, again.detail) == (Reason.ALREADY_USED, "token was already used")
    no_consent = v.verify(token, vehicle_id=VEHICLE, action="trunk", chain=b"\x80")
    assert (no_consent.reason, no_consent.detail) == (
        Reason.CHAIN_INVALID, "verifier holds no consent anchors")


def test_key_validity_and_unexpected_errors_have_exact_details() -> None:
    clock = ManualClock(NOW)
    key = SigningKey.generate()
    store = TrustStore([TrustedKey.create(key.public_key, "shop", not_after=NOW - 1)])
    token = Issuer(key, "shop", clock=clock).mint(vehicle_id=VEHICLE, action="trunk",
                                                  not_before=NOW, expires=NOW + 60)
    v = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock)
    d = v.verify(token, vehicle_id=VEHICLE, action="trunk")
    assert (d.reason, d.detail) == (Reason.KEY_NOT_VALID, "signing key outside its validity period")


def test_verifier_exposes_its_policy_and_trust_store() -> None:
    world = make_world()
    policy = VerifierPolicy(max_skew=10)
    v = Verifier(trust_store=world.store, ledger=world.ledger, clock=world.clock, policy=policy)
    assert v.policy is policy
    assert v.trust_store is world.store
    assert repr(v) == f"Verifier({world.store!r}, {world.ledger!r}, {policy!r})"


def test_faults_inside_the_consent_verifier_fail_closed_with_exact_details() -> None:
    from trunkkey.consent import ConsentVerifier
    from trunkkey.testing.consent import build_world

    class Exploding(ConsentVerifier):
        def resolve(self, *args: object, **kwargs: object) -> NoReturn:
            raise RuntimeError("boom")

    cw = build_world()
    token, chain = cw.token(), cw.chain
    for cls, reason, text in (
        (Exploding, Reason.MALFORMED, "unexpected error while checking: RuntimeError"),
    ):
        consent = cls(anchors=cw.anchors, revocations=cw.revocations)
        for use_verify_at in (False, True):
            v = Verifier(trust_store=TrustStore(), ledger=MemoryLedger(), clock=cw.clock,
                         consent=consent)
            challenge = bytes(16)
            proof = make_proof(cw.courier, token=token, vehicle_id=cw_vehicle(),
                               challenge=challenge)
            args: dict[str, object] = {
                "vehicle_id": cw_vehicle(), "action": "trunk", "chain": chain,
                "location": Location(lat_e7=cw_home().lat_e7, lon_e7=cw_home().lon_e7),
                "proof": proof, "challenge": challenge,
            }
            d = (v.verify_at(token, now=cw.clock.now(), **args)  # type: ignore[arg-type]
                 if use_verify_at else v.verify(token, **args))  # type: ignore[arg-type]
            assert (d.reason, d.detail) == (reason, text)


def cw_vehicle() -> str:
    from trunkkey.testing.consent import VEHICLE as STORY_VEHICLE

    return STORY_VEHICLE


def cw_home() -> Geofence:
    from trunkkey.testing.consent import HOME

    return HOME


@pytest.mark.parametrize("vehicle_id", ["V", "v" * 23, "v" * 24, "é" * 32])
def test_proof_aad_is_the_documented_cbor_array(vehicle_id: str) -> None:
    import hashlib

    from trunkkey.proof import proof_aad

    token = b"\xd2any token bytes"
    assert proof_aad(token, vehicle_id) == cbor.encode(
        [vehicle_id, hashlib.sha256(token).digest()]
    )
    # So a standard COSE verifier given the documented AAD accepts the proof.
    device = SigningKey.generate()
    proof = make_proof(device, token=token, vehicle_id=vehicle_id, challenge=bytes(16))
    aad = cbor.encode([vehicle_id, hashlib.sha256(token).digest()])
    assert verify_sign1(proof, device.public_key, external_aad=aad) == bytes(16)


# -- consent chain ------------------------------------------------------------------------


def test_grant_window_edges_with_the_skew_are_exact() -> None:
    from trunkkey.testing.consent import START, build_world

    skew = 60
    carrier_nbf, carrier_exp = START - 3600, START + 7 * 86_400

    def at(now: int, window: tuple[int, int]) -> Reason:
        cw = build_world()
        if now < START:
            cw.clock.advance(now - START)
        token = cw.token(not_before=window[0], expires=window[1])  # minted before it ends
        if now > START:
            cw.clock.advance(now - START)
        return cw.present(token, cw.chain).reason

    first = (carrier_nbf, carrier_nbf + 600)
    last = (carrier_exp - 600, carrier_exp)
    assert at(carrier_nbf - skew - 1, first) is Reason.GRANT_NOT_YET_VALID
    assert at(carrier_nbf - skew, first) is Reason.ALLOWED
    assert at(carrier_exp + skew - 1, last) is Reason.ALLOWED
    assert at(carrier_exp + skew, last) is Reason.GRANT_EXPIRED


def _claims(**changes: object) -> TokenClaims:
    from trunkkey.claims import Action, Purpose, TokenClaims

    fields: dict[str, object] = {
        "issuer": "shop", "vehicle_id": "car", "not_before": NOW, "expires": NOW + 60,
        "issued_at": NOW, "token_id": bytes(range(16)), "action": Action.TRUNK,
        "purpose": Purpose.DELIVERY,
    }
    fields.update(changes)
    return TokenClaims(**fields)  # type: ignore[arg-type]


def _canonical(claims: TokenClaims) -> bytes:
    """The claims map built from the fields and encoded by the generic encoder."""
    from trunkkey.claims import access_bits

    members: dict[int, object] = {
        1: claims.issuer, 3: claims.vehicle_id, 4: claims.expires, 5: claims.not_before,
        6: claims.issued_at, 7: claims.token_id,
        -65537: access_bits(claims.action, claims.purpose),
    }
    if claims.order_ref is not None:
        members[-65539] = claims.order_ref
    return cbor.encode(members)


# Each case sits on one boundary of the encoder's fast path: one side must take
# it, the other must not, and both must produce the canonical bytes a standard
# CBOR encoder would. A wrong boundary writes a non-shortest or broken head.
@pytest.mark.parametrize("changes", [
    {"issuer": "i" * 24, "vehicle_id": "c"},
    {"issuer": "i" * 23, "vehicle_id": "c"},
    {"issuer": "i", "vehicle_id": "c" * 24},
    {"issuer": "i", "vehicle_id": "c" * 23},
    {"not_before": 0xFFFF, "issued_at": 0xFFFF},
    {"not_before": 0x10000, "issued_at": 0x10000},
    {"expires": 0xFFFFFFFF},
    {"expires": 2**32},
    {"expires": 2**40 - 1},
    {"order_ref": b"o"},
    {"order_ref": b"o" * 64},
    {"token_id": bytes(15)},
    {"token_id": bytes(17)},
], ids=repr)
def test_claims_encoder_is_canonical_on_each_side_of_the_fast_path(
    changes: dict[str, object],
) -> None:
    claims = _claims(**changes)
    payload = encode_claims(claims)
    assert payload == _canonical(claims)
    if len(claims.token_id) != 16:  # written as given, never padded or cut, then refused
        with pytest.raises(DecodeError, match=r"^cti must be 16 bytes$"):
            decode_claims(payload)
    else:
        assert decode_claims(payload) == claims


@pytest.mark.parametrize("access", [23, 24, 255])
def test_claim_field_encoder_writes_any_access_value_canonically(access: int) -> None:
    # Grants share this encoder; whatever access value reaches it, the head is shortest-form.
    from trunkkey.claims import encode_claim_fields

    payload = encode_claim_fields(
        issuer="shop", vehicle_id="car", expires=NOW + 60, not_before=NOW, issued_at=NOW,
        token_id=bytes(16), access=access, courier_key=None, geofence=None, order_ref=None,
    )
    assert payload == cbor.encode({1: "shop", 3: "car", 4: NOW + 60, 5: NOW, 6: NOW,
                                   7: bytes(16), -65537: access})


def test_token_claims_are_frozen_slotted_and_keyword_only() -> None:
    # The claims a Decision carries are what the caller acts on: nothing may rewrite them.
    claims = _claims()
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.vehicle_id = "other"  # type: ignore[misc]
    assert not hasattr(claims, "__dict__")
    assert all(f.kw_only for f in dataclasses.fields(claims))
    assert (claims.geofence, claims.courier_key, claims.order_ref) == (None, None, None)


def test_issuer_name_refusals_say_why() -> None:
    from trunkkey.claims import check_name

    with pytest.raises(InvalidRequest, match=r"^vehicle_id must be a non-empty string$"):
        check_name("", "vehicle_id")
    with pytest.raises(InvalidRequest, match=r"^issuer must be at most 64 bytes of UTF-8$"):
        check_name("é" * 33, "issuer")
    assert check_name("é" * 32, "issuer") == "é" * 32
    with pytest.raises(InvalidRequest, match=r"^issuer must not contain control characters$"):
        check_name("shop\n", "issuer")


@pytest.mark.parametrize("shape", ["plain", "courier", "fence", "order", "all", "short-order",
                                   "first-4-byte-times"])
def test_fast_claims_decoder_takes_every_documented_shape_and_agrees(shape: str) -> None:
    # The fast path's promise: the common shapes (an Ed25519 cnf key, a geofence,
    # an order reference, any mix) decode without the generic decoder, to exactly
    # what the generic decoder builds. A fast path that silently stops taking them,
    # or takes them and reads a field wrong, fails here.
    courier = SigningKey.generate().public_key
    fence = Geofence(lat_e7=481371540, lon_e7=-115761240, radius_m=75)
    extra: dict[str, object] = {
        "plain": {}, "courier": {"courier_key": courier}, "fence": {"geofence": fence},
        "order": {"order_ref": b"order-42"},
        "all": {"courier_key": courier, "geofence": fence, "order_ref": b"o" * 64},
        "short-order": {"order_ref": b"o"},
        # 0x10000 is the smallest NumericDate whose shortest form takes 4 bytes.
        "first-4-byte-times": {"not_before": 0x10000, "issued_at": 0x10000,
                               "expires": 0x10000},
    }[shape]
    claims = _claims(**extra)
    payload = encode_claims(claims)
    fast = _decode_common_shape(payload)
    assert fast is not None
    assert fast == _decode_claims_generic(payload) == claims
    assert fast.courier_key == claims.courier_key
    # One byte more or less is never the same claims set.
    assert _decode_common_shape(payload + b"\x00") is None
    assert _decode_common_shape(payload[:-1]) is None


def test_fast_claims_decoder_leaves_a_p256_courier_key_to_the_generic_path() -> None:
    courier = SigningKey.generate(Algorithm.ES256).public_key
    payload = encode_claims(_claims(courier_key=courier))
    assert _decode_common_shape(payload) is None
    assert decode_claims(payload).courier_key == courier


def _members(**changes: object) -> dict[int, object]:
    decoded = cbor.decode(encode_claims(_claims()))
    assert isinstance(decoded, dict)
    members: dict[int, object] = dict(decoded)
    for label, value in changes.items():
        key = {"iss": 1, "aud": 3, "exp": 4, "nbf": 5, "iat": 6, "cti": 7, "cnf": 8,
               "access": -65537, "fence": -65538, "order": -65539, "x": 99}[label]
        if value is None:
            del members[key]
        else:
            members[key] = value
    return members


# Every refusal of the claims decoder, with its exact message: the verifier
# reports it as "claims: <message>" in a MALFORMED decision's detail.
@pytest.mark.parametrize(("changes", "message"), [
    ({"iss": ""}, "iss must be a text string of 1 to 64 bytes"),
    ({"aud": "v" * 65}, "aud must be a text string of 1 to 64 bytes"),
    ({"aud": b"car"}, "aud must be a text string of 1 to 64 bytes"),
    ({"cti": bytes(15)}, "cti must be 16 bytes"),
    ({"access": 0x15}, "access must be an unsigned integer with no reserved bits set"),
    ({"access": -1}, "access must be an unsigned integer with no reserved bits set"),
    ({"access": 0x07}, "access must name exactly one action"),
    ({"access": 0x04}, "access must name exactly one action"),
    ({"access": 0x0D}, "access must name exactly one purpose"),
    ({"access": 0x01}, "access must name exactly one purpose"),
    ({"fence": [1, 2]}, "geofence must be [lat_e7, lon_e7, radius_m]"),
    ({"fence": 5}, "geofence must be [lat_e7, lon_e7, radius_m]"),
    ({"fence": [1, 2, "3"]}, "geofence must be [lat_e7, lon_e7, radius_m]"),
    ({"fence": [1, 2, 0]},
     "geofence out of range: geofence radius must be an int from 5 to 50000 metres"),
    ({"cnf": 5}, "cnf must hold exactly one COSE_Key"),
    ({"cnf": {1: {}, 2: {}}}, "cnf must hold exactly one COSE_Key"),
    ({"order": b""}, "order reference must be 1 to 64 bytes"),
    ({"order": b"o" * 65}, "order reference must be 1 to 64 bytes"),
    ({"order": "text"}, "order reference must be 1 to 64 bytes"),
    ({"x": 1}, "unknown claims: [99]"),
    ({"exp": None, "cti": None}, "missing claims: [4, 7]"),
], ids=repr)
def test_claims_decoder_refusals_are_exact(changes: dict[str, object], message: str) -> None:
    payload = cbor.encode(_members(**changes))
    with pytest.raises(DecodeError) as raised:
        decode_claims(payload)
    assert str(raised.value) == message
    assert _decode_common_shape(payload) is None


def test_claims_set_must_be_a_map() -> None:
    with pytest.raises(DecodeError, match=r"^claims set must be a map$"):
        decode_claims(cbor.encode([1, 2]))


# -- cose: the strict envelope's refusals, exactly -------------------------------------------


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
    (b"\xd2\x84\x40\xa0\x40\x58\x3f" + bytes(63), "signature must be 64 bytes"),
    (b"\xd2\x84\x40\xa0\x40\x58\x41" + bytes(65), "signature must be 64 bytes"),
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
    with pytest.raises(DecodeError, match=r"^critical header 3 not understood$"):
        verify_sign1(_std_message(key, {1: -8, 2: [3]}), pub)
    with pytest.raises(DecodeError, match=r"^payload and signature must be byte strings$"):
        verify_sign1(b"\x84\x43\xa1\x01\x27\xa0\x40\x61\x78", pub)
