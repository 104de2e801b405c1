"""Grants: strict encoding, minting validation, and the narrowing rule on its own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkkey import (
    Action,
    Algorithm,
    DecodeError,
    Geofence,
    InvalidRequest,
    Purpose,
    SigningKey,
    cbor,
)
from trunkkey.consent import (
    Scope,
    access_mask,
    decode_grant,
    encode_chain,
    make_grant,
    narrow,
    root_scope,
    sign_delegation,
    sign_root_grant,
    vehicle_tag,
)
from trunkkey.consent.grant import encode_grant

NOW = 1_800_000_000
VIN = "1HGCM82633A004352"
OTHER_VIN = "WVWZZZ1JZXW000001"
HOME = Geofence(lat_e7=481371540, lon_e7=115761240, radius_m=300)
KEY = SigningKey.generate()
P256 = SigningKey.generate(Algorithm.ES256)

ACCESS_VALUES = [a | p for a in (1, 2, 3) for p in (4, 8, 12)]


@st.composite
def grants(draw: st.DrawFn, *, root: bool = False):  # type: ignore[no-untyped-def]
    nbf = draw(st.integers(0, 2**32))
    return make_grant(
        grantee=draw(st.sampled_from([KEY.public_key, P256.public_key])),
        grantee_name=draw(st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=16)),
        access=draw(st.sampled_from(ACCESS_VALUES)),
        not_before=nbf,
        expires=nbf + draw(st.integers(1, 2**31)),
        depth=draw(st.integers(0, 3)),
        vehicle_ids=draw(st.just([VIN]) if root else st.none() | st.just([VIN, OTHER_VIN])),
        places=draw(st.none() | st.just([HOME])),
        daily_limit=draw(st.none() | st.integers(1, 1000)),
    )


@given(grants())
def test_payload_round_trips_and_is_canonical(grant) -> None:  # type: ignore[no-untyped-def]
    payload = encode_grant(grant)
    assert decode_grant(payload) == grant
    # The payload is in trunkkey's strict deterministic CBOR: re-encoding is identity.
    assert cbor.encode(cbor.decode(payload)) == payload


def test_two_link_grants_fit_the_per_grant_budget() -> None:
    retailer, carrier = SigningKey.generate(), SigningKey.generate()
    root = make_grant(grantee=retailer.public_key, grantee_name="amazon",
                      access=access_mask(["trunk"], ["delivery"]), not_before=NOW,
                      expires=NOW + 30 * 86400, depth=1, vehicle_ids=[VIN])
    scope = root_scope(root)
    assert isinstance(scope, Scope)
    child = make_grant(grantee=carrier.public_key, grantee_name="dhl",
                       access=access_mask(["trunk"], ["delivery"]), not_before=NOW,
                       expires=NOW + 86400, depth=0)
    signed_root = sign_root_grant(SigningKey.generate(), root)
    signed_child = sign_delegation(retailer, scope, child)
    # 64-byte signature + 32-byte key are 96 of these; the rest is header and claims.
    assert len(signed_root) <= 160
    assert len(signed_child) <= 140


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (1, b"\x00" * 31),  # key of no known length
        (2, ""),  # empty name
        (3, 0x13),  # reserved access bit
        (3, 0x04),  # no action
        (3, 0x01),  # no purpose
        (5, NOW - 10),  # exp before nbf
        (6, 4),  # depth above the cap
        (7, [b"\x01" * 8, b"\x00" * 8]),  # vehicle tags out of order
        (7, []),  # no vehicles
        (8, [[0, 0, 1]]),  # a place smaller than GPS can tell
        (9, 0),  # a daily limit of zero
        (10, 1),  # unknown member
    ],
)
def test_off_profile_payloads_are_refused(member: int, value: object) -> None:
    members = cbor.decode(encode_grant(make_grant(
        grantee=KEY.public_key, grantee_name="x", access=5, not_before=NOW, expires=NOW + 60,
        vehicle_ids=[VIN],
    )))
    members[member] = value
    with pytest.raises(DecodeError):
        decode_grant(cbor.encode(members))


def test_make_grant_refuses_nonsense() -> None:
    with pytest.raises(InvalidRequest):
        access_mask([], ["delivery"])
    with pytest.raises(InvalidRequest):
        access_mask(["drive"], ["delivery"])
    base = {"grantee": KEY.public_key, "grantee_name": "x", "access": 5,
            "not_before": NOW, "expires": NOW + 60}
    for bad in ({"expires": NOW}, {"depth": 9}, {"access": 0x10 | 5}, {"daily_limit": 0},
                {"vehicle_ids": []}, {"places": []}):
        with pytest.raises(InvalidRequest):
            make_grant(**{**base, **bad})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="name its vehicles"):
        sign_root_grant(KEY, make_grant(**base))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        encode_chain([])


def _scope(**kw: object) -> Scope:
    base: dict[str, object] = {
        "vehicles": frozenset({vehicle_tag(VIN)}), "access": 0x0F, "not_before": NOW,
        "expires": NOW + 1000, "depth": 2, "places": (HOME,), "daily_limit": 3,
    }
    base.update(kw)
    return Scope(**base)  # type: ignore[arg-type]


def _child(**kw: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {"grantee": KEY.public_key, "grantee_name": "c", "access": 5,
                               "not_before": NOW, "expires": NOW + 1000, "depth": 1}
    base.update(kw)
    return make_grant(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("child", "problem"),
    [
        ({"depth": 2}, "depth"),
        ({"access": 0x07}, None),  # narrower access is fine
        ({"not_before": NOW - 1}, "window"),
        ({"expires": NOW + 1001}, "window"),
        ({"vehicle_ids": [VIN, "OTHER"]}, "vehicle"),
        ({"places": [Geofence(lat_e7=HOME.lat_e7, lon_e7=HOME.lon_e7, radius_m=301)]}, "place"),
        ({"daily_limit": 4}, "daily limit"),
    ],
)
def test_narrow_names_what_was_widened(child: dict[str, object], problem: str | None) -> None:
    result = narrow(_scope(), _child(**child))
    if problem is None:
        assert isinstance(result, Scope)
    else:
        assert isinstance(result, str)
        assert problem in result


def test_narrow_refuses_wider_access_and_any_child_of_a_leaf() -> None:
    assert "access" in str(narrow(_scope(access=0x05), _child(access=0x06)))
    assert "no further delegation" in str(narrow(_scope(depth=0), _child(depth=0)))


def test_a_child_that_omits_a_limit_inherits_it() -> None:
    result = narrow(_scope(), _child())
    assert isinstance(result, Scope)
    assert result.places == (HOME,)
    assert result.daily_limit == 3
    assert result.vehicles == frozenset({vehicle_tag(VIN)})


@given(st.sampled_from(ACCESS_VALUES), st.sampled_from(ACCESS_VALUES))
def test_narrowed_access_is_always_a_subset(parent: int, child: int) -> None:
    result = narrow(_scope(access=parent), _child(access=child))
    assert isinstance(result, Scope) == (child & ~parent == 0)
    if isinstance(result, Scope):
        assert result.access & ~parent == 0


def test_minting_refuses_a_widening_delegation() -> None:
    with pytest.raises(InvalidRequest, match="widen"):
        sign_delegation(KEY, _scope(access=0x05), _child(access=0x07))
    assert Action.TRUNK.bit | Purpose.DELIVERY.bit == access_mask(["trunk"], ["delivery"])


# -- The one grant decoder: every valid grant back, nothing but canonical bytes in --


@given(grants())
def test_any_valid_grant_round_trips_through_the_one_decoder(grant) -> None:  # type: ignore[no-untyped-def]
    assert decode_grant(encode_grant(grant)) == grant


_USUAL = encode_grant(make_grant(
    grantee=KEY.public_key, grantee_name="retailer", access=5, not_before=NOW,
    expires=NOW + 86_400, depth=2, vehicle_ids=[VIN, OTHER_VIN],
    places=[HOME, Geofence(lat_e7=-337_000_000, lon_e7=-705_000_000, radius_m=5_000)],
    daily_limit=300,
))


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=len(_USUAL)))
def test_grant_decoder_accepts_only_bytes_it_would_encode_itself(noise: bytes, cut: int) -> None:
    # Near-misses of a real grant: whatever is accepted is the one encoding of its grant.
    for candidate in (
        noise, _USUAL[:cut] + noise, _USUAL[:cut] + noise + _USUAL[cut:],
        _USUAL[:cut] + noise[:1] + _USUAL[cut + 1 :], _USUAL + noise,
        _USUAL[:cut] + bytes([noise[0] ^ 0xFF]) + _USUAL[cut + 1 :],
    ):
        try:
            grant = decode_grant(candidate)
        except DecodeError:
            continue
        assert encode_grant(grant) == candidate


@pytest.mark.parametrize("limit", [1, 23, 24, 255, 256, 1000])
def test_grant_decoder_reads_every_daily_limit_form(limit: int) -> None:
    grant = make_grant(grantee=KEY.public_key, grantee_name="carrier", access=5,
                       not_before=NOW, expires=NOW + 60, daily_limit=limit)
    assert decode_grant(encode_grant(grant)) == grant
