"""python-cwt opens trunkkey's sealed tokens, and trunkkey opens python-cwt's.

python-cwt (3.3, following draft-ietf-cose-hpke-23) and trunkkey (following
-27) agree on every detail integrated encryption uses: ``alg`` HPKE-4 = 42
in the protected header, ``ek`` (-4) in the unprotected one, HPKE ``info``
empty and the Enc_structure ``["Encrypt0", protected, h'']`` as ``aad``.
Only the car's KEM key crosses over, as a COSE_Key.

Runs in the interop environment (see ``test_cwt.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from cwt import COSE, COSEKey

from trunkkey import (
    CarKemKey,
    Issuer,
    ManualClock,
    SigningKey,
    Unsealed,
    open_bundle,
    open_sealed,
    seal,
)
from trunkkey.sealed import BUCKETS, FIXED_HEADER, _seal

CAR = CarKemKey(bytes(range(32)))


def _car_key_for_cwt(car: CarKemKey) -> COSEKey:
    public = cbor2.loads(car.public_key.to_cose_key())
    return COSEKey.new({**public, -4: car.private_bytes()})


def _signed_token() -> bytes:
    key = SigningKey.generate()
    clock = ManualClock(1_800_000_000)
    return Issuer(key, "retailer", clock=clock).mint(
        vehicle_id="WVWZZZ1JZXW000001", action="trunk", not_before=1_800_000_000,
        expires=1_800_003_600,
    )


def test_python_cwt_opens_a_sealed_hpke4_token_with_the_cars_key() -> None:
    token = _signed_token()
    padded = COSE.new().decode(seal(token, CAR.public_key), keys=[_car_key_for_cwt(CAR)])
    # What it reads is the padded plaintext: the token, 0x80, zeros to a bucket.
    assert len(padded) in BUCKETS
    assert padded == token + b"\x80" + bytes(len(padded) - len(token) - 1)


def test_python_cwt_refuses_a_token_sealed_to_another_car() -> None:
    other = CarKemKey(bytes(range(1, 33)))
    with pytest.raises(Exception):  # noqa: B017, PT011 -- python-cwt's own error types
        COSE.new().decode(seal(_signed_token(), other.public_key),
                          keys=[_car_key_for_cwt(CAR)])


def test_the_car_opens_what_python_cwt_seals_on_the_profile() -> None:
    token = _signed_token()
    padded = token + b"\x80" + bytes(BUCKETS[0] - len(token) - 1)
    public = COSEKey.new(cbor2.loads(CAR.public_key.to_cose_key()))
    sealed = COSE.new().encode(padded, public, protected={1: 42})
    assert sealed.startswith(FIXED_HEADER)
    assert open_sealed(sealed, [CAR]) == token


def test_a_known_answer_seal_opens_in_python_cwt() -> None:
    sealed = _seal(b"\xd2vector", CAR.public_key, bytes(range(2, 34)))
    padded = COSE.new().decode(sealed, keys=[_car_key_for_cwt(CAR)])
    assert padded.startswith(b"\xd2vector\x80")


_VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "test-vectors.json").read_text("utf-8")
)["vectors"]
_OPENABLE = [v for v in _VECTORS if v.get("car_keys") and v["reason"] != "cannot_open"]


@pytest.mark.parametrize("vector", _OPENABLE, ids=[v["name"] for v in _OPENABLE])
def test_python_cwt_opens_every_sealed_vector(vector: dict[str, object]) -> None:
    car = CarKemKey(bytes.fromhex(vector["car_keys"][0]))  # type: ignore[index]
    sealed = bytes.fromhex(vector["token"])  # type: ignore[arg-type]
    padded = COSE.new().decode(sealed, keys=[_car_key_for_cwt(car)])
    assert padded.rstrip(b"\x00").endswith(b"\x80")
    assert open_sealed(sealed, [car]) == padded.rstrip(b"\x00")[:-1]
    # A signed token, or a sealed bundle [token, chain] (the malformed ones by design).
    assert padded[:1] in {b"\xd2", b"\x82"}


def test_python_cwt_opens_a_sealed_bundle_to_the_token_and_chain_it_holds() -> None:
    token, chain = _signed_token(), b"\x81\x44\xd2grant"
    sealed = seal(token, CAR.public_key, chain=chain)
    padded = COSE.new().decode(sealed, keys=[_car_key_for_cwt(CAR)])
    assert len(padded) in BUCKETS
    assert cbor2.loads(padded.rstrip(b"\x00")[:-1]) == [token, chain]
    assert open_bundle(sealed, [CAR]) == Unsealed(token, chain)


def test_the_vectors_hold_sealed_tokens_for_python_cwt() -> None:
    assert len(_OPENABLE) >= 3
