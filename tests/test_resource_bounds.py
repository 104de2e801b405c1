"""Every resource bound in docs/resource-bounds.md, enforced at its value and refused one past it.

Each test names the bound, shows the value itself is accepted (so the bound
is not accidentally tighter than documented) and value + 1 is refused with
the documented error or reason (so it is not looser).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import pytest
from cryptography.hazmat.primitives import serialization

import trunkkey.claims
import trunkkey.consent.grant
import trunkkey.cose
import trunkkey.inspect
import trunkkey.vehicle.receipt
import trunkkey.vehicle.timekeeping
from support import ISSUER, NOW, VEHICLE, World, make_world
from trunkkey import (
    Action,
    Algorithm,
    DecodeError,
    Geofence,
    InvalidRequest,
    Issuer,
    KeyFileError,
    Location,
    ManualClock,
    MemoryLedger,
    Reason,
    SigningKey,
    SqliteLedger,
    TokenClaims,
    TrustedKey,
    TrustStore,
    Typ,
    VerificationKey,
    Verifier,
    VerifierPolicy,
    cbor,
    inspect_unverified,
    make_proof,
)
from trunkkey.claims import (
    ACCESS,
    AUD,
    CTI,
    EXP,
    GEOFENCE,
    IAT,
    ISS,
    MAX_CLAIMS_BYTES,
    MAX_NAME_BYTES,
    MAX_ORDER_BYTES,
    MAX_TIME,
    NBF,
    ORDER,
    TOKEN_ID_LENGTH,
    Purpose,
    check_name,
    decode_claims,
    encode_claims,
)
from trunkkey.consent import encode_chain, make_grant, narrow, sign_delegation, sign_root_grant
from trunkkey.consent.anchors import MAX_UPDATE_BYTES
from trunkkey.consent.chain import MAX_CHAIN_BYTES
from trunkkey.consent.grant import (
    MAX_DAILY_LIMIT,
    MAX_DEPTH,
    MAX_GRANT_BYTES,
    MAX_PLACES,
    MAX_VEHICLES,
    Scope,
    decode_grant,
    encode_grant,
    root_scope,
)
from trunkkey.consent.revocation import decode_revocations
from trunkkey.consent.rotation import decode_update
from trunkkey.cose import sig_structure, verify_sign1
from trunkkey.geo import E7, MAX_RADIUS_M, MIN_RADIUS_M
from trunkkey.inspect import MAX_INSPECT_BYTES
from trunkkey.issuer import DEFAULT_MAX_LIFETIME
from trunkkey.keys import MAX_COSE_KEY_BYTES, MAX_PEM_BYTES
from trunkkey.ledger.base import MAX_TOKEN_ID_BYTES, MAX_VEHICLE_ID_BYTES
from trunkkey.parcels import MAX_PARCELS, MAX_SCAN_BYTES, Parcels, read_scan
from trunkkey.proof import MAX_CHALLENGE_BYTES, MAX_PROOF_BYTES, MIN_CHALLENGE_BYTES, check_proof
from trunkkey.testing.consent import build_world
from trunkkey.vehicle import UnitConfig, read_time_sync, verify_receipt
from trunkkey.vehicle.challenge import ChallengeBook
from trunkkey.vehicle.receipt import MAX_RECEIPT_BYTES
from trunkkey.vehicle.timekeeping import MAX_SYNC_BYTES
from trunkkey.verifier import DEFAULT_MAX_TOKEN_SIZE, MAX_ALLOWED_SKEW

# -- helpers ---------------------------------------------------------------------


def claims_map(**changes: Any) -> dict[int, Any]:
    members: dict[int, Any] = {
        ISS: ISSUER, AUD: VEHICLE, EXP: NOW + 3600, NBF: NOW, IAT: NOW,
        CTI: bytes(TOKEN_ID_LENGTH), ACCESS: 0x05,
    }
    for label, value in changes.items():
        members[{"iss": ISS, "aud": AUD, "exp": EXP, "nbf": NBF, "iat": IAT, "cti": CTI,
                 "geofence": GEOFENCE, "order": ORDER}[label]] = value
    return members


def decodes(**changes: Any) -> bool:
    try:
        decode_claims(cbor.encode(claims_map(**changes)))
    except DecodeError:
        return False
    return True


def resigned(world: World, members: dict[int, Any]) -> bytes:
    payload = cbor.encode(members)
    prot = cbor.encode({1: -8, 4: world.key.kid, 16: int(Typ.TOKEN)})
    sig = world.key.sign(sig_structure(prot, payload))
    return (b"\xd2\x84" + cbor.head(2, len(prot)) + prot + b"\xa0"
            + cbor.head(2, len(payload)) + payload + b"\x58\x40" + sig)


def reason(world: World, token: bytes, **context: object) -> Reason:
    args: dict[str, object] = {"vehicle_id": VEHICLE, "action": Action.TRUNK}
    args.update(context)
    fresh = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                     policy=world.verifier.policy)
    return fresh.verify(token, **args).reason  # type: ignore[arg-type]


@pytest.fixture
def w() -> World:
    return make_world()


# -- the token -----------------------------------------------------------------------

def test_token_size_cap_default_is_1024_bytes(w: World) -> None:
    assert DEFAULT_MAX_TOKEN_SIZE == 1024 == w.verifier.policy.max_token_size
    junk = b"\xd2" * 1024
    assert reason(w, junk) is Reason.MALFORMED
    assert reason(w, junk + b"\xd2") is Reason.TOO_LARGE


def test_token_size_cap_is_exact_for_a_valid_token(w: World) -> None:
    token = w.mint(order_ref=b"o" * 64)
    at_cap = Verifier(trust_store=w.store, ledger=MemoryLedger(), clock=w.clock,
                      policy=VerifierPolicy(max_token_size=len(token)))
    below = Verifier(trust_store=w.store, ledger=MemoryLedger(), clock=w.clock,
                     policy=VerifierPolicy(max_token_size=len(token) - 1))
    assert at_cap.verify(token, vehicle_id=VEHICLE, action="trunk").allowed
    assert below.verify(token, vehicle_id=VEHICLE, action="trunk").reason is Reason.TOO_LARGE


def test_token_size_cap_policy_range_is_64_to_65536() -> None:
    for ok in (64, 65536):
        assert VerifierPolicy(max_token_size=ok).max_token_size == ok
    for bad in (63, 65537):
        with pytest.raises(InvalidRequest):
            VerifierPolicy(max_token_size=bad)


def test_envelope_byte_strings_stop_below_64_kib(w: World) -> None:
    # The envelope parser reads 1- and 2-byte lengths only: a 4-byte length
    # head is refused without being believed.
    big = VerifierPolicy(max_token_size=65536)
    v = Verifier(trust_store=w.store, ledger=MemoryLedger(), clock=w.clock, policy=big)
    token = w.mint()
    long_head = b"\xd2\x84\x5a" + (2**16).to_bytes(4, "big")
    assert v.verify(long_head + token[2:], vehicle_id=VEHICLE, action="trunk").reason \
        is Reason.MALFORMED


def test_cbor_nesting_depth_is_8() -> None:
    assert cbor.MAX_DEPTH == 8
    assert cbor.decode(b"\x81" * 8 + b"\x00") == [[[[[[[[0]]]]]]]]
    with pytest.raises(DecodeError, match="nesting too deep"):
        cbor.decode(b"\x81" * 9 + b"\x00")


def test_names_and_vehicle_ids_are_at_most_64_bytes(w: World) -> None:
    assert MAX_NAME_BYTES == 64
    for what in ("iss", "aud"):
        assert decodes(**{what: "x" * 64})
        assert not decodes(**{what: "x" * 65})
        assert decodes(**{what: "é" * 32})  # bytes, not characters, are counted
        assert not decodes(**{what: "é" * 32 + "x"})
    assert check_name("v" * 64, "vehicle_id")
    with pytest.raises(InvalidRequest):
        check_name("v" * 65, "vehicle_id")
    with pytest.raises(InvalidRequest):
        Issuer(w.key, "i" * 65)
    assert reason(w, resigned(w, claims_map(iss="i" * 65))) is Reason.MALFORMED


def test_order_reference_is_1_to_64_bytes(w: World) -> None:
    assert MAX_ORDER_BYTES == 64
    assert decodes(order=b"o" * 64)
    assert not decodes(order=b"o" * 65)
    assert not decodes(order=b"")
    assert w.mint(order_ref=b"o" * 64)
    with pytest.raises(InvalidRequest):
        w.mint(order_ref=b"o" * 65)
    assert reason(w, resigned(w, claims_map(order=b"o" * 65))) is Reason.MALFORMED


def test_token_id_is_exactly_16_bytes(w: World) -> None:
    assert TOKEN_ID_LENGTH == 16
    assert decodes(cti=bytes(16))
    for bad in (15, 17):
        assert not decodes(cti=bytes(bad))
        assert reason(w, resigned(w, claims_map(cti=bytes(bad)))) is Reason.MALFORMED


def test_numeric_dates_are_below_2_to_the_40(w: World) -> None:
    assert MAX_TIME == 2**40
    assert decodes(exp=MAX_TIME - 1)
    assert not decodes(exp=MAX_TIME)
    for label in ("nbf", "iat"):
        assert not decodes(**{label: MAX_TIME})
    assert not decodes(nbf=-1)
    assert reason(w, resigned(w, claims_map(exp=MAX_TIME))) is Reason.MALFORMED
    with pytest.raises(InvalidRequest):
        w.mint(not_before=MAX_TIME - 10, expires=MAX_TIME)


def test_geofence_radius_is_5_to_50000_metres(w: World) -> None:
    assert (MIN_RADIUS_M, MAX_RADIUS_M) == (5, 50_000)
    for ok in (5, 50_000):
        assert Geofence(lat_e7=0, lon_e7=0, radius_m=ok).radius_m == ok
        assert decodes(geofence=[0, 0, ok])
    for bad in (4, 50_001):
        with pytest.raises(InvalidRequest):
            Geofence(lat_e7=0, lon_e7=0, radius_m=bad)
        assert not decodes(geofence=[0, 0, bad])
        assert reason(w, resigned(w, claims_map(geofence=[0, 0, bad])),
                      location=Location(lat_e7=0, lon_e7=0)) is Reason.MALFORMED


def test_coordinates_are_within_90_and_180_degrees() -> None:
    for lat, lon in ((90 * E7, 0), (-90 * E7, 0), (0, 180 * E7), (0, -180 * E7)):
        assert Location(lat_e7=lat, lon_e7=lon).lat_e7 == lat
        assert decodes(geofence=[lat, lon, 100])
    for lat, lon in ((90 * E7 + 1, 0), (-90 * E7 - 1, 0), (0, 180 * E7 + 1), (0, -180 * E7 - 1)):
        with pytest.raises(InvalidRequest):
            Location(lat_e7=lat, lon_e7=lon)
        with pytest.raises(InvalidRequest):
            Geofence(lat_e7=lat, lon_e7=lon, radius_m=100)
        assert not decodes(geofence=[lat, lon, 100])


def test_clock_skew_allowance_is_at_most_300_seconds() -> None:
    assert MAX_ALLOWED_SKEW == 300
    assert VerifierPolicy(max_skew=300).max_skew == 300
    assert VerifierPolicy(max_skew=0).max_skew == 0
    for bad in (301, -1):
        with pytest.raises(InvalidRequest):
            VerifierPolicy(max_skew=bad)


def test_lifetime_default_cap_is_24_hours(w: World) -> None:
    assert DEFAULT_MAX_LIFETIME == 24 * 3600 == w.verifier.policy.max_lifetime
    day = w.mint(not_before=NOW, expires=NOW + DEFAULT_MAX_LIFETIME)
    assert reason(w, day) is Reason.ALLOWED
    with pytest.raises(InvalidRequest):
        w.mint(not_before=NOW, expires=NOW + DEFAULT_MAX_LIFETIME + 1)
    longer = resigned(w, claims_map(exp=NOW + DEFAULT_MAX_LIFETIME + 1))
    assert reason(w, longer) is Reason.LIFETIME_TOO_LONG


# -- proofs and challenges ----------------------------------------------------------

def test_proof_is_at_most_256_bytes(w: World) -> None:
    assert MAX_PROOF_BYTES == 256
    device = SigningKey.generate()
    token = w.mint(courier_key=device.public_key)

    def problem(proof: bytes) -> str | None:
        return check_proof(proof, key=device.public_key, token=token, vehicle_id=VEHICLE,
                           challenge=b"c" * 16)

    assert problem(b"\xd2" * 256) == "proof is malformed: COSE_Sign1 must be an array of four items"
    assert problem(b"\xd2" * 257) == "proof is not bytes of a bounded size"
    good = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=b"c" * 16)
    assert len(good) <= MAX_PROOF_BYTES
    assert problem(good) is None


def test_challenge_is_16_to_32_bytes(w: World) -> None:
    assert (MIN_CHALLENGE_BYTES, MAX_CHALLENGE_BYTES) == (16, 32)
    device = SigningKey.generate()
    token = w.mint(courier_key=device.public_key)
    for ok in (16, 32):
        proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=b"c" * ok)
        assert check_proof(proof, key=device.public_key, token=token, vehicle_id=VEHICLE,
                           challenge=b"c" * ok) is None
    for bad in (15, 33):
        with pytest.raises(InvalidRequest):
            make_proof(device, token=token, vehicle_id=VEHICLE, challenge=b"c" * bad)
        with pytest.raises(InvalidRequest):
            ChallengeBook(randomness=os.urandom, size=bad)
    assert ChallengeBook(randomness=os.urandom, size=32).issue(NOW)


def test_challenge_lifetime_is_1_to_300_seconds() -> None:
    for ok in (1, 300):
        assert ChallengeBook(randomness=os.urandom, ttl=ok).ttl == ok
    for bad in (0, 301):
        with pytest.raises(InvalidRequest):
            ChallengeBook(randomness=os.urandom, ttl=bad)


def test_outstanding_challenges_are_at_most_16_by_default() -> None:
    book = ChallengeBook(randomness=os.urandom)
    issued = [book.issue(NOW) for _ in range(16)]
    assert len(book) == 16
    assert book.redeem(issued[0], NOW) is None
    issued = [book.issue(NOW) for _ in range(17)]
    assert len(book) == 16
    refused = book.redeem(issued[0], NOW)
    assert refused is not None
    assert refused.reason is Reason.CHALLENGE_UNKNOWN
    assert book.redeem(issued[1], NOW) is None


def test_relock_timeout_is_5_to_600_seconds() -> None:
    for ok in (5, 600):
        assert UnitConfig(relock_timeout=ok).relock_timeout == ok
    for bad in (4, 601):
        with pytest.raises(InvalidRequest):
            UnitConfig(relock_timeout=bad)


# -- ledgers -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_ledger_keys_are_at_most_64_and_64_bytes(backend: str, tmp_path: Path) -> None:
    assert (MAX_VEHICLE_ID_BYTES, MAX_TOKEN_ID_BYTES) == (64, 64)
    ledger = MemoryLedger() if backend == "memory" else SqliteLedger(tmp_path / "l.db")
    try:
        assert ledger.consume("v" * 64, b"t" * 64, NOW) is True
        assert ledger.consume("é" * 32, b"t" * 64, NOW) is True
        for vehicle, token_id in (("v" * 65, b"t"), ("é" * 32 + "v", b"t"), ("v", b"t" * 65),
                                  ("", b"t"), ("v", b"")):
            with pytest.raises(InvalidRequest):
                ledger.consume(vehicle, token_id, NOW)
        assert ledger.count() == 2
    finally:
        ledger.close()


# -- key files ---------------------------------------------------------------------------

def test_key_files_are_at_most_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"x" * (64 * 1024))
    os.close(fd)
    with pytest.raises(DecodeError):  # read, then refused as not a key
        SigningKey.load(path)
    with path.open("ab") as f:
        f.write(b"x")
    with pytest.raises(KeyFileError, match="too large"):
        SigningKey.load(path)


# -- other signed objects ---------------------------------------------------------------

def test_standard_cose_verifier_refuses_messages_over_64_kib(w: World) -> None:
    with pytest.raises(DecodeError) as at_cap:
        verify_sign1(b"\xff" * 65536, w.key.public_key)
    assert "too large" not in str(at_cap.value)
    with pytest.raises(DecodeError, match="too large"):
        verify_sign1(b"\xff" * 65537, w.key.public_key)


def test_time_sync_message_is_at_most_256_bytes(w: World) -> None:
    assert MAX_SYNC_BYTES == 256
    with pytest.raises(DecodeError, match="four items"):
        read_time_sync(b"\xd2" * 256, w.key.public_key)
    with pytest.raises(DecodeError, match="bounded size"):
        read_time_sync(b"\xd2" * 257, w.key.public_key)


def test_receipt_is_at_most_3244_bytes(w: World) -> None:
    """768 for the receipt's own members and signature, 276 for the parcels
    scanned (issue 19), plus its log evidence."""
    assert MAX_RECEIPT_BYTES == 3244
    with pytest.raises(DecodeError, match="four items"):
        verify_receipt(b"\xd2" * 3244, w.key.public_key)
    with pytest.raises(DecodeError, match="bounded size"):
        verify_receipt(b"\xd2" * 3245, w.key.public_key)


def test_log_objects_are_bounded_before_parsing(w: World) -> None:
    from trunkkey.checkpoint import (
        MAX_CHECKPOINT_BYTES,
        MAX_PROOF_BYTES,
        decode_inclusion_proof,
        open_checkpoint,
    )
    from trunkkey.logentry import MAX_ENTRY_BYTES, decode_entry

    # An entry: 128 bytes, and 276 for the parcels an opening scanned (issue 19).
    assert (MAX_CHECKPOINT_BYTES, MAX_PROOF_BYTES, MAX_ENTRY_BYTES) == (256, 2200, 404)
    with pytest.raises(DecodeError, match="four items"):
        open_checkpoint(b"\xd2" * 256, w.key.public_key)
    with pytest.raises(DecodeError, match="bounded size"):
        open_checkpoint(b"\xd2" * 257, w.key.public_key)
    with pytest.raises(DecodeError, match="bounded size"):
        decode_inclusion_proof(b"\x83" * 2201)
    with pytest.raises(DecodeError, match="bounded size"):
        decode_entry(b"\xa1" * 405)


# -- consent chains -------------------------------------------------------------------------

def test_chain_size_cap() -> None:
    cw = build_world()
    token = cw.token()
    assert MAX_CHAIN_BYTES == (MAX_DEPTH + 1) * (MAX_GRANT_BYTES + 3) + 1
    at_cap = b"\x81" + b"\x59" + (MAX_CHAIN_BYTES - 4).to_bytes(2, "big") + bytes(
        MAX_CHAIN_BYTES - 4
    )
    assert len(at_cap) == MAX_CHAIN_BYTES
    d = cw.present(token, at_cap)
    assert d.reason is Reason.CHAIN_INVALID
    assert "bounded size" not in d.detail
    d = cw.present(token, at_cap + b"\x00")
    assert d.reason is Reason.CHAIN_INVALID
    assert d.detail == "chain is not bytes of a bounded size"


def test_grant_size_cap_is_512_bytes() -> None:
    cw = build_world()
    token = cw.token()
    for size, too_large in ((MAX_GRANT_BYTES, False), (MAX_GRANT_BYTES + 1, True)):
        chain = encode_chain([cw.root_grant, b"\xd2" * size])
        d = cw.present(token, chain)
        assert d.reason is Reason.CHAIN_INVALID
        assert ("grant too large" in d.detail) is too_large, d.detail


def test_chain_depth_is_at_most_4_grants() -> None:
    cw = build_world()
    now = cw.clock.now()
    keys = [SigningKey.generate() for _ in range(5)]
    root = make_grant(grantee=keys[0].public_key, grantee_name="k0", access=0x05,
                      not_before=now - 10, expires=now + 3600, depth=MAX_DEPTH,
                      vehicle_ids=[VEHICLE])
    links = [sign_root_grant(cw.root, root)]
    scope = root_scope(root)
    assert isinstance(scope, Scope)
    for i in range(1, MAX_DEPTH + 1):
        grant = make_grant(grantee=keys[i].public_key, grantee_name=f"k{i}", access=0x05,
                           not_before=now - 10, expires=now + 3600, depth=MAX_DEPTH - i)
        links.append(sign_delegation(keys[i - 1], scope, grant))
        narrowed = narrow(scope, grant)
        assert isinstance(narrowed, Scope)
        scope = narrowed
    assert len(links) == MAX_DEPTH + 1
    leaf = Issuer(keys[MAX_DEPTH], f"k{MAX_DEPTH}", clock=cw.clock)
    token = leaf.mint(vehicle_id=VEHICLE, action="trunk", not_before=now, expires=now + 600)
    allowed = cw.verifier.verify(token, vehicle_id=VEHICLE, action="trunk",
                                 chain=encode_chain(links))
    assert allowed.allowed, (allowed.reason, allowed.detail)
    too_deep = cw.verifier.verify(token, vehicle_id=VEHICLE, action="trunk",
                                  chain=encode_chain([*links, links[-1]]))
    assert too_deep.reason is Reason.CHAIN_INVALID
    assert "1 to 4 grants" in too_deep.detail
    with pytest.raises(InvalidRequest):
        make_grant(grantee=keys[0].public_key, grantee_name="k", access=0x05,
                   not_before=now, expires=now + 1, depth=MAX_DEPTH + 1)


def test_grant_lists_and_limits() -> None:
    key = SigningKey.generate().public_key
    base: dict[str, Any] = {"grantee": key, "grantee_name": "g", "access": 0x05,
                            "not_before": NOW, "expires": NOW + 1}
    fence = Geofence(lat_e7=0, lon_e7=0, radius_m=100)
    assert (MAX_VEHICLES, MAX_PLACES, MAX_DAILY_LIMIT) == (16, 8, 1000)
    assert make_grant(**base, vehicle_ids=[f"v{i}" for i in range(16)]).vehicles
    assert make_grant(**base, places=[fence] * 8).places
    assert make_grant(**base, daily_limit=1000).daily_limit == 1000
    for bad in ({"vehicle_ids": [f"v{i}" for i in range(17)]}, {"places": [fence] * 9},
                {"daily_limit": 1001}, {"daily_limit": 0}, {"vehicle_ids": []}):
        with pytest.raises(InvalidRequest):
            make_grant(**base, **bad)


def test_issuer_refuses_what_the_verifier_would_refuse() -> None:
    clock = ManualClock(NOW)
    key = SigningKey.generate()
    issuer = Issuer(key, ISSUER, clock=clock, max_lifetime=60)
    with pytest.raises(InvalidRequest):
        issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 61)
    token = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60)
    store = TrustStore([TrustedKey.create(key.public_key, ISSUER)])
    v = Verifier(trust_store=store, ledger=MemoryLedger(), clock=clock,
                 policy=VerifierPolicy(max_lifetime=59))
    assert v.verify(token, vehicle_id=VEHICLE, action="trunk").reason is Reason.LIFETIME_TOO_LONG
    assert replace(VerifierPolicy(), max_lifetime=60).max_lifetime == 60


# -- every public decoder: oversized input is refused before any parsing -------------------
#
# Each public function that reads untrusted bytes checks their size against a cap
# suited to its object before a single byte is parsed, whichever path called it
# (not only the verifier's). 10 MiB of four shapes: a flat array, a map, deep
# nesting, and a long run of tiny items (empty maps: the most Python objects per
# byte). Without the cap each took seconds and hundreds of MB; how long each
# decoder takes at its cap is measured in the report, not timed here.

TEN_MIB = 10 * 1024 * 1024


def _ten_mib(head: bytes, filler: bytes) -> bytes:
    return head + filler * ((TEN_MIB - len(head)) // len(filler))


SHAPES = {
    "flat array": _ten_mib(cbor.head(4, TEN_MIB - 5), b"\x00"),
    # 0: 0 pairs, the last value one byte longer to land on 10 MiB exactly.
    "map": cbor.head(5, (TEN_MIB - 6) // 2) + b"\x00\x00" * ((TEN_MIB - 8) // 2) + b"\x00\x18\x18",
    "deep nesting": b"\x81" * (TEN_MIB - 1) + b"\x00",
    "run of tiny items": _ten_mib(cbor.head(4, TEN_MIB - 5), b"\xa0"),
}

_SIGNER = SigningKey.generate()
_BEFORE_PARSING = "refused before parsing"


@dataclass(frozen=True)
class PublicDecoder:
    call: Callable[[bytes], object]
    cap: int
    refusal: str  #: what the size refusal says, and only it


DECODERS: dict[str, PublicDecoder] = {
    "decode_claims": PublicDecoder(decode_claims, MAX_CLAIMS_BYTES, _BEFORE_PARSING),
    "decode_grant": PublicDecoder(decode_grant, MAX_GRANT_BYTES, _BEFORE_PARSING),
    "decode_revocations": PublicDecoder(decode_revocations, MAX_UPDATE_BYTES, _BEFORE_PARSING),
    "decode_update": PublicDecoder(decode_update, MAX_UPDATE_BYTES, _BEFORE_PARSING),
    "VerificationKey.from_cose_key": PublicDecoder(
        VerificationKey.from_cose_key, MAX_COSE_KEY_BYTES, _BEFORE_PARSING),
    "SigningKey.from_cose_key": PublicDecoder(
        SigningKey.from_cose_key, MAX_COSE_KEY_BYTES, _BEFORE_PARSING),
    "VerificationKey.from_pem": PublicDecoder(
        VerificationKey.from_pem, MAX_PEM_BYTES, _BEFORE_PARSING),
    "SigningKey.from_pem": PublicDecoder(SigningKey.from_pem, MAX_PEM_BYTES, _BEFORE_PARSING),
    "inspect_unverified": PublicDecoder(inspect_unverified, MAX_INSPECT_BYTES, _BEFORE_PARSING),
    "read_scan": PublicDecoder(read_scan, MAX_SCAN_BYTES, _BEFORE_PARSING),
    # Capped before this work; held to the same shapes.
    "read_time_sync": PublicDecoder(
        lambda data: read_time_sync(data, _SIGNER.public_key), MAX_SYNC_BYTES, "bounded size"),
    "verify_receipt": PublicDecoder(
        lambda data: verify_receipt(data, _SIGNER.public_key), MAX_RECEIPT_BYTES, "bounded size"),
    "verify_sign1": PublicDecoder(
        lambda data: verify_sign1(data, _SIGNER.public_key), 65536, "too large"),
}


def _entered(*_: object, **__: object) -> NoReturn:
    raise AssertionError("a parser was entered")


@pytest.fixture
def no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every parser a public decoder could reach fails the test if it is entered."""
    monkeypatch.setattr(trunkkey.cbor, "_item", _entered)
    monkeypatch.setattr(trunkkey.cbor, "decode_map", _entered)
    monkeypatch.setattr(trunkkey.claims, "usual_claim_values", _entered)
    monkeypatch.setattr(trunkkey.cose, "_loads", _entered)
    monkeypatch.setattr(trunkkey.inspect, "parse_sign1", _entered)
    # Every other signed object is split by the one envelope parser in cose.
    monkeypatch.setattr(trunkkey.cose, "split_sign1", _entered)
    for module in (trunkkey.vehicle.timekeeping, trunkkey.vehicle.receipt):
        monkeypatch.setattr(module, "open_sign1", _entered)
    monkeypatch.setattr(serialization, "load_pem_public_key", _entered)
    monkeypatch.setattr(serialization, "load_pem_private_key", _entered)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.usefixtures("no_parser")
