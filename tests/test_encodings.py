"""trunkkey.encodings: one strict reader and writer of the token's text forms, and
the room a token, a proof and a chain take on BLE, NFC and QR."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trunkkey import DecodeError, InvalidRequest
from trunkkey.encodings import (
    QR_LEVELS,
    TextDecodeError,
    TextFormat,
    ble_long_write_requests,
    ble_writes,
    decode_bytes,
    decode_text,
    detect_format,
    encode_text,
    nfc_apdus,
    qr_byte_capacity,
    qr_version,
    transport_footprint,
)

TOKEN_HEAD = bytes([0xD2, 0x84, 0x43, 0xA1])


@given(st.binary(min_size=1, max_size=300), st.sampled_from(list(TextFormat)))
def test_every_byte_string_round_trips_through_each_form(data: bytes, fmt: TextFormat) -> None:
    assert decode_text(encode_text(data, fmt), fmt) == data


@given(st.binary(min_size=1, max_size=300))
def test_padded_base64url_is_read_as_the_unpadded_form(data: bytes) -> None:
    padded = encode_text(data, padded=True)
    assert padded == base64.urlsafe_b64encode(data).decode()
    assert decode_text(padded, "base64url") == data


@given(st.binary(min_size=1, max_size=200))
def test_a_token_is_detected_in_either_form(tail: bytes) -> None:
    token = TOKEN_HEAD + tail
    for fmt in TextFormat:
        text = encode_text(token, fmt)
        assert detect_format(text) is fmt
        assert decode_text(text) == token
        assert decode_bytes(text.encode() + b"\n") == token
    assert decode_bytes(token) == token  # raw CBOR is passed through


@pytest.mark.parametrize(
    ("text", "fmt", "problem", "words"),
    [
        ("d2843", None, "odd_length_hex", "odd number of hex digits (5)"),
        ("d2843", "hex", "odd_length_hex", "odd number of hex digits"),
        ("d2zz", "hex", "not_hex", "'z' is not a hex digit"),
        ("0oRD+a/b", None, "standard_base64", "standard base64"),
        ("0oRDoQEm/w==", "base64url", "standard_base64", "'-' for '+'"),
        ("@@@", None, "not_base64url", "not hex or base64url"),
        ("abcde", "base64url", "bad_padding", "padding"),
        ("0oQ==", "base64url", "bad_padding", "padding"),
        ("0oR===", "base64url", "bad_padding", "padding"),
        ("0oR", "base64url", "not_canonical", "not canonical"),
        ("d2 84", None, "whitespace", "whitespace inside"),
        ("  \n", None, "empty", "empty"),
        ("d2\u00e9", None, "not_ascii", "non-ASCII"),
    ],
)
def test_bad_text_gets_a_typed_error_naming_the_form(
    text: str, fmt: str | None, problem: str, words: str
) -> None:
    with pytest.raises(TextDecodeError) as caught:
        decode_text(text, fmt, what="token")
    assert caught.value.problem == problem
    assert words in str(caught.value)
    assert str(caught.value).startswith("token ")
    assert isinstance(caught.value, DecodeError)


def test_odd_length_hex_is_never_called_base64url() -> None:
    token = (TOKEN_HEAD * 10).hex()
    for cut in range(1, 20, 2):
        with pytest.raises(TextDecodeError) as caught:
            decode_text(token[:-cut])
        assert "base64" not in str(caught.value)


def test_text_longer_than_the_bound_is_refused_before_decoding() -> None:
    assert decode_text("ab" * 16, max_bytes=16) == b"\xab" * 16
    for text in ("ab" * 17, encode_text(b"x" * 17)):
        with pytest.raises(TextDecodeError) as caught:
            decode_text(text, max_bytes=16)
        assert caught.value.problem == "too_long"
    with pytest.raises(TextDecodeError):
        decode_bytes(b"\xd2" * 17, max_bytes=16)


def test_unknown_format_is_a_caller_error() -> None:
    with pytest.raises(InvalidRequest):
        decode_text("00", "base32")
    with pytest.raises(InvalidRequest):
        encode_text(b"\x00", "hex", padded=True)


# -- transports -----------------------------------------------------------------------


def test_ble_writes_carry_mtu_minus_three_bytes_each() -> None:
    assert ble_writes(20) == 1
    assert ble_writes(21) == 2
    assert ble_writes(165) == 9           # 165 / 20
    assert ble_writes(165, 247) == 1
    assert ble_writes(245, 247) == 2
    assert ble_writes(1000, 517) == 2
    with pytest.raises(InvalidRequest):
        ble_writes(10, 22)


def test_ble_long_write_uses_prepare_writes_and_one_execute() -> None:
    assert ble_long_write_requests(20) == 1
    assert ble_long_write_requests(21) == 3    # two Prepare Writes of 18 + Execute
    assert ble_long_write_requests(165) == 11  # ceil(165 / 18) + 1
    assert ble_long_write_requests(165, 247) == 1
    with pytest.raises(InvalidRequest, match="512"):
        ble_long_write_requests(513, 517)


def test_nfc_short_apdus_chain_255_bytes_each_and_extended_take_one() -> None:
    assert nfc_apdus(255) == 1
    assert nfc_apdus(256) == 2
    assert nfc_apdus(600) == 3
    assert nfc_apdus(600, extended=True) == 1
    assert nfc_apdus(0) == 1


# ISO/IEC 18004 table 7, byte mode capacities (a sample of the table).
@pytest.mark.parametrize(
    ("version", "level", "capacity"),
    [(1, "L", 17), (1, "M", 14), (1, "Q", 11), (1, "H", 7), (2, "M", 26), (7, "M", 122),
     (10, "L", 271), (10, "H", 119), (40, "L", 2953), (40, "M", 2331), (40, "H", 1273)],
)
def test_qr_byte_capacity_matches_the_standard(version: int, level: str, capacity: int) -> None:
    assert qr_byte_capacity(version, level) == capacity


def test_qr_version_is_the_smallest_that_holds_the_bytes() -> None:
    for level in QR_LEVELS:
        for size in (1, 14, 15, 165, 260, 1000):
            version = qr_version(size, level)
            assert version is not None
            assert qr_byte_capacity(version, level) >= size
            assert version == 1 or qr_byte_capacity(version - 1, level) < size
    assert qr_version(2954, "L") is None
    assert qr_version(2953, "L") == 40


def test_footprint_gathers_every_figure() -> None:
    seen = transport_footprint(165)
    assert seen.hex_chars == 330
    assert seen.base64url_chars == len(encode_text(b"x" * 165)) == 220
    assert seen.ble_writes == {23: 9, 247: 1, 517: 1}
    assert (seen.nfc_short_apdus, seen.nfc_extended_apdus) == (1, 1)
    assert seen.qr_version_bytes["M"] == qr_version(165, "M")
    assert seen.qr_version_base64url["M"] == qr_version(220, "M")
    with pytest.raises(InvalidRequest):
        transport_footprint(-1)


@given(st.text(max_size=80) | st.text(alphabet="0123456789abcdefABCDEF-_+/= \n", max_size=80))
def test_any_text_decodes_to_its_one_canonical_form_or_raises_a_text_error(text: str) -> None:
    try:
        data = decode_text(text)
    except TextDecodeError:
        return
    body = text.strip()
    form = detect_format(body)
    assert form is TextFormat.HEX or encode_text(data) == body.rstrip("=")
    assert form is TextFormat.BASE64URL or data == bytes.fromhex(body)
