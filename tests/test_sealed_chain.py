"""A delegated token sealed with its consent chain: nothing beside the ciphertext names the car.

Issue 15: "Nothing outside the ciphertext may identify the car, the place, the
window or the order". A chain's grants name the vehicle, its places and its
windows, so a delegated token is sealed with its chain inside (a sealed
bundle) and presented alone. Sealing adds no authority: anyone can seal to a
car's public key, so a bundle's chain meets exactly the checks of a chain in
the clear.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_verifier_async import AsyncMemory
from trunkkey import (
    AsyncVerifier,
    CarHybridKemKey,
    CarKeyring,
    Decision,
    Issuer,
    Reason,
    Unsealed,
    Verifier,
    open_bundle,
    seal,
)
from trunkkey.cbor import encode
from trunkkey.claims import Action, Purpose
from trunkkey.consent.chain import MAX_CHAIN_BYTES
from trunkkey.consent.grant import (
    Scope,
    access_mask,
    encode_chain,
    make_grant,
    narrow,
    root_scope,
    sign_delegation,
    sign_root_grant,
    vehicle_tag,
)
from trunkkey.keys import Algorithm, SigningKey
from trunkkey.proof import make_proof
from trunkkey.sealed import (
    BUCKETS,
    CHAIN_ROOM,
    FIXED_HEADER,
    KEM_KEY_BYTES,
    MAX_SEALED,
    CarKemKey,
    bucket_for,
    is_sealed,
    open_sealed,
)
from trunkkey.sealed_bundle import unseal_presented
from trunkkey.sealed_pq import HYBRID_ROOM
from trunkkey.testing.consent import HOME, ORDER, VEHICLE, ConsentWorld, build_world
from trunkkey.verifier import DEFAULT_MAX_TOKEN_SIZE

#: Sealed bytes around the padded plaintext: the fixed header, ``ek``, the
#: ciphertext's length head and the AEAD tag.
_OVERHEAD = len(FIXED_HEADER) + KEM_KEY_BYTES + 3 + 16

_WORLDS: dict[Algorithm, ConsentWorld] = {}


def world(root: Algorithm = Algorithm.EDDSA) -> ConsentWorld:
    """A sealed consent world per root algorithm; the ledger is fresh for each test's tokens."""
    if root not in _WORLDS:
        _WORLDS[root] = build_world(root_algorithm=root, sealed=True, daily_limit=None)
    return _WORLDS[root]


def car(w: ConsentWorld) -> CarKemKey:
    assert w.car_key is not None
    return w.car_key


def chain_of(w: ConsentWorld, links: int) -> tuple[bytes, SigningKey, str]:
    """A chain of ``links`` grants from the world's root, and its leaf's key and name."""
    now = w.clock.now()
    signer, name = w.retailer, "amazon"
    grant = make_grant(
        grantee=signer.public_key, grantee_name=name,
        access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=now - 60,
        expires=now + 86_400, depth=links - 1, vehicle_ids=[VEHICLE], places=[HOME],
    )
    grants = [sign_root_grant(w.root, grant)]
    scope = root_scope(grant)
    for depth in range(links - 2, -1, -1):
        assert isinstance(scope, Scope)
        grantee, grantee_name = SigningKey.generate(), f"carrier-{depth}"
        grant = make_grant(
            grantee=grantee.public_key, grantee_name=grantee_name,
            access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=now - 60,
            expires=now + 86_400, depth=depth,
        )
        grants.append(sign_delegation(signer, scope, grant))
        scope = narrow(scope, grant)
        signer, name = grantee, grantee_name
    return encode_chain(grants), signer, name


def leaf_token(w: ConsentWorld, leaf: SigningKey, name: str) -> bytes:
    now = w.clock.now()
    return Issuer(leaf, name, clock=w.clock).mint(
        vehicle_id=VEHICLE, action=Action.TRUNK, not_before=now, expires=now + 3600,
        geofence=HOME, courier_key=w.courier.public_key, order_ref=ORDER,
    )