def test_public_decoder_refuses_10_mib_before_parsing(name: str, shape: str) -> None:
    decoder = DECODERS[name]
    data = SHAPES[shape]
    assert len(data) == TEN_MIB
    with pytest.raises(DecodeError, match=decoder.refusal):
        decoder.call(data)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_public_decoder_parses_at_its_cap_and_refuses_one_past_it(name: str) -> None:
    decoder = DECODERS[name]
    with pytest.raises(DecodeError) as at_cap:
        decoder.call(b"\xd2" * decoder.cap)
    assert decoder.refusal not in str(at_cap.value)
    with pytest.raises(DecodeError, match=decoder.refusal):
        decoder.call(b"\xd2" * (decoder.cap + 1))


@pytest.mark.parametrize("name", sorted(DECODERS))
@pytest.mark.parametrize("kind", [bytearray, memoryview, str])
def test_public_decoder_refuses_what_is_not_bytes(name: str, kind: type) -> None:
    data: Any = "\xd2\x84" if kind is str else kind(b"\xd2\x84")
    with pytest.raises(DecodeError):
        DECODERS[name].call(data)


def test_the_largest_claims_set_fits_its_cap() -> None:
    # Every member of the closed set at its longest encoding: the cap refuses
    # nothing an issuer can mint.
    courier = SigningKey.generate(Algorithm.ES256).public_key
    claims = TokenClaims(
        issuer="i" * MAX_NAME_BYTES, vehicle_id="v" * MAX_NAME_BYTES,
        not_before=MAX_TIME - 2, expires=MAX_TIME - 1, issued_at=MAX_TIME - 2,
        token_id=bytes(TOKEN_ID_LENGTH), action=Action.UNLOCK_RELOCK,
        purpose=Purpose.RETURN_PICKUP,
        geofence=Geofence(lat_e7=-90 * E7, lon_e7=-180 * E7, radius_m=MAX_RADIUS_M),
        courier_key=courier, order_ref=b"o" * MAX_ORDER_BYTES,
        parcels=Parcels.commit([f"{i:064}" for i in range(MAX_PARCELS)], salt=bytes(16)),
    )
    payload = encode_claims(claims)
    assert len(payload) <= MAX_CLAIMS_BYTES
    assert decode_claims(payload) == claims


