"""HPKE-4 opens the same through either library: cryptography's compiled
binding (when it is there and passes its known answer) or pyhpke.

A sealed token meets HPKE in one function, ``trunkkey._hpke4.hpke4_open``
(which asks ``trunkkey._hpke4.compiled_open`` each time);
which library runs under it must never change what opens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.bindings._rust import openssl as rust
from cryptography.hazmat.primitives import hpke
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import CarKemKey, _hpke4, open_sealed, seal
from trunkkey._hpke4 import AAD, compiled_open
from trunkkey.sealed import FIXED_HEADER

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "test-vectors.json"


@pytest.fixture
def pyhpke_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every open through pyhpke, as on a cryptography without the binding."""
    monkeypatch.setattr(_hpke4, "compiled_open", lambda: None)


def _hpke4_vectors() -> list[tuple[str, bytes, list[bytes]]]:
    vectors = json.loads(VECTORS.read_text())["vectors"]
    return [
        (v["reason"], bytes.fromhex(v["token"]), [bytes.fromhex(k) for k in v["car_keys"]])
        for v in vectors
        if v.get("car_keys") and bytes.fromhex(v["token"]).startswith(FIXED_HEADER)
    ]


def _open_both(sealed: bytes, keys: list[CarKemKey],
               monkeypatch: pytest.MonkeyPatch) -> tuple[bytes | None, bytes | None]:
    compiled = open_sealed(sealed, keys)
    with monkeypatch.context() as patch:
        patch.setattr(_hpke4, "compiled_open", lambda: None)
        through_pyhpke = open_sealed(sealed, keys)
    return compiled, through_pyhpke


def test_where_cryptography_has_the_aad_binding_trunkkey_opens_with_it() -> None:
    # If this fails after an upgrade, pyca changed its private binding: every
    # open has fallen back to pyhpke (correct, but at half the rate).
    assert hasattr(rust.hpke, "_decrypt_with_aad")
    assert compiled_open() is not None


@pytest.mark.parametrize(("reason", "token", "car_keys"), _hpke4_vectors())
def test_every_hpke4_vector_opens_alike_through_both_libraries(
    reason: str, token: bytes, car_keys: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [CarKemKey(raw) for raw in car_keys if len(raw) == 32]
    compiled, through_pyhpke = _open_both(token, keys, monkeypatch)
    assert compiled == through_pyhpke
    assert (compiled is None) == (reason == "cannot_open")


def test_there_are_hpke4_vectors_to_compare() -> None:
    assert len(_hpke4_vectors()) >= 3


@settings(max_examples=60, deadline=None)
@given(token=st.binary(min_size=1, max_size=400), flip=st.integers(min_value=0))
def test_what_one_library_seals_the_other_opens_and_a_flipped_byte_neither_does(
    token: bytes, flip: int
) -> None:
    car, other = CarKemKey.generate(), CarKemKey.generate()
    sealed = seal(token, car.public_key)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _open_both(sealed, [car], monkeypatch) == (token, token)
        assert _open_both(sealed, [other], monkeypatch) == (None, None)
        at = len(FIXED_HEADER) + flip % (len(sealed) - len(FIXED_HEADER))
        flipped = sealed[:at] + bytes([sealed[at] ^ 0x01]) + sealed[at + 1:]
        assert _open_both(flipped, [car], monkeypatch) == (None, None)


def _refused_and_pyhpke_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the binding as ``monkeypatch`` left it: not used, and opening still works."""
    compiled_open.cache_clear()
    try:
        assert compiled_open() is None
        car = CarKemKey.generate()
        assert open_sealed(seal(b"\xd2 token", car.public_key), [car]) == b"\xd2 token"
    finally:
        monkeypatch.undo()
        compiled_open.cache_clear()
    assert compiled_open() is not None


def test_without_the_binding_every_open_goes_through_pyhpke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(rust.hpke, "_decrypt_with_aad")
    _refused_and_pyhpke_opens(monkeypatch)


def _binding(behaviour: str) -> Any:
    real = rust.hpke._decrypt_with_aad

    def fake(suite: Any, sealed: bytes, key: Any, info: Any, aad: Any) -> bytes:
        if behaviour == "ignores the aad":
            return bytes(real(suite, sealed, key, info, AAD))
        if behaviour == "swapped info and aad":
            return bytes(real(suite, sealed, key, aad, info))
        if behaviour == "wrong plaintext":
            return b"something else"
        raise ValueError("broken")

    return fake


@pytest.mark.parametrize("behaviour", ["ignores the aad", "swapped info and aad",
                                       "wrong plaintext", "raises"])
def test_a_binding_that_fails_its_known_answer_is_not_used(
    behaviour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rust.hpke, "_decrypt_with_aad", _binding(behaviour))
    _refused_and_pyhpke_opens(monkeypatch)


def test_the_fallback_fixture_really_bypasses_the_binding(pyhpke_only: None) -> None:
    assert _hpke4.compiled_open() is None
    car = CarKemKey.generate()
    assert open_sealed(seal(b"\xd2 token", car.public_key), [car]) == b"\xd2 token"


#: X25519 public values of small order (RFC 7748 §6.1's "check for all-zero"
#: case): each makes the shared secret all zeros, which HPKE must refuse.
_SMALL_ORDER = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@pytest.mark.parametrize("enc", _SMALL_ORDER, ids=[e.hex()[:8] for e in _SMALL_ORDER])
def test_an_encapsulated_key_of_small_order_opens_in_neither_library(
    enc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    car = CarKemKey.generate()
    sealed = seal(b"\xd2 token", car.public_key)
    at = len(FIXED_HEADER)
    forged = sealed[:at] + enc + sealed[at + 32:]
    assert _open_both(forged, [car], monkeypatch) == (None, None)


@pytest.mark.parametrize("error", [UnsupportedAlgorithm, RuntimeError, OSError])
def test_a_binding_whose_setup_fails_in_any_way_is_not_used_and_pyhpke_opens(
    error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    # FIPS builds and OpenSSL without X25519 raise UnsupportedAlgorithm here,
    # which is none of ImportError, AttributeError, TypeError or ValueError:
    # it must still mean "do not use it", never a denial or an exception.
    def suite(*_: object) -> None:
        raise error("no such suite in this build")

    monkeypatch.setattr(hpke, "Suite", suite)
    _refused_and_pyhpke_opens(monkeypatch)
