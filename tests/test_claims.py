"""The CWT claims set: its canonical encoding, its one strict decoder, and every refusal."""

from __future__ import annotations

import dataclasses
from unittest import mock

import pytest

from support import NOW, VEHICLE
from trunkkey import (
    Action,
    Algorithm,
    DecodeError,
    Geofence,
    InvalidRequest,
    Issuer,
    ManualClock,
    MemoryLedger,
    Purpose,
    SigningKey,
    TrustedKey,
    TrustStore,
    Verifier,
    cbor,
)
from trunkkey import claims as claims_module
from trunkkey._fastpath import usual_claim_values
from trunkkey.claims import (
    ORDER,
    TokenClaims,
    decode_claims,
    encode_claims,
)


def _read_by_general_reader(payload: bytes) -> object:
    """``decode_claims`` with the usual-layout shortcut switched off: claims, or the refusal."""
    with mock.patch.object(claims_module, "usual_claim_values", return_value=None):
        try:
            return decode_claims(payload)
        except DecodeError as exc:
            return str(exc)


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


def test_names_are_refused_with_the_reason() -> None:
    from trunkkey.claims import check_name

    with pytest.raises(InvalidRequest, match=r"^vehicle_id must be a non-empty string$"):
        check_name("", "vehicle_id")
    with pytest.raises(InvalidRequest, match=r"^issuer must be at most 64 bytes of UTF-8$"):
        check_name("é" * 33, "issuer")
    assert check_name("é" * 32, "issuer") == "é" * 32
    with pytest.raises(InvalidRequest, match=r"^issuer must not contain control characters$"):
        check_name("shop\n", "issuer")


# -- the decoder -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["plain", "courier", "fence", "order", "all", "short-order",
                                   "first-4-byte-times"])
def test_every_documented_claims_shape_is_read_by_the_shortcut_to_the_same_claims(
    shape: str,
) -> None:
    # The shortcut's promise: the common shapes (an Ed25519 cnf key, a geofence,
    # an order reference, any mix) are read without the general reader, to exactly
    # the claims the general reader builds. A shortcut that silently stops taking
    # them, or takes them and reads a field wrong, fails here.
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
    assert usual_claim_values(payload) is not None
    decoded = decode_claims(payload)
    assert decoded == _read_by_general_reader(payload) == claims
    assert decoded.courier_key == claims.courier_key
    # One byte more or less is never the same claims set.
    assert usual_claim_values(payload + b"\x00") is None
    assert usual_claim_values(payload[:-1]) is None


def test_a_p256_courier_key_is_left_to_the_general_claims_reader() -> None:
    courier = SigningKey.generate(Algorithm.ES256).public_key
    payload = encode_claims(_claims(courier_key=courier))
    assert usual_claim_values(payload) is None
    assert decode_claims(payload).courier_key == courier


@pytest.mark.parametrize("length", [1, 23, 24, 25, 64])
def test_claims_are_read_alike_at_the_one_byte_length_boundary(length: int) -> None:
    key = SigningKey.generate()
    name, car = "i" * length, "v" * length
    issuer = Issuer(key, name, clock=ManualClock(NOW))
    claims = issuer.claims_for(vehicle_id=car, action="unlock-relock", purpose="return-pickup",
                               not_before=NOW, expires=NOW + 60)
    payload = encode_claims(claims)
    # The hand-written encoding is the canonical one, whichever path produced it.
    assert payload == cbor.encode(cbor.decode(payload))
    assert _read_by_general_reader(payload) == claims
    # And the shortcut takes the common shape itself rather than deferring.
    assert usual_claim_values(payload) is not None
    assert decode_claims(payload) == claims
    token = issuer.sign_claims(claims)
    store = TrustStore([TrustedKey.create(key.public_key, name)])
    verifier = Verifier(trust_store=store, ledger=MemoryLedger(), clock=ManualClock(NOW))
    assert verifier.verify(token, vehicle_id=car, action="unlock-relock",
                           purpose="return-pickup").allowed


def test_unusual_claims_are_refused_alike_by_the_shortcut_and_the_general_reader() -> None:
    issuer = Issuer(SigningKey.generate(), "shop", clock=ManualClock(NOW))
    plain = encode_claims(issuer.claims_for(vehicle_id="car", action="trunk", not_before=NOW,
                                            expires=NOW + 60))
    assert usual_claim_values(plain) is not None
    for unusual, message in [
        (plain[:-1] + b"\x10", "access must be an unsigned integer with no reserved bits set"),
        (plain[:-1] + b"\x01", "access must name exactly one purpose"),
        (plain[:-1] + b"\x04", "access must name exactly one action"),
    ]:
        with pytest.raises(DecodeError) as raised:
            decode_claims(unusual)
        assert str(raised.value) == message
        assert _read_by_general_reader(unusual) == message
    # A key out of place (aud's label where iss belongs) is no claims set at all.
    misplaced = plain.replace(b"\x03\x63car", b"\x02\x63car")
    with pytest.raises(DecodeError):
        decode_claims(misplaced)
    assert isinstance(_read_by_general_reader(misplaced), str)
    with pytest.raises(DecodeError, match=r"^exp must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 4: -1}))
    with pytest.raises(DecodeError, match=r"^iat must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 6: -1}))
    with pytest.raises(DecodeError, match=r"^nbf must be an unsigned integer NumericDate$"):
        decode_claims(cbor.encode({**cbor.decode(plain), 5: -1}))


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
    assert _read_by_general_reader(payload) == message


def test_claims_set_must_be_a_map() -> None:
    with pytest.raises(DecodeError, match=r"^claims set must be a map$"):
        decode_claims(cbor.encode([1, 2]))


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