def present(w: ConsentWorld, token: bytes, chain: bytes | None, *, proof_over: bytes | None = None,
            ) -> Decision:
    """The courier at the car: the proof signs the bytes presented (or ``proof_over``)."""
    challenge = os.urandom(16)
    proof = make_proof(w.courier, token=token if proof_over is None else proof_over,
                       vehicle_id=VEHICLE, challenge=challenge)
    return w.verifier.verify_at(
        token, now=w.clock.now(), vehicle_id=VEHICLE, action=Action.TRUNK,
        purpose=Purpose.DELIVERY, location=HOME.centre, proof=proof, challenge=challenge,
        chain=chain,
    )


# -- the sealed bundle delivers, alone ---------------------------------------------------


@pytest.mark.parametrize("root", [Algorithm.EDDSA, Algorithm.EDDSA_MLDSA65])
def test_a_delegated_sealed_token_opens_the_trunk_with_no_chain_in_the_clear(
    root: Algorithm,
) -> None:
    w = world(root)
    decision = present(w, w.sealed_token(), None)
    assert decision.reason is Reason.ALLOWED, decision.detail
    assert decision.claims is not None
    assert decision.claims.issuer == "dhl"


def test_the_sealed_bytes_of_a_delegated_token_hold_no_vehicle_and_no_grant_bytes() -> None:
    w = world()
    sealed = w.sealed_token()
    assert VEHICLE.encode() not in sealed
    assert vehicle_tag(VEHICLE) not in sealed
    # The car reads both back; no eight bytes of either show through.
    opened = open_bundle(sealed, [car(w)])
    assert opened is not None
    assert opened.chain == w.chain
    for secret in (w.root_grant, w.carrier_grant, opened.token):
        windows = {secret[i:i + 8] for i in range(len(secret) - 7)}
        assert not any(window in sealed for window in windows)


def test_an_async_verifier_uses_a_sealed_chain_as_the_sync_one_does() -> None:
    w = world()
    verifier = AsyncVerifier(trust_store=w.verifier.trust_store, ledger=AsyncMemory(),
                             clock=w.clock, consent=w.consent, car_keys=CarKeyring([car(w)]))
    sealed = w.sealed_token(courier_key=None)
    allowed = asyncio.run(verifier.verify(sealed, vehicle_id=VEHICLE, action="trunk",
                                          location=HOME.centre))
    assert allowed.reason is Reason.ALLOWED, allowed.detail
    twice = asyncio.run(verifier.verify(sealed, vehicle_id=VEHICLE, action="trunk",
                                        location=HOME.centre, chain=w.chain))
    assert twice.reason is Reason.MALFORMED


@pytest.mark.parametrize(("root", "links", "bucket"), [
    (Algorithm.EDDSA, 2, 960), (Algorithm.EDDSA, 3, 960), (Algorithm.EDDSA, 4, 960),
    (Algorithm.EDDSA_MLDSA65, 2, 4608), (Algorithm.EDDSA_MLDSA65, 3, 4608),
    (Algorithm.EDDSA_MLDSA65, 4, 4608),
])
def test_chains_of_two_to_four_grants_seal_to_the_bucket_of_their_root_and_deliver(
    root: Algorithm, links: int, bucket: int,
) -> None:
    w = world(root)
    chain, leaf, name = chain_of(w, links)
    sealed = seal(leaf_token(w, leaf, name), car(w).public_key, chain=chain)
    assert len(sealed) == bucket + _OVERHEAD
    decision = present(w, sealed, None)
    assert decision.reason is Reason.ALLOWED, decision.detail


def test_the_largest_chain_the_profile_allows_seals_beside_a_token_of_the_default_cap() -> None:
    hybrid_allowance = world(Algorithm.EDDSA_MLDSA65).anchors.signature_allowance
    links = [bytes(512 + hybrid_allowance)] + [bytes(512)] * 3
    chain = encode_chain(links)
    assert len(chain) == MAX_CHAIN_BYTES + hybrid_allowance
    token = b"\xd2" + bytes(DEFAULT_MAX_TOKEN_SIZE - 1)
    sealed = seal(token, car(world()).public_key, chain=chain)
    assert len(sealed) == MAX_SEALED
    assert open_bundle(sealed, [car(world())]) == Unsealed(token, chain)


