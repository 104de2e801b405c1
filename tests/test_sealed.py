"""Sealed tokens (trunkkey.sealed): only the car reads them, and the verifier
decides ``cannot_open`` before anything inside is read."""

from __future__ import annotations

import pickle

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import NOW, VEHICLE, World, make_world
from trunkkey import (
    CarHybridKemKey,
    CarKemKey,
    CarKeyring,
    CarPublicKey,
    Geofence,
    InvalidRequest,
    MemoryLedger,
    Reason,
    SigningKey,
    Verifier,
    VerifierPolicy,
    make_proof,
    open_sealed,
    seal,
)
from trunkkey.cose import enc_structure, encrypt0, split_encrypt0
from trunkkey.errors import DecodeError
from trunkkey.sealed import (
    BUCKETS,
    FIXED_HEADER,
    MAX_SEALED,
    MIN_SEALED,
    _seal,
    bucket_for,
    describe_sealed,
)
from trunkkey.sealed_pq import PROTECTED_PQ

CAR = CarKemKey(bytes(range(32)))
OTHER_CAR = CarKemKey(bytes(range(1, 33)))
CHALLENGE = b"c" * 16



def _sealed_world() -> tuple[World, Verifier]:
    world = make_world()
    verifier = Verifier(
        trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
        car_keys=CarKeyring([CAR]),
    )
    return world, verifier


def _verify(verifier: Verifier, token: bytes, **extra: object) -> Reason:
    return verifier.verify(token, vehicle_id=VEHICLE, action="trunk", **extra).reason  # type: ignore[arg-type]


def test_a_sealed_token_opens_and_verifies_as_its_signed_token_would() -> None:
    world, verifier = _sealed_world()
    token = world.mint()
    decision = verifier.verify(seal(token, CAR.public_key), vehicle_id=VEHICLE, action="trunk")
    assert decision.allowed
    assert decision.claims is not None
    assert decision.claims.vehicle_id == VEHICLE


def test_the_inner_token_keeps_every_reason_code_once_opened() -> None:
    world, verifier = _sealed_world()
    assert _verify(verifier, seal(world.mint(vehicle_id="OTHERCAR"), CAR.public_key)) is (
        Reason.WRONG_VEHICLE
    )
    expired = world.mint()
    world.clock.set(NOW + 5 * 3600)
    assert _verify(verifier, seal(expired, CAR.public_key)) is Reason.EXPIRED


def test_resealing_a_spent_token_does_not_spend_it_twice() -> None:
    # The ledger keys on the token's id, inside the seal: a fresh seal is the same token.
    world, verifier = _sealed_world()
    token = world.mint()
    assert _verify(verifier, seal(token, CAR.public_key)) is Reason.ALLOWED
    assert _verify(verifier, seal(token, CAR.public_key)) is Reason.ALREADY_USED
    assert _verify(verifier, token) is Reason.ALREADY_USED


def test_a_token_sealed_to_another_car_cannot_open() -> None:
    world, verifier = _sealed_world()
    assert _verify(verifier, seal(world.mint(), OTHER_CAR.public_key)) is Reason.CANNOT_OPEN


def test_a_verifier_without_car_keys_cannot_open_a_sealed_token() -> None:
    world = make_world()
    assert _verify(world.verifier, seal(world.mint(), CAR.public_key)) is Reason.CANNOT_OPEN


def test_a_car_mid_rotation_opens_tokens_sealed_to_either_key() -> None:
    world = make_world()
    ring = CarKeyring([OTHER_CAR, CAR])
    verifier = Verifier(trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
                        car_keys=ring)
    assert _verify(verifier, seal(world.mint(), CAR.public_key)) is Reason.ALLOWED
    ring.replace([OTHER_CAR])
    assert _verify(verifier, seal(world.mint(), CAR.public_key)) is Reason.CANNOT_OPEN


def test_the_courier_proof_covers_the_sealed_bytes_the_courier_holds() -> None:
    world, verifier = _sealed_world()
    device = SigningKey.generate()
    token = world.mint(courier_key=device.public_key)
    sealed = seal(token, CAR.public_key)

    def prove(over: bytes) -> bytes:
        return make_proof(device, token=over, vehicle_id=VEHICLE, challenge=CHALLENGE)

    # A proof over the inner token proves nothing about the sealed bytes presented.
    assert _verify(verifier, sealed, proof=prove(token), challenge=CHALLENGE) is (
        Reason.PROOF_INVALID
    )
    assert _verify(verifier, sealed, proof=prove(sealed), challenge=CHALLENGE) is Reason.ALLOWED


