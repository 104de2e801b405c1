"""Receipts: signed by the car, verified by the retailer, never mistaken for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkkey import Action, Algorithm, DecodeError, InvalidRequest, Purpose, SigningKey
from trunkkey.cose import Typ, parse_sign1, sign1
from trunkkey.errors import SignatureError
from trunkkey.vehicle import Receipt, sign_receipt, verify_receipt

CAR = SigningKey.generate()
TOKEN_ID = bytes(range(16))


def receipt(**kw: object) -> Receipt:
    fields: dict[str, object] = {
        "vehicle_id": "VIN-1", "token_id": TOKEN_ID, "action": Action.TRUNK,
        "purpose": Purpose.DELIVERY,
        "opened_at": 100, "closed_at": 140, "relocked_at": 140, "relock_cause": "closed",
    }
    fields.update(kw)
    return Receipt(**fields)  # type: ignore[arg-type]


# The car's own key: any token-key algorithm (the composites are for carmaker roots).
@pytest.mark.parametrize("algorithm", [a for a in Algorithm if not a.hybrid])
def test_round_trip(algorithm: Algorithm) -> None:
    key = SigningKey.generate(algorithm)
    for original in (receipt(), receipt(closed_at=None, relocked_at=220, relock_cause="timeout",
                                        purpose=Purpose.RETURN_PICKUP, order_ref=b"r-7")):
        signed = sign_receipt(key, original)
        assert verify_receipt(signed, key.public_key, vehicle_id="VIN-1",
                              token_id=TOKEN_ID) == original


def test_another_cars_key_or_type_is_refused() -> None:
    signed = sign_receipt(CAR, receipt())
    with pytest.raises(SignatureError):
        verify_receipt(signed, SigningKey.generate().public_key)
    as_token = sign1(CAR, parse_sign1(signed).payload, typ=Typ.TOKEN)
    with pytest.raises(SignatureError):
        verify_receipt(as_token, CAR.public_key)


def test_wrong_vehicle_or_token_expected_by_the_retailer() -> None:
    signed = sign_receipt(CAR, receipt())
    with pytest.raises(DecodeError):
        verify_receipt(signed, CAR.public_key, vehicle_id="VIN-2")
    with pytest.raises(DecodeError):
        verify_receipt(signed, CAR.public_key, token_id=b"\x00" * 16)


@given(st.integers(min_value=0, max_value=10_000))
def test_any_flipped_byte_is_refused(position: int) -> None:
    signed = bytearray(sign_receipt(CAR, receipt()))
    signed[position % len(signed)] ^= 0x01
    with pytest.raises((SignatureError, DecodeError)):
        verify_receipt(bytes(signed), CAR.public_key)


def test_impossible_receipts_cannot_be_made() -> None:
    with pytest.raises(InvalidRequest):
        receipt(relock_cause="magic")
    with pytest.raises(InvalidRequest):
        receipt(opened_at=200, relocked_at=100)


def test_signed_but_malformed_content_is_refused() -> None:
    from trunkkey import cbor

    bad = sign1(CAR, cbor.encode({1: "VIN-1", 2: TOKEN_ID, 3: "fly", 4: "delivery", 5: 1,
                                  7: 2, 8: "closed"}), typ=Typ.RECEIPT)
    with pytest.raises(DecodeError):
        verify_receipt(bad, CAR.public_key)
