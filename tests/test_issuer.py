"""Minting: valid requests make tokens, nonsense requests are refused clearly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from support import NOW, VEHICLE, World
from trunkkey import (
    Action,
    Geofence,
    InvalidRequest,
    Issuer,
    ManualClock,
    Purpose,
    SigningKey,
    inspect_unverified,
)
from trunkkey.claims import encode_claims


def test_minted_token_carries_what_was_asked(world: World) -> None:
    courier = SigningKey.generate().public_key
    fence = Geofence.from_degrees(48.1374, 11.5755, 150)
    token = world.mint(
        action="unlock-relock", purpose="return-pickup", geofence=fence, courier_key=courier,
        order_ref=b"order-42",
    )
    seen = inspect_unverified(token)
    claims = seen.claims
    assert (claims.vehicle_id, claims.issuer) == (VEHICLE, "retailer")
    assert (claims.not_before, claims.expires, claims.issued_at) == (NOW, NOW + 4 * 3600, NOW)
    assert claims.action is Action.UNLOCK_RELOCK
    assert claims.purpose is Purpose.RETURN_PICKUP
    assert claims.geofence == fence
    assert claims.courier_key == courier
    assert claims.order_ref == b"order-42"
    assert len(claims.token_id) == 16
    assert seen.header.kid == world.key.kid
    assert seen.header.alg == int(world.key.algorithm)


def test_token_ids_are_fresh(ed_world: World) -> None:
    ids = {inspect_unverified(ed_world.mint()).claims.token_id for _ in range(200)}
    assert len(ids) == 200


def test_sign_claims_equals_mint_encoding(ed_world: World) -> None:
    claims = ed_world.issuer.claims_for(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60
    )
    token = ed_world.issuer.sign_claims(claims)
    assert inspect_unverified(token).claims == claims
    # Ed25519 is deterministic: the same claims sign to the same bytes.
    assert ed_world.issuer.sign_claims(claims) == token
    assert encode_claims(claims) in token


def test_aware_datetimes_are_accepted_naive_refused(ed_world: World) -> None:
    start = datetime.fromtimestamp(NOW, tz=UTC)
    token = ed_world.mint(not_before=start, expires=start + timedelta(hours=2))
    assert inspect_unverified(token).claims.expires == NOW + 7200
    other_zone = start.astimezone(timezone(timedelta(hours=-5)))
    token = ed_world.mint(not_before=other_zone, expires=NOW + 60)
    assert inspect_unverified(token).claims.not_before == NOW
    with pytest.raises(InvalidRequest, match="naive"):
        ed_world.mint(not_before=datetime(2027, 1, 1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expires": NOW - 1}, "inverted"),
        ({"expires": NOW}, "inverted"),
        ({"expires": NOW + 24 * 3600 + 1}, "exceeds"),
        ({"vehicle_id": ""}, "vehicle_id"),
        ({"vehicle_id": "x" * 65}, "vehicle_id"),
        ({"vehicle_id": "car\n1"}, "control"),
        ({"action": "start-engine"}, "unknown action"),
        ({"action": "drive"}, "unknown action"),
        ({"purpose": "joyride"}, "unknown purpose"),
        ({"not_before": NOW - 7200, "expires": NOW - 3600}, "ended"),
        ({"order_ref": b""}, "order_ref"),
        ({"order_ref": "text"}, "order_ref"),
        ({"geofence": (48.0, 11.0, 100)}, "geofence"),
        ({"courier_key": SigningKey.generate()}, "courier_key"),
        ({"not_before": True}, "Unix seconds"),
        ({"not_before": 1.5}, "Unix seconds"),
    ],
)
def test_nonsense_requests_are_refused(
    ed_world: World, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        ed_world.mint(**overrides)


def test_invalid_request_is_also_a_value_error(ed_world: World) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        ed_world.mint(action="cabin")


def test_configurable_maximum_lifetime() -> None:
    clock = ManualClock(NOW)
    issuer = Issuer(SigningKey.generate(), "r", clock=clock, max_lifetime=3600)
    issuer.mint(vehicle_id="v", action=Action.TRUNK, not_before=NOW, expires=NOW + 3600)
    with pytest.raises(InvalidRequest, match="exceeds"):
        issuer.mint(vehicle_id="v", action=Action.TRUNK, not_before=NOW, expires=NOW + 3601)
    with pytest.raises(InvalidRequest):
        Issuer(SigningKey.generate(), "r", clock=clock, max_lifetime=0)


def test_issuer_refuses_bad_construction() -> None:
    with pytest.raises(InvalidRequest):
        Issuer(SigningKey.generate().public_key, "r")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        Issuer(SigningKey.generate(), "")
    with pytest.raises(InvalidRequest, match=r"^clock must be a trunkkey\.Clock"):
        Issuer(SigningKey.generate(), "r", clock=time.time)  # type: ignore[arg-type]
    key = SigningKey.generate()
    assert key.kid.hex() in repr(Issuer(key, "r"))


def test_sign_claims_refuses_another_issuers_claims(ed_world: World) -> None:
    claims = ed_world.issuer.claims_for(
        vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 60
    )
    other = Issuer(SigningKey.generate(), "someone-else", clock=ed_world.clock)
    with pytest.raises(InvalidRequest, match="another issuer"):
        other.sign_claims(claims)


def test_trunk_token_size_is_compact(ed_world: World) -> None:
    issuer = Issuer(ed_world.key, "amazon", clock=ed_world.clock)
    token = issuer.mint(vehicle_id=VEHICLE, action="trunk", not_before=NOW, expires=NOW + 3600)
    # 17-character VIN, 6-character issuer, no geofence, no cnf.
    assert len(token) <= 160
