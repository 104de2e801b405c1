"""The strict CBOR subset: what it refuses matters as much as what it reads."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkkey import cbor
from trunkkey.errors import DecodeError

values = st.recursive(
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-1000, 1000) | st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@given(values)
def test_round_trip_and_agreement_with_cbor2(value: object) -> None:
    encoded = cbor.encode(value)
    assert cbor.decode(encoded) == value
    # An independent decoder reads the same value from the same bytes.
    assert cbor2.loads(encoded) == value


def test_map_keys_sort_bytewise_as_rfc8949_requires() -> None:
    # RFC 8949 4.2.1 sorts by encoded bytes, not length-first as RFC 7049 did:
    # the text key "" (0x60) sorts after the integer 24 (0x18 0x18).
    assert cbor.encode({"": 0, 24: 0}) == bytes.fromhex("a2181800" + "6000")
    assert cbor.encode({-1: 0, 1: 0, 100: 0}) == bytes.fromhex("a3" "0100" "186400" "2000")


@pytest.mark.parametrize(
    ("hex_input", "why"),
    [
        ("", "empty"),
        ("1817", "non-shortest uint (23 in one extra byte)"),
        ("190017", "non-shortest uint16"),
        ("1a0000ffff", "non-shortest uint32"),
        ("1b00000000ffffffff", "non-shortest uint64"),
        ("5801ff", "non-shortest byte-string length"),
        ("5f41ff", "indefinite byte string"),
        ("9f01ff", "indefinite array"),
        ("bf0101ff", "indefinite map"),
        ("a201010102", "duplicate map key"),
        ("a202010101", "keys out of order"),
        ("c11a5612aeb0", "tag 1 (epoch date)"),
        ("c249010000000000000000", "bignum tag"),
        ("f93c00", "half float 1.0"),
        ("fb3ff0000000000000", "double 1.0"),
        ("f97e00", "NaN"),
        ("f5", "true"),
        ("f6", "null"),
        ("0000", "trailing bytes"),
        ("62c328", "invalid UTF-8"),
        ("5a00010000", "declared length far beyond input"),
        ("9b00000001000000000000", "array count beyond input"),
        ("bb0000000100000000", "map count beyond input"),
        ("1c", "reserved additional information"),
        ("a1f600", "null as a map key"),
        ("a1810000", "array as a map key"),
    ],
)
def test_refuses(hex_input: str, why: str) -> None:
    with pytest.raises(DecodeError):
        cbor.decode(bytes.fromhex(hex_input))


def test_nesting_is_bounded() -> None:
    deep = b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError, match="deep"):
        cbor.decode(deep)
    cbor.decode(b"\x81" * cbor.MAX_DEPTH + b"\x00")


def test_thousand_levels_do_not_recurse_the_interpreter() -> None:
    with pytest.raises(DecodeError):
        cbor.decode(b"\x81" * 1000 + b"\x00")


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        cbor.decode(data)


def test_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        cbor.decode(bytearray(b"\x00"))  # type: ignore[arg-type]


def test_encode_refuses_types_outside_the_subset() -> None:
    for bad in (1.5, None, True, {1, 2}):
        with pytest.raises(TypeError):
            cbor.encode(bad)


def test_read_item_names_an_item_that_starts_past_the_end() -> None:
    # The one truncation no decoding step reports itself: there is no head byte.
    with pytest.raises(DecodeError, match=r"^truncated item$"):
        cbor.read_item(b"\x01", 1, max_depth=0)
    with pytest.raises(DecodeError, match=r"^truncated item$"):
        cbor.read_item(b"", 0, max_depth=0)


def test_a_decoder_handed_something_other_than_bytes_says_what_it_got() -> None:
    with pytest.raises(DecodeError, match=r"^claims set must be bytes, not str$"):
        cbor.refuse_oversized("a1", 10, "claims set")