# -- sealing adds no authority -------------------------------------------------------------


def test_a_chain_both_in_the_clear_and_sealed_is_malformed_and_spends_nothing() -> None:
    w = world()
    sealed = w.sealed_token(order_ref=b"both-ways")
    refused = present(w, sealed, w.chain)
    assert refused.reason is Reason.MALFORMED
    assert refused.claims is None
    assert "both sealed and in the clear" in refused.detail
    # Nothing was spent: the same sealed token still delivers once.
    assert present(w, sealed, None).reason is Reason.ALLOWED


def test_a_token_sealed_alone_still_takes_its_chain_in_the_clear() -> None:
    w = world()
    sealed = seal(w.token(order_ref=b"alone"), car(w).public_key)
    assert present(w, sealed, w.chain).reason is Reason.ALLOWED
    token = w.token(order_ref=b"none")
    without = present(w, seal(token, car(w).public_key), None)
    assert without.reason is not Reason.ALLOWED
    assert without.reason is present(w, token, None).reason


def _altered_chains(w: ConsentWorld) -> dict[str, bytes]:
    stranger = SigningKey.generate()
    flipped = bytearray(w.carrier_grant)
    flipped[-1] ^= 1
    return {
        "root grant alone": encode_chain([w.root_grant]),
        "carrier grant's signature flipped": encode_chain([w.root_grant, bytes(flipped)]),
        "root grant by a stranger": encode_chain(
            [sign_root_grant(stranger, make_grant(
                grantee=w.retailer.public_key, grantee_name="amazon",
                access=access_mask([Action.TRUNK], [Purpose.DELIVERY]), not_before=0,
                expires=2**32, depth=1, vehicle_ids=[VEHICLE])),
             w.carrier_grant]),
        "a grant named by a digest the car never saw": encode_chain(
            [w.root_grant, bytes(range(32))]),
        "five links": encode([w.root_grant] + [w.carrier_grant] * 4),
        "not CBOR": b"\x81\x41",
        "an array of integers": b"\x82\x01\x02",
        "over the chain cap": b"\x81" + bytes(MAX_CHAIN_BYTES + 10),
        "trailing bytes": w.chain + b"\x00",
        "an indefinite-length array": b"\x9f" + w.chain[1:] + b"\xff",
    }


@pytest.mark.parametrize("name", sorted(_altered_chains(world())))
def test_a_chain_altered_and_resealed_by_anyone_is_refused_as_it_is_in_the_clear(
    name: str,
) -> None:
    w = world()
    chain = _altered_chains(w)[name]
    token = w.token(order_ref=name.encode())
    in_clear = present(w, token, chain)
    # Anyone can seal to the car's public key: the attacker re-seals the altered chain.
    sealed = present(w, seal(token, car(w).public_key, chain=chain), None)
    assert in_clear.reason is not Reason.ALLOWED
    assert (sealed.reason, sealed.detail) == (in_clear.reason, in_clear.detail)


def test_a_proof_made_over_another_sealing_of_the_same_bundle_is_refused() -> None:
    w = world()
    token = w.token(order_ref=b"two-sealings")
    first = seal(token, car(w).public_key, chain=w.chain)
    second = seal(token, car(w).public_key, chain=w.chain)
    other_chain = seal(token, car(w).public_key, chain=encode_chain([w.root_grant,
                                                                     w.carrier_grant]))
    assert len({first, second, other_chain}) == 3
    assert present(w, second, None, proof_over=first).reason is Reason.PROOF_INVALID
    assert present(w, second, None, proof_over=token).reason is Reason.PROOF_INVALID
    assert present(w, second, None).reason is Reason.ALLOWED


# -- strict bundles ------------------------------------------------------------------------------

