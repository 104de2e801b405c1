"""Claims decoding at the edges of its fast path: it accepts nothing the strict decoder refuses."""

from __future__ import annotations

import pytest

from support import NOW, VEHICLE
from trunkkey import Action, DecodeError, Geofence, Purpose, TokenClaims, cbor
from trunkkey.claims import ORDER, decode_claims, encode_claims


def test_a_four_byte_radius_is_refused_even_when_its_low_bytes_spell_the_next_label() -> None:
    # A radius of 1000 is written 0x19 0x03e8. Re-headed as a 4-byte argument
    # (0x1a), the radius swallows the first two bytes of the order-reference
    # label that follows: a map with a broken radius and a broken label. A
    # fast path that read the 0x1a head as two bytes would see a radius of
    # 1000 and then the label, and accept a token no strict decoder accepts.
    claims = TokenClaims(
        issuer="retailer", vehicle_id=VEHICLE, not_before=NOW, expires=NOW + 60,
        issued_at=NOW, token_id=b"\x01" * 16, action=Action.TRUNK, purpose=Purpose.DELIVERY,
        geofence=Geofence(lat_e7=480_000_000, lon_e7=-1_100_000_000, radius_m=1000),
        order_ref=b"order-1",
    )
    payload = encode_claims(claims)
    assert decode_claims(payload) == claims
    radius = b"\x19\x03\xe8" + cbor.encode(ORDER)
    assert payload.count(radius) == 1
    spliced = payload.replace(radius, b"\x1a" + radius[1:])
    with pytest.raises(DecodeError):
        decode_claims(spliced)