def test_padding_hides_which_optional_claims_a_token_carries() -> None:
    world = make_world()
    device = SigningKey.generate().public_key
    fence = Geofence.from_degrees(48.137, 11.575, 150)
    plain, fenced = world.mint(), world.mint(geofence=fence)
    bound = world.mint(courier_key=device)
    full = world.mint(courier_key=device, order_ref=b"order-123456", geofence=fence)
    assert len({len(plain), len(fenced)}) == len({len(bound), len(full)}) == 2
    # Within a bucket the length says nothing of the claims ...
    assert len(seal(plain, CAR.public_key)) == len(seal(fenced, CAR.public_key))
    assert len(seal(bound, CAR.public_key)) == len(seal(full, CAR.public_key))
    # ... and one bucket for all makes every token look alike.
    assert len(seal(plain, CAR.public_key, min_size=256)) == len(seal(full, CAR.public_key))


def test_a_sealed_ed25519_trunk_token_is_at_most_256_bytes() -> None:
    world = make_world()
    fenced = world.mint(geofence=Geofence.from_degrees(48.137, 11.575, 150))
    assert len(seal(fenced, CAR.public_key)) <= 256


def test_a_sealed_token_shows_only_its_size_and_suite() -> None:
    sealed = seal(b"\xd2" + bytes(100), CAR.public_key)
    info = describe_sealed(sealed)
    assert (info.size, info.suite) == (len(sealed), "HPKE-4")
    assert sealed.startswith(FIXED_HEADER)


def test_the_envelope_is_parsed_strictly() -> None:
    sealed = seal(b"\xd2" + bytes(100), CAR.public_key)
    with pytest.raises(DecodeError):
        split_encrypt0(sealed + b"\x00")
    with pytest.raises(DecodeError):
        split_encrypt0(sealed[:-1])
    # A kid beside ek (a map of two) is off the profile, whatever it names.
    with pytest.raises(DecodeError):
        split_encrypt0(sealed.replace(b"\xa1\x23", b"\xa2\x23", 1))


def test_keys_keep_their_secret_out_of_repr_and_pickle() -> None:
    assert CAR.private_bytes().hex() not in repr(CAR)
    with pytest.raises(TypeError):
        pickle.dumps(CAR)
    with pytest.raises(InvalidRequest):
        CarPublicKey(b"short")
    with pytest.raises(InvalidRequest):
        CarKeyring([])


def test_buckets_are_fixed_and_a_token_too_large_is_refused() -> None:
    assert [bucket_for(size) for size in (1, 191, 192, 959)] == [192, 192, 256, 960]
    assert bucket_for(1, 200) == 256
    with pytest.raises(InvalidRequest):
        seal(bytes(BUCKETS[-1]), CAR.public_key)
    assert len(seal(b"\xd2", CAR.public_key)) == MIN_SEALED
    assert len(seal(bytes(BUCKETS[-1] - 1), CAR.public_key)) == MAX_SEALED


def test_a_fixed_ephemeral_key_gives_the_same_bytes() -> None:
    # The vectors' path: deterministic when (and only when) the ephemeral key is fixed.
    ephemeral = bytes(range(2, 34))
    one = _seal(b"\xd2token", CAR.public_key, ephemeral)
    assert one == _seal(b"\xd2token", CAR.public_key, ephemeral)
    assert one != seal(b"\xd2token", CAR.public_key)


# -- Properties -------------------------------------------------------------------

_TOKENS = st.binary(min_size=1, max_size=400)
_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(token=_TOKENS, secret=st.binary(min_size=32, max_size=32))
def test_a_sealed_token_opens_only_with_its_cars_key(token: bytes, secret: bytes) -> None:
    other = CarKemKey(secret)
    sealed = seal(token, CAR.public_key)
    assert open_sealed(sealed, [CAR]) == token
    if other.public_key != CAR.public_key:
        assert open_sealed(sealed, [other]) is None


