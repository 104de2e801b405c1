"""Properties that must hold for every input, not just the examples we thought of."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support import NOW, VEHICLE, World, make_world
from trunkkey import (
    Action,
    Algorithm,
    DecodeError,
    Geofence,
    Purpose,
    Reason,
    SigningKey,
    SqliteLedger,
    TokenClaims,
    Verifier,
    cbor,
    inspect_unverified,
    make_proof,
)
from trunkkey.claims import access_bits, decode_claims, encode_claims

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=16,
).filter(str.isprintable)
times = st.integers(min_value=0, max_value=2**40 - 2)
geofences = st.builds(
    Geofence,
    lat_e7=st.integers(-900_000_000, 900_000_000),
    lon_e7=st.integers(-1_800_000_000, 1_800_000_000),
    radius_m=st.integers(5, 50_000),
)
COURIER_KEYS = [SigningKey.generate(a).public_key for a in (Algorithm.EDDSA, Algorithm.ES256)]


@st.composite
def claim_sets(draw: st.DrawFn) -> TokenClaims:
    nbf = draw(times)
    return TokenClaims(
        issuer=draw(names),
        vehicle_id=draw(names),
        not_before=nbf,
        expires=draw(st.integers(min_value=nbf + 1, max_value=2**40 - 1)),
        issued_at=draw(times),
        token_id=draw(st.binary(min_size=16, max_size=16)),
        action=draw(st.sampled_from(Action)),
        purpose=draw(st.sampled_from(Purpose)),
        geofence=draw(st.none() | geofences),
        courier_key=draw(st.none() | st.sampled_from(COURIER_KEYS)),
        order_ref=draw(st.none() | st.binary(min_size=1, max_size=64)),
    )


@given(claim_sets())
def test_any_valid_claim_set_round_trips(claims: TokenClaims) -> None:
    assert decode_claims(encode_claims(claims)) == claims


@given(claim_sets())
def test_hand_ordered_encoding_equals_the_generic_deterministic_encoder(
    claims: TokenClaims,
) -> None:
    members: dict[int, object] = {
        1: claims.issuer, 3: claims.vehicle_id, 4: claims.expires, 5: claims.not_before,
        6: claims.issued_at, 7: claims.token_id,
        -65537: access_bits(claims.action, claims.purpose),
    }
    if claims.courier_key is not None:
        members[8] = {1: claims.courier_key.cose_key_map()}
    if claims.geofence is not None:
        g = claims.geofence
        members[-65538] = [g.lat_e7, g.lon_e7, g.radius_m]
    if claims.order_ref is not None:
        members[-65539] = claims.order_ref
    assert encode_claims(claims) == cbor.encode(members)


def _envelopes() -> list[bytes]:
    """A token, a proof (short payload), a root grant and a delegated grant (short header)."""
    from trunkkey.consent import make_grant, root_scope, sign_delegation, sign_root_grant

    world = _shared_world()
    device = SigningKey.generate()
    token = world.mint(courier_key=device.public_key)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=b"c" * 16)
    root = make_grant(grantee=device.public_key, grantee_name="r", access=5, not_before=NOW,
                      expires=NOW + 60, depth=1, vehicle_ids=[VEHICLE])
    child = make_grant(grantee=world.key.public_key, grantee_name="c", access=5,
                       not_before=NOW, expires=NOW + 60)
    scope = root_scope(root)
    assert not isinstance(scope, str)
    return [token, proof, sign_root_grant(world.key, root), sign_delegation(device, scope, child)]


def test_envelope_split_gives_back_the_items_of_every_token_proof_and_grant() -> None:
    from trunkkey.cose import split_sign1

    for envelope in _ENVELOPES:
        protected, payload, signature, protected_item, payload_item = split_sign1(envelope)
        assert cbor.decode(envelope[1:]) == [protected, {}, payload, signature]
        assert envelope == b"\xd2\x84" + protected_item + b"\xa0" + payload_item + (
            b"\x58\x40" + signature)


def _strict_envelope(candidate: bytes) -> object:
    """What the strict CBOR decoder says a strict-profile COSE_Sign1 holds, or why not."""
    try:
        item = cbor.decode(candidate[1:]) if candidate[:1] == b"\xd2" else None
    except DecodeError:
        return DecodeError
    if (
        type(item) is not list or len(item) != 4 or type(item[0]) is not bytes
        or item[1] != {} or type(item[2]) is not bytes or type(item[3]) is not bytes
        or len(item[3]) != 64 or max(len(item[0]), len(item[2])) >= 0x10000
    ):
        return DecodeError
    return item[0], item[2], item[3]


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=0, max_value=400))
def test_envelope_split_agrees_with_the_strict_cbor_decoder(noise: bytes, where: int) -> None:
    from trunkkey.cose import split_sign1

    for envelope in _ENVELOPES:
        cut = where % (len(envelope) + 1)
        after_unprotected = envelope[2] - 0x40 + 4  # the payload's head
        for candidate in (
            envelope, noise, envelope[:cut] + noise, envelope[:cut] + noise + envelope[cut:],
            envelope[:cut] + noise[:1] + envelope[cut + 1 :], envelope + noise, envelope[:-1],
            # A payload length under 24 in the 1-byte form is not the shortest.
            envelope[:after_unprotected] + b"\x58" + bytes((noise[0] % 24,))
            + envelope[after_unprotected + 1 :],
            envelope[:cut] + bytes((0x40 + noise[0] % 0x20,)) + envelope[cut + 1 :],
        ):
            try:
                split: object = split_sign1(candidate)[:3]
            except DecodeError:
                split = DecodeError
            assert split == _strict_envelope(candidate)


@given(claim_sets(), st.sampled_from([Algorithm.EDDSA, Algorithm.ES256]))
def test_signed_tokens_verify_and_inspect_to_the_same_claims(
    claims: TokenClaims, alg: Algorithm
) -> None:
    world = make_world(alg)
    claims = TokenClaims(**{**_fields(claims), "issuer": "retailer"})
    token = world.issuer.sign_claims(claims)
    assert inspect_unverified(token).claims == claims
    if claims.courier_key is None and claims.geofence is None and claims.lifetime <= 86400:
        d = world.verifier.verify_at(token, now=claims.not_before, vehicle_id=claims.vehicle_id,
                                     action=claims.action)
        assert d.reason in (Reason.ALLOWED, Reason.NOT_YET_VALID)  # iat may lie in the future
        if d.allowed:
            assert d.claims == claims


def _fields(claims: TokenClaims) -> dict[str, object]:
    return {name: getattr(claims, name) for name in TokenClaims.__dataclass_fields__}


def _flips(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            out.append(bytes(flipped))
    return out


@pytest.mark.parametrize("alg", [Algorithm.EDDSA, Algorithm.ES256], ids=["ed25519", "p256"])
def test_every_single_bit_flip_of_a_token_is_denied(alg: Algorithm) -> None:
    world = make_world(alg)
    device = SigningKey.generate()
    plain = world.mint()
    rich = world.mint(courier_key=device.public_key, order_ref=b"order-7",
                      geofence=Geofence.from_degrees(52.52, 13.405, 200))
    for token in (plain, rich):
        denied = Counter()
        for flipped in _flips(token):
            # Give every flip its best chance: right place, a fresh valid proof.
            proof = make_proof(device, token=flipped, vehicle_id=VEHICLE, challenge=b"n" * 16)
            d = world.verifier.verify(flipped, vehicle_id=VEHICLE, action="trunk",
                                      location=_at_berlin(), proof=proof, challenge=b"n" * 16)
            assert not d.allowed, f"flip accepted: {flipped.hex()}"
            denied[d.reason] += 1
        assert sum(denied.values()) == 8 * len(token)
        assert Reason.MALFORMED not in denied or denied[Reason.BAD_SIGNATURE] > 0


def test_every_single_bit_flip_of_a_proof_is_denied() -> None:
    world = make_world()
    device = SigningKey.generate()
    challenge = b"n" * 16
    token = world.mint(courier_key=device.public_key)
    proof = make_proof(device, token=token, vehicle_id=VEHICLE, challenge=challenge)
    for flipped in _flips(proof):
        d = world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=flipped,
                                  challenge=challenge)
        assert d.reason is Reason.PROOF_INVALID
    assert world.verifier.verify(token, vehicle_id=VEHICLE, action="trunk", proof=proof,
                                 challenge=challenge).allowed


def _at_berlin():
    from trunkkey import Location

    return Location.from_degrees(52.52, 13.405)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_denied_never_raised(data: bytes) -> None:
    world = _shared_world()
    d = world.verifier.verify(data, vehicle_id=VEHICLE, action="trunk")
    assert not d.allowed
    assert "unexpected error" not in d.detail


_WORLD: list[World] = []


def _shared_world() -> World:
    if not _WORLD:
        _WORLD.append(make_world())
    return _WORLD[0]


@given(st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=40))
def test_no_token_is_ever_allowed_twice_in_any_order(order: list[int]) -> None:
    world = make_world()
    tokens = [world.mint() for _ in range(8)]
    allowed = Counter()
    for index in order:
        d = world.verifier.verify(tokens[index], vehicle_id=VEHICLE, action="trunk")
        if d.allowed:
            allowed[index] += 1
        else:
            assert d.reason is Reason.ALREADY_USED
            assert allowed[index] == 1
    assert set(allowed) == set(order)
    assert all(count == 1 for count in allowed.values())


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_no_token_is_allowed_twice_under_threads(backend: str, tmp_path: Path) -> None:
    world = make_world()
    if backend == "sqlite":
        ledger = SqliteLedger(tmp_path / "ledger.db")
        verifier = Verifier(trust_store=world.store, ledger=ledger, clock=world.clock)
    else:
        verifier = world.verifier
    tokens = [world.mint() for _ in range(60)]
    wins: Counter[bytes] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def present() -> None:
        barrier.wait()
        for token in tokens:
            if verifier.verify(token, vehicle_id=VEHICLE, action="trunk").allowed:
                with lock:
                    wins[token] += 1

    threads = [threading.Thread(target=present) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == len(tokens)
    assert set(wins.values()) == {1}


def test_sqlite_ledger_survives_reopen_so_a_reboot_refuses_replays(tmp_path: Path) -> None:
    world = make_world()
    path = tmp_path / "car.db"
    token = world.mint()
    first = SqliteLedger(path)
    assert Verifier(trust_store=world.store, ledger=first, clock=world.clock).verify(
        token, vehicle_id=VEHICLE, action="trunk").allowed
    first.close()
    rebooted = SqliteLedger(path)
    d = Verifier(trust_store=world.store, ledger=rebooted, clock=world.clock).verify(
        token, vehicle_id=VEHICLE, action="trunk")
    assert d.reason is Reason.ALREADY_USED
    rebooted.close()


@given(names, st.binary(max_size=200))
def test_hand_built_proof_aad_equals_the_deterministic_encoding(
    vehicle_id: str, token: bytes
) -> None:
    import hashlib

    from trunkkey.proof import proof_aad

    assert proof_aad(token, vehicle_id) == cbor.encode([vehicle_id, hashlib.sha256(token).digest()])


_ENVELOPES = _envelopes()