_TOKEN = b"\xd2\x84\x40\xa0\x40\x40"
_CHAIN = b"\x81\x41\x00"
_OFF_PROFILE = {
    "one item": b"\x82\x46" + _TOKEN,
    "three items": b"\x83\x46" + _TOKEN + b"\x43" + _CHAIN + b"\x40",
    "a text string for the token": b"\x82\x66" + b"\xd2abcde" + b"\x43" + _CHAIN,
    "an integer for the chain": b"\x82\x46" + _TOKEN + b"\x01",
    "trailing bytes": b"\x82\x46" + _TOKEN + b"\x43" + _CHAIN + b"\x00",
    "an indefinite-length token": b"\x82\x5f\x46" + _TOKEN + b"\xff\x43" + _CHAIN,
    "an indefinite-length chain": b"\x82\x46" + _TOKEN + b"\x5f\x43" + _CHAIN + b"\xff",
    "an indefinite-length bundle": b"\x9f\x46" + _TOKEN + b"\x43" + _CHAIN + b"\xff",
    "a tagged chain": b"\x82\x46" + _TOKEN + b"\xd8\x18\x43" + _CHAIN,
    "a length not in shortest form": b"\x82\x58\x06" + _TOKEN + b"\x43" + _CHAIN,
    "an empty chain": b"\x82\x46" + _TOKEN + b"\x40",
    "a chain of no grants": b"\x82\x46" + _TOKEN + b"\x41\x80",
    "an empty token": b"\x82\x40\x43" + _CHAIN,
    "a bundle for a token": b"\x82\x45\x82\x41\xd2\x41\x00\x43" + _CHAIN,
    "a sealed token for a token": b"\x82\x42\xd0\x83\x43" + _CHAIN,
    "an array nested in the bundle": b"\x82\x81\x46" + _TOKEN + b"\x43" + _CHAIN,
}


@pytest.mark.parametrize("name", sorted(_OFF_PROFILE))
def test_a_bundle_off_the_profile_is_malformed_before_anything_inside_is_read(
    name: str,
) -> None:
    w = world()
    # seal() without a chain seals its bytes as they are: an attacker's plaintext.
    sealed = seal(_OFF_PROFILE[name], car(w).public_key)
    decision = present(w, sealed, None)
    assert decision.reason is Reason.MALFORMED, (name, decision.detail)
    assert decision.claims is None


@pytest.mark.parametrize("chain", [b"", b"\x80", "text"])
def test_seal_refuses_an_empty_chain(chain: object) -> None:
    with pytest.raises(Exception, match="non-empty consent chain"):
        seal(_TOKEN, car(world()).public_key, chain=chain)  # type: ignore[arg-type]


