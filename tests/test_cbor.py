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


# -- exact boundaries and refusals -----------------------------------------------------


def test_nesting_cap_is_exactly_eight_levels() -> None:
    assert cbor.MAX_DEPTH == 8
    assert cbor.decode(b"\x81" * 8 + b"\x00") == [[[[[[[[0]]]]]]]]
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 9 + b"\x00")


@pytest.mark.parametrize(("encoded", "value"), [
    (b"\x17", 23),
    (b"\x18\x18", 24),
    (b"\x18\xff", 255),
    (b"\x19\x01\x00", 256),
    (b"\x19\xff\xff", 65535),
    (b"\x1a\x00\x01\x00\x00", 65536),
    (b"\x1a\xff\xff\xff\xff", 2**32 - 1),
    (b"\x1b\x00\x00\x00\x01\x00\x00\x00\x00", 2**32),
    (b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff", 2**64 - 1),
    (b"\x38\x18", -25),
    (b"\x39\x01\x00", -257),
])
def test_shortest_form_boundaries_decode_and_encode(encoded: bytes, value: int) -> None:
    assert cbor.decode(encoded) == value
    assert cbor.encode(value) == encoded


@pytest.mark.parametrize("encoded", [
    b"\x18\x17",
    b"\x19\x00\xff",
    b"\x1a\x00\x00\xff\xff",
    b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff",
    b"\x58\x17" + bytes(23),
    b"\x99\x00\x17" + bytes(23),
])
def test_one_below_each_long_form_is_refused_as_not_shortest(encoded: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^argument not in shortest form$"):
        cbor.decode(encoded)


def test_map_count_is_checked_against_the_bytes_left() -> None:
    # One pair declared, one byte left: refused as a truncated map, before parsing.
    with pytest.raises(DecodeError, match=r"^truncated map$"):
        cbor.decode(b"\xa1\x00")
    with pytest.raises(DecodeError, match=r"^truncated map$"):
        cbor.decode(b"\x81\xa2\x00\x00\x01")
    assert cbor.decode(b"\xa1\x00\x00") == {0: 0}


def test_array_count_is_checked_against_the_bytes_left() -> None:
    with pytest.raises(DecodeError, match=r"^truncated array$"):
        cbor.decode(b"\x82\x00")
    assert cbor.decode(b"\x82\x00\x00") == [0, 0]


def test_map_keys_count_towards_nesting() -> None:
    # A map at the last level whose key is itself nested: too deep, not "bad key".
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\xa1" + b"\x81" * 8 + b"\x00" + b"\x00")
    # And the key's depth is bounded, so a deep key cannot recurse without limit.
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 7 + b"\xa1" + b"\x81" * 3000 + b"\x00\x00")
    with pytest.raises(DecodeError, match=r"^nesting too deep$"):
        cbor.decode(b"\x81" * 7 + b"\xa1\x00" + b"\x81" * 3000 + b"\x00")


def test_non_bytes_and_empty_input_are_refused_with_the_reason() -> None:
    with pytest.raises(DecodeError, match=r"^expected bytes$"):
        cbor.decode(bytearray(b"\x00"))  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"^empty input$"):
        cbor.decode(b"")


def test_head_width_grows_exactly_at_each_argument_boundary() -> None:
    for major in range(8):
        for arg, size in ((23, 1), (24, 2), (255, 2), (256, 3), (65535, 3), (65536, 5),
                          (2**32 - 1, 5), (2**32, 9), (2**64 - 1, 9)):
            out = cbor.head(major, arg)
            assert len(out) == size, (major, arg)
            assert out[0] >> 5 == major
    with pytest.raises(ValueError, match="out of CBOR range"):
        cbor.head(0, 2**64)


def test_encoder_refusals_say_why() -> None:
    with pytest.raises(TypeError, match=r"^cannot encode float in trunkkey's CBOR subset$"):
        cbor.encode(1.5)
    with pytest.raises(ValueError, match=r"^integer out of CBOR range$"):
        cbor.encode(2**64)
    with pytest.raises(ValueError, match=r"^integer out of CBOR range$"):
        cbor.encode(-(2**64) - 1)


def test_read_item_names_an_item_that_starts_past_the_end() -> None:
    # The one truncation no decoding step reports itself: there is no head byte.
    with pytest.raises(DecodeError, match=r"^truncated item$"):
        cbor.read_item(b"\x01", 1, max_depth=0)
    with pytest.raises(DecodeError, match=r"^truncated item$"):
        cbor.read_item(b"", 0, max_depth=0)


def test_a_decoder_handed_something_other_than_bytes_says_what_it_got() -> None:
    with pytest.raises(DecodeError, match=r"^claims set must be bytes, not str$"):
        cbor.refuse_oversized("a1", 10, "claims set")
