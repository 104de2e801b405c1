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
from trunkkey.claims import (
    _decode_claims_generic,
    access_bits,
    decode_claims,
    encode_claims,
)

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
    payload = encode_claims(claims)
    assert decode_claims(payload) == claims
    assert _decode_claims_generic(payload) == claims


def _usual_fence(fence: Geofence) -> bool:
    """Coordinates in 4-byte form (at least 0.0066 degrees from 0) and a radius of 24 m or more."""
    return (
        not -0x10000 <= fence.lat_e7 < 0x10000
        and not -0x10000 <= fence.lon_e7 < 0x10000
        and fence.radius_m >= 24
    )


@given(claim_sets())
def test_fast_path_takes_every_token_with_an_ed25519_courier_key_or_none(
    claims: TokenClaims,
) -> None:
    from trunkkey.claims import _decode_common_shape

    usual = (
        min(claims.not_before, claims.expires, claims.issued_at) >= 0x10000
        and max(claims.not_before, claims.expires, claims.issued_at) <= 0xFFFFFFFF
        and len(claims.issuer.encode()) < 24
        and len(claims.vehicle_id.encode()) < 24
        and (claims.courier_key is None or claims.courier_key is COURIER_KEYS[0])
        and (claims.geofence is None or _usual_fence(claims.geofence))
    )
    fast = _decode_common_shape(encode_claims(claims))
    if usual:
        assert fast == claims
    else:
        assert fast is None or fast == claims


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


@given(st.binary(min_size=1, max_size=120))
def test_fast_claims_path_never_disagrees_with_the_generic_one(noise: bytes) -> None:
    # Splice noise into a real payload so the fast path sees near-misses.
    base = encode_claims(
        TokenClaims(issuer="retailer", vehicle_id=VEHICLE, not_before=NOW, expires=NOW + 60,
                    issued_at=NOW, token_id=b"\x01" * 16, action=Action.TRUNK,
                    purpose=Purpose.DELIVERY)
    )
    rich = encode_claims(
        TokenClaims(issuer="retailer", vehicle_id=VEHICLE, not_before=NOW, expires=NOW + 60,
                    issued_at=NOW, token_id=b"\x01" * 16, action=Action.TRUNK,
                    purpose=Purpose.DELIVERY, courier_key=COURIER_KEYS[0],
                    geofence=Geofence(lat_e7=1, lon_e7=-2, radius_m=300), order_ref=b"o")
    )
    # A geofence the fast path reads itself: 4-byte coordinates, one negative.
    fenced = encode_claims(
        TokenClaims(issuer="retailer", vehicle_id=VEHICLE, not_before=NOW, expires=NOW + 60,
                    issued_at=NOW, token_id=b"\x01" * 16, action=Action.TRUNK,
                    purpose=Purpose.DELIVERY, courier_key=COURIER_KEYS[0],
                    geofence=Geofence(lat_e7=481_371_540, lon_e7=-115_761_240, radius_m=300))
    )
    cut = len(noise) % len(rich)
    fence_cut = len(fenced) - 1 - len(noise) % 16  # somewhere in the geofence
    for candidate in (
        noise, base[: len(noise) % len(base)] + noise, base[:-1] + noise[:1],
        rich[:cut] + noise + rich[cut + 1 :], rich[:cut] + noise,
        fenced[:fence_cut] + noise[:1] + fenced[fence_cut + 1 :],
        fenced[:fence_cut] + noise,
    ):
        try:
            generic: object = _decode_claims_generic(candidate)
        except Exception as exc:  # noqa: BLE001 -- comparing outcomes, whatever they are
            generic = type(exc)
        try:
            fast: object = decode_claims(candidate)
        except Exception as exc:  # noqa: BLE001
            fast = type(exc)
        assert fast == generic


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


def test_fast_envelope_path_takes_every_token_proof_and_grant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fast path is a speed-up only: this says it is actually taken.
    from trunkkey import cose

    def general_path_used(data: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        raise AssertionError("the general envelope parser was used")

    expected = [cose.split_sign1(envelope) for envelope in _ENVELOPES]
    monkeypatch.setattr(cose, "_split_sign1_general", general_path_used)
    assert [cose.split_sign1(envelope) for envelope in _ENVELOPES] == expected


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=0, max_value=400))
def test_fast_envelope_path_never_disagrees_with_the_general_one(
    noise: bytes, where: int
) -> None:
    from trunkkey.cose import _split_sign1_general, split_sign1

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
            outcomes = []
            for split in (split_sign1, _split_sign1_general):
                try:
                    outcomes.append(split(candidate))
                except Exception as exc:  # noqa: BLE001 -- comparing outcomes, whatever they are
                    outcomes.append((type(exc), str(exc)))
            assert outcomes[0] == outcomes[1]


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