_BUNDLE = seal(world().token(), car(world()).public_key, chain=world().chain)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_byte_flip_of_a_sealed_bundle_cannot_open(data: st.DataObject) -> None:
    w = world()
    sealed = _BUNDLE
    index = data.draw(st.integers(0, len(sealed) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(sealed)
    flipped[index] ^= 1 << bit
    decision = present(w, bytes(flipped), None)
    assert decision.claims is None
    # A flip in the tag makes bytes that no longer claim to be sealed: no token either.
    expected = Reason.CANNOT_OPEN if is_sealed(bytes(flipped)) else Reason.MALFORMED
    assert decision.reason is expected, (index, bit, decision.detail)
    assert open_sealed(bytes(flipped), [car(w)]) is None


@pytest.mark.parametrize("root", [Algorithm.EDDSA, Algorithm.EDDSA_MLDSA65])
def test_the_length_of_a_sealed_bundle_tells_only_its_bucket(root: Algorithm) -> None:
    w = world(root)
    pub = car(w).public_key
    full = seal(w.token(), pub, chain=chain_of(w, 4)[0])
    bucket = len(full) - _OVERHEAD
    assert bucket in BUCKETS
    lean_token = w.token(geofence=None, order_ref=None, courier_key=None)
    lean = seal(lean_token, pub, chain=chain_of(w, 2)[0])
    assert len(lean) - _OVERHEAD in BUCKETS
    # Sealed to one bucket, a lean two-grant bundle, a full four-grant one and a
    # token sealed alone look alike: the same length, the same fixed header.
    alike = (seal(lean_token, pub, chain=chain_of(w, 2)[0], min_size=bucket), full,
             seal(w.token(), pub, min_size=bucket))
    assert {len(s) for s in alike} == {len(full)}
    assert {s[:len(FIXED_HEADER)] for s in alike} == {FIXED_HEADER}


# -- the bounds: at each, and one past ------------------------------------------------------


def test_a_car_that_verifies_chains_reads_sealed_bytes_up_to_the_room_a_chain_needs() -> None:
    w = world()
    cap = DEFAULT_MAX_TOKEN_SIZE + w.verifier.trust_store.signature_allowance
    at_bound = FIXED_HEADER + bytes(cap + CHAIN_ROOM - len(FIXED_HEADER))
    assert present(w, at_bound, None).reason is Reason.CANNOT_OPEN
    assert present(w, at_bound + b"\x00", None).reason is Reason.TOO_LARGE
    assert cap + CHAIN_ROOM >= MAX_SEALED


def test_a_car_without_chains_reads_sealed_bytes_up_to_the_largest_sealed_token() -> None:
    # A token of its cap pads to a bucket above the cap, and a backend may seal every
    # token to the largest bucket: sealed bytes up to MAX_SEALED, and no more.
    w = build_world(sealed=True)
    plain = Verifier(trust_store=w.verifier.trust_store, ledger=w.ledger, clock=w.clock,
                     car_keys=CarKeyring([car(w)]))
    at_bound = FIXED_HEADER + bytes(MAX_SEALED - len(FIXED_HEADER))
    for token, reason in ((at_bound, Reason.CANNOT_OPEN), (at_bound + b"\x00", Reason.TOO_LARGE)):
        assert plain.verify_at(token, now=w.clock.now(), vehicle_id=VEHICLE,
                               action=Action.TRUNK).reason is reason


def test_a_car_holding_a_hybrid_kem_key_reads_the_largest_bundle_sealed_to_it() -> None:
    # The hybrid suite's envelope is HYBRID_ROOM bytes longer than HPKE-4's, so the
    # largest bundle sealed to a hybrid key (7 810 bytes) outgrew cap + CHAIN_ROOM even
    # at the 2048-byte cap the command line gave such a car (7 744).
    hybrid, classical = CarHybridKemKey(bytes(range(96))), car(world())
    chain = encode_chain([bytes(512 + 3309)] + [bytes(512)] * 3)
    token = b"\xd2" + bytes(DEFAULT_MAX_TOKEN_SIZE - 1)
    sealed = seal(token, hybrid.public_key, chain=chain)
    assert len(sealed) == MAX_SEALED + HYBRID_ROOM
    both = CarKeyring([classical, hybrid])
    for cap in (DEFAULT_MAX_TOKEN_SIZE, 2048):
        assert unseal_presented(sealed, None, both, now=0, cap=cap,
                                verifies_chains=True) == Unsealed(token, chain)
    # The room is the hybrid key's: a car without one reads no more than before.
    outer = DEFAULT_MAX_TOKEN_SIZE + CHAIN_ROOM
    assert unseal_presented(sealed, None, CarKeyring([classical]), now=0,
                            cap=DEFAULT_MAX_TOKEN_SIZE, verifies_chains=True) == (
        Reason.TOO_LARGE, f"{len(sealed)} bytes > cap of {outer}")
    at_bound = FIXED_HEADER + bytes(outer + HYBRID_ROOM - len(FIXED_HEADER))
    for presented, reason in ((at_bound, Reason.CANNOT_OPEN),
                              (at_bound + b"\x00", Reason.TOO_LARGE)):
        refused = unseal_presented(presented, None, both, now=0, cap=DEFAULT_MAX_TOKEN_SIZE,
                                   verifies_chains=True)
        assert isinstance(refused, tuple)
        assert refused[0] is reason


def test_a_car_holding_a_hybrid_kem_key_reads_a_token_sealed_to_it_at_its_own_token_cap() -> None:
    # No raised max_token_size (which would let larger tokens in the clear in too).
    hybrid = CarHybridKemKey(bytes(range(96)))
    token = b"\xd2" + bytes(DEFAULT_MAX_TOKEN_SIZE - 1)
    sealed = seal(token, hybrid.public_key)
    assert unseal_presented(sealed, None, CarKeyring([hybrid]), now=0,
                            cap=DEFAULT_MAX_TOKEN_SIZE, verifies_chains=False) == (
        Unsealed(token, None))
    assert unseal_presented(b"\xd2" + bytes(DEFAULT_MAX_TOKEN_SIZE), None, CarKeyring([hybrid]),
                            now=0, cap=DEFAULT_MAX_TOKEN_SIZE, verifies_chains=False)[0] is (
        Reason.TOO_LARGE)


def test_the_token_inside_a_bundle_is_held_to_the_cap_of_a_token_in_the_clear() -> None:
    w = world()
    cap = DEFAULT_MAX_TOKEN_SIZE + w.verifier.trust_store.signature_allowance
    at_cap = present(w, seal(b"\xd2" + bytes(cap - 1), car(w).public_key, chain=w.chain), None)
    assert at_cap.reason is Reason.MALFORMED  # read, and found to be no token
    past = present(w, seal(b"\xd2" + bytes(cap), car(w).public_key, chain=w.chain), None)
    assert past.reason is Reason.TOO_LARGE


def test_the_largest_bucket_seals_and_one_byte_more_does_not() -> None:
    assert bucket_for(BUCKETS[-1] - 1) == BUCKETS[-1]
    with pytest.raises(Exception, match="too large to seal"):
        bucket_for(BUCKETS[-1])
    assert BUCKETS[-1] + _OVERHEAD == MAX_SEALED


@settings(max_examples=40, deadline=None)
@given(token_size=st.integers(1, DEFAULT_MAX_TOKEN_SIZE),
       chain_size=st.integers(2, MAX_CHAIN_BYTES + 3309))
def test_every_token_and_chain_size_the_profile_allows_seals_to_its_bucket_and_opens(
    token_size: int, chain_size: int,
) -> None:
    token, chain = b"\xd2" + bytes(token_size - 1), b"\x81" + bytes(chain_size - 1)
    sealed = seal(token, car(world()).public_key, chain=chain)
    bucket = bucket_for(len(encode([token, chain])))
    # The ciphertext's length head is one byte shorter below 256 bytes (the 192 bucket).
    assert len(sealed) == bucket + _OVERHEAD - (bucket + 16 < 256)
    assert open_bundle(sealed, [car(world())]) == Unsealed(token, chain)


def test_a_world_mints_a_token_sealed_with_its_chain_only_when_asked_to_seal() -> None:
    from trunkkey import InvalidRequest
    from trunkkey.testing.vehicle import World

    w = World(start=1_800_000_000, ledger="memory")
    car_ = w.enrol_car("VIN-SEALED-01", sealed=True)
    assert car_.kem_key is not None
    chain = world().chain
    sealed = w.mint(car_, courier=None, seal_to=car_.kem_key.public_key, chain=chain)
    opened = open_bundle(sealed, [car_.kem_key])
    assert opened is not None
    assert opened.chain == chain
    with pytest.raises(InvalidRequest, match="give seal_to"):
        w.mint(car_, courier=None, chain=chain)


def test_a_bundle_sealed_to_a_hybrid_kem_key_opens_with_it_alone() -> None:
    from trunkkey import CarHybridKemKey

    hybrid = CarHybridKemKey(bytes(range(96)))
    w = world()
    sealed = seal(w.token(), hybrid.public_key, chain=w.chain)
    opened = open_bundle(sealed, [car(w), hybrid])
    assert opened is not None
    assert opened.chain == w.chain
    assert open_bundle(sealed, [car(w)]) is None
