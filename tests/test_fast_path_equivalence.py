"""The hot path's shortcuts give exactly what the plain path gives, and are taken.

trunkkey keeps four, all measured as needed for its performance floor
(``docs/performance.md``): in ``trunkkey._fastpath``, the claims reader before
the general ``cbor.decode_map``, the claims writer before the general
encoder, and the slot filler that builds a token's claims and the verifier's
decisions; and the direct libsodium calls of ``trunkkey._sodium`` before
PyNaCl's public bindings. Each is tested here, and nowhere else, against its
plain form.
"""

from __future__ import annotations

import dataclasses
import os
from unittest import mock

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from support import NOW, VEHICLE
from test_properties import COURIER_KEYS, claim_sets
from trunkkey import (
    Action,
    Algorithm,
    DecodeError,
    Geofence,
    Purpose,
    SigningKey,
    TokenClaims,
    _sodium,
    cbor,
    claims,
    keys,
)
from trunkkey._fastpath import slot_filler, usual_claim_values, usual_claims_bytes
from trunkkey.claims import decode_claims, encode_claims
from trunkkey.parcels import MAX_PARCELS, Parcels


def _general_values(payload: bytes) -> object:
    """What the general reader reads from ``payload``, or the type of its refusal."""
    try:
        return cbor.decode_map(payload, claims._LABELS, not_a_map="", unknown="{}")
    except DecodeError:
        return DecodeError


def _decided_by_general_reader(payload: bytes) -> object:
    """``decode_claims`` with the shortcut switched off: its claims, or its refusal."""
    with mock.patch.object(claims, "usual_claim_values", return_value=None):
        try:
            return decode_claims(payload)
        except DecodeError as exc:
            return str(exc)


def _decided(payload: bytes) -> object:
    try:
        return decode_claims(payload)
    except DecodeError as exc:
        return str(exc)


# -- the claims reader --------------------------------------------------------

def _usual(fence: Geofence | None) -> bool:
    """No fence, or 4-byte coordinates (0.0066 degrees or more from 0) and 24 m or more."""
    return fence is None or (
        not -0x10000 <= fence.lat_e7 < 0x10000
        and not -0x10000 <= fence.lon_e7 < 0x10000
        and fence.radius_m >= 24
    )


@given(claim_sets())
def test_shortcut_reads_every_token_with_an_ed25519_courier_key_or_none(
    made: TokenClaims,
) -> None:
    payload = encode_claims(made)
    usual = (
        min(made.not_before, made.expires, made.issued_at) >= 0x10000
        and max(made.not_before, made.expires, made.issued_at) <= 0xFFFFFFFF
        and (made.courier_key is None or made.courier_key is COURIER_KEYS[0])
        and _usual(made.geofence)
    )
    read = usual_claim_values(payload)
    if usual:
        assert read is not None
    assert read is None or read == _general_values(payload)
    assert decode_claims(payload) == _decided_by_general_reader(payload) == made


def _payloads() -> list[bytes]:
    def made(**extra: object) -> bytes:
        return encode_claims(TokenClaims(
            issuer="retailer", vehicle_id=VEHICLE, not_before=NOW, expires=NOW + 60,
            issued_at=NOW, token_id=b"\x01" * 16, action=Action.TRUNK,
            purpose=Purpose.DELIVERY, **extra))  # type: ignore[arg-type]

    return [
        made(),
        made(courier_key=COURIER_KEYS[0], order_ref=b"o" * 30,
             geofence=Geofence(lat_e7=481_371_540, lon_e7=-115_761_240, radius_m=300)),
        made(geofence=Geofence(lat_e7=-481_371_540, lon_e7=115_761_240, radius_m=50_000),
             order_ref=b"o"),
        # Parcels (issue 19): one order of three, and the longest order of all.
        made(courier_key=COURIER_KEYS[0],
             parcels=Parcels.commit(["P-1", "P-2", "P-3"], salt=b"s" * 16)),
        made(courier_key=COURIER_KEYS[0], order_ref=b"o" * 64,
             geofence=Geofence(lat_e7=481_371_540, lon_e7=-115_761_240, radius_m=300),
             parcels=Parcels.commit([f"P-{i}" for i in range(MAX_PARCELS)], salt=b"s" * 16)),
    ]


_PAYLOADS = _payloads()


@given(st.binary(min_size=1, max_size=120), st.integers(min_value=0, max_value=400))
def test_shortcut_never_reads_other_values_than_the_general_reader(
    noise: bytes, where: int
) -> None:
    # Noise spliced into real payloads, so that the shortcut meets near-misses.
    for payload in _PAYLOADS:
        cut = where % len(payload)
        for candidate in (
            noise, payload[:cut] + noise, payload[:cut] + noise + payload[cut + 1 :],
            payload[:cut] + noise[:1] + payload[cut + 1 :], payload + noise[:1],
            payload[:cut] + payload[cut + 1 :],
        ):
            read = usual_claim_values(candidate)
            assert read is None or read == _general_values(candidate)
            assert _decided(candidate) == _decided_by_general_reader(candidate)