@_SETTINGS
@given(data=st.data())
def test_any_byte_flip_gives_cannot_open(data: st.DataObject) -> None:
    world, verifier = _sealed_world()
    sealed = seal(world.mint(), CAR.public_key)
    at = data.draw(st.integers(0, len(sealed) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = sealed[:at] + bytes((sealed[at] ^ flip,)) + sealed[at + 1 :]
    reason = _verify(verifier, tampered)
    # A flip of the tag byte makes it no sealed token at all: then it is not read as one.
    assert reason is Reason.CANNOT_OPEN or (at == 0 and reason is Reason.MALFORMED)


def _longest_common_run(one: bytes, two: bytes) -> int:
    best = 0
    previous = [0] * (len(two) + 1)
    for a in one:
        current = [0] * (len(two) + 1)
        for j, b in enumerate(two, 1):
            if a == b:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


@settings(max_examples=15, deadline=None)
@given(st.binary(min_size=1, max_size=8))
def test_two_tokens_sealed_to_one_car_share_no_run_longer_than_chance(order: bytes) -> None:
    # Two random 240-byte strings share a run of 4 bytes with probability
    # about 240**2 / 2**32 (1 in 75 000): a run of 4 or more outside the fixed
    # header says the seal leaks structure.
    world = make_world()
    token = world.mint(order_ref=order)
    one, two = (seal(token, CAR.public_key)[len(FIXED_HEADER):] for _ in range(2))
    assert _longest_common_run(one, two) < 4


def test_cannot_open_is_decided_before_the_size_of_what_is_inside() -> None:
    _, verifier = _sealed_world()
    with pytest.raises(InvalidRequest):
        seal(b"", CAR.public_key)
    assert _verify(verifier, b"\xd0\x83") is Reason.CANNOT_OPEN
    assert _verify(verifier, seal(b"\xd2 not a token", CAR.public_key)) is Reason.MALFORMED


# -- The post-quantum suite (ML-KEM-768 + X25519) ------------------------------------

HYBRID_CAR = CarHybridKemKey(bytes(range(96)))


def test_a_hybrid_sealed_token_opens_and_verifies_with_a_larger_size_cap() -> None:
    world = make_world()
    verifier = Verifier(
        trust_store=world.store, ledger=MemoryLedger(), clock=world.clock,
        policy=VerifierPolicy(max_token_size=2048), car_keys=CarKeyring([CAR, HYBRID_CAR]),
    )
    sealed = seal(world.mint(), HYBRID_CAR.public_key)
    assert describe_sealed(sealed).suite == "HPKE-MLKEM768-X25519"
    assert sealed[:10] == b"\xd0\x83\x47" + PROTECTED_PQ
    assert _verify(verifier, sealed) is Reason.ALLOWED
    # A car holding no hybrid key reads no hybrid envelope's extra bytes: a hybrid
    # trunk token (1 345 bytes) is within what it reads, and does not open.
    world2, small = _sealed_world()
    assert _verify(small, seal(world2.mint(), HYBRID_CAR.public_key)) is Reason.CANNOT_OPEN


def test_a_hybrid_sealed_token_opens_only_with_its_hybrid_key() -> None:
    sealed = seal(b"\xd2token", HYBRID_CAR.public_key)
    assert open_sealed(sealed, [CAR, HYBRID_CAR]) == b"\xd2token"
    assert open_sealed(sealed, [CAR]) is None
    assert open_sealed(sealed, [CarHybridKemKey(bytes(range(1, 97)))]) is None
    # The header is bound through HPKE info (this profile's rule): changing it cannot open.
    assert open_sealed(sealed.replace(PROTECTED_PQ, PROTECTED_PQ[:-1] + b"\x48", 1),
                       [HYBRID_CAR]) is None


@_SETTINGS
@given(data=st.data())
def test_any_byte_flip_of_a_hybrid_sealed_token_cannot_open(data: st.DataObject) -> None:
    sealed = seal(b"\xd2token", HYBRID_CAR.public_key)
    at = data.draw(st.integers(0, len(sealed) - 1))
    tampered = sealed[:at] + bytes((sealed[at] ^ data.draw(st.integers(1, 255)),)) + (
        sealed[at + 1 :]
    )
    assert open_sealed(tampered, [HYBRID_CAR]) is None


def test_the_envelope_is_rfc_9052s_tagged_cose_encrypt0_byte_for_byte() -> None:
    """Known answers from RFC 9052 itself, not from trunkkey's own encoder:
    tag 16 is COSE_Encrypt0 (Table 1), and the AAD is the CBOR array
    ``["Encrypt0", protected, external_aad]`` (section 5.3). An envelope that
    disagreed would still open with trunkkey alone, and with nothing else."""
    protected, ek, ciphertext = b"\xa1\x01\x18\x2a", bytes(range(32)), b"\x99" * 40
    envelope = encrypt0(protected, ek, ciphertext)
    assert envelope == cbor2.dumps(cbor2.CBORTag(16, [protected, {-4: ek}, ciphertext]))
    assert split_encrypt0(envelope) == (protected, ek, ciphertext)
    for aad in (b"", b"external"):
        assert enc_structure(protected, aad) == cbor2.dumps(["Encrypt0", protected, aad])