def test_the_largest_grant_payload_fits_its_cap() -> None:
    grant = make_grant(
        grantee=SigningKey.generate(Algorithm.ES256).public_key,
        grantee_name="g" * MAX_NAME_BYTES, access=0x0F, not_before=MAX_TIME - 2,
        expires=MAX_TIME - 1, depth=MAX_DEPTH,
        vehicle_ids=[f"vehicle-{i}" for i in range(MAX_VEHICLES)],
        places=[Geofence(lat_e7=-90 * E7, lon_e7=-180 * E7, radius_m=MAX_RADIUS_M)] * MAX_PLACES,
        daily_limit=MAX_DAILY_LIMIT,
    )
    payload = encode_grant(grant)
    assert len(payload) <= MAX_GRANT_BYTES
    assert decode_grant(payload) == grant


@pytest.mark.parametrize("alg", list(Algorithm))
def test_the_largest_cose_key_fits_its_cap(alg: Algorithm) -> None:
    key = SigningKey.generate(alg)
    private = key.private_cose_key()  # with kid and alg: the longest form read
    assert len(private) <= MAX_COSE_KEY_BYTES
    assert SigningKey.from_cose_key(private).public_key == key.public_key
    if alg.post_quantum:  # an AKP key: no PEM; the ES256 composite's is the longest key read
        assert (alg is Algorithm.ES256_MLDSA65) is (len(private) > MAX_COSE_KEY_BYTES - 16)
        return
    pem = key.private_pem(password=b"pw")
    assert len(pem) <= MAX_PEM_BYTES