@pytest.mark.parametrize("payload", _PAYLOADS,
                         ids=["plain", "delivery", "south-east", "parcels", "sixteen-parcels"])
def test_shortcut_is_taken_for_the_usual_tokens(payload: bytes) -> None:
    # It is a speed-up only: this says it is actually used.
    assert usual_claim_values(payload) == _general_values(payload)
    with mock.patch.object(cbor, "decode_map", side_effect=AssertionError("general reader")):
        decode_claims(payload)


# -- the claims writer ---------------------------------------------------------

@given(claim_sets())
def test_shortcut_writes_the_bytes_of_the_general_encoder(made: TokenClaims) -> None:
    with mock.patch.object(claims, "usual_claims_bytes", return_value=None):
        general = encode_claims(made)
    assert encode_claims(made) == general
    assert decode_claims(general) == made


def test_shortcut_writes_the_usual_token() -> None:
    plain = _PAYLOADS[0]
    assert usual_claims_bytes(b"retailer", VEHICLE.encode(), NOW + 60, NOW, NOW,
                              b"\x01" * 16, 5) == plain
    assert usual_claims_bytes(b"retailer", VEHICLE.encode(), 0xFFFF, NOW, NOW,
                              b"\x01" * 16, 5) is None  # a 2-byte NumericDate


# -- the slot filler ------------------------------------------------------------

@given(claim_sets())
def test_filled_claims_equal_claims_built_by_their_constructor(made: TokenClaims) -> None:
    filled = claims._fill_claims(*(getattr(made, f.name) for f in dataclasses.fields(made)))
    assert type(filled) is TokenClaims
    assert filled == made
    assert hash(filled) == hash(made)
    assert repr(filled) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        filled.issuer = "someone"  # type: ignore[misc]


def test_verifier_decisions_are_filled_but_frozen_and_never_constructed() -> None:
    from trunkkey import Decision, Reason
    from trunkkey.verifier import _decision

    made = _decision(Reason.ALLOWED, "all checks passed", NOW)
    assert (made.reason, made.detail, made.at, made.claims) == (
        Reason.ALLOWED, "all checks passed", NOW, None)
    assert made == _decision(Reason.ALLOWED, "all checks passed", NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.reason = Reason.EXPIRED  # type: ignore[misc]
    with pytest.raises(TypeError):
        Decision(reason=Reason.ALLOWED, detail="forged", at=NOW)


def test_slot_filler_refuses_a_class_whose_constructor_checks_its_fields() -> None:
    # Geofence checks its ranges in __post_init__: filling its slots would skip that.
    with pytest.raises(TypeError):
        slot_filler(Geofence, ("lat_e7", "lon_e7", "radius_m"))
    with pytest.raises(TypeError):
        slot_filler(TokenClaims, ("issuer", "vehicle_id"))  # not every field


# -- the direct libsodium calls -------------------------------------------------

def test_direct_libsodium_path_is_in_use() -> None:
    # The figures in docs/performance.md are for the direct path; if a PyNaCl
    # release moved its cffi module, this says so instead of a silent slowdown.
    assert _sodium.DIRECT


@pytest.mark.parametrize("size", [0, 1, 64, 150, 1000])
def test_direct_libsodium_sign_and_open_agree_with_the_bindings(size: int) -> None:
    public, secret = nacl.bindings.crypto_sign_keypair()
    message = os.urandom(size)
    signature = _sodium.ed25519_sign(message, secret)
    assert signature == _sodium._binding_sign(message, secret)
    assert len(signature) == 64
    signed = signature + message
    assert _sodium.ed25519_open(signed, public) is True
    assert _sodium._binding_open(signed, public) is True
    other_public, _ = nacl.bindings.crypto_sign_keypair()
    for bad_signed, key in (
        (bytes([signed[0] ^ 1]) + signed[1:], public),  # R changed
        (signed[:63] + bytes([signed[63] ^ 0x80]) + signed[64:], public),  # S changed
        (signed + b"x", public),  # message changed
        (signed, other_public),  # another key
    ):
        assert _sodium.ed25519_open(bad_signed, key) is False
        assert _sodium._binding_open(bad_signed, key) is False


def test_keys_verify_through_the_bindings_when_the_direct_call_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A PyNaCl without its cffi module as expected: slower, never different.
    monkeypatch.setattr(keys, "_ed25519_open", _sodium._binding_open)
    signer = SigningKey.generate(Algorithm.EDDSA)
    signature = signer.sign(b"message")
    assert signer.public_key.is_valid_unique_signature(signature, b"message")
    assert not signer.public_key.is_valid_unique_signature(signature, b"messagE")
    assert not signer.public_key.is_valid_signature(bytes(64), b"message")
