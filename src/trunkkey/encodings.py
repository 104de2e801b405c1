"""The text forms of a token (hex, base64url) and the room it takes on BLE, NFC and QR.

A token, a proof and a chain are bytes. People and backends move them as
text: hex in logs and shells, base64url in URLs, JSON and QR codes. This is
the one reader and writer of those forms, strict and bounded:

* **hex**: an even number of hex digits, either case;
* **base64url** (RFC 4648 section 5): unpadded as written here, padded
  accepted only with exactly the right ``=`` padding; the unused low bits of
  the last character must be zero, so each byte string has one text form;
* **standard base64** (``+`` and ``/``) is refused with a hint, never
  guessed at: a token pasted through a tool that re-encoded it is better
  refused than silently read;
* surrounding whitespace (a file's final newline) is ignored; whitespace
  inside, and every other character, is refused.

Errors are :class:`TextDecodeError` (a :class:`~trunkkey.DecodeError`) with a
stable :attr:`~TextDecodeError.problem` code and a message that names the
form it tried: odd-length hex says so, not "not valid base64url".

The transport functions compute, from a size in bytes, how many Bluetooth LE
ATT writes, NFC APDUs or which QR version a payload needs; they are
arithmetic over the specifications' rules, so they hold for any size.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import DecodeError, InvalidRequest

__all__ = [
    "BLE_MAX_ATTRIBUTE_BYTES",
    "MAX_TEXT_BYTES",
    "QR_LEVELS",
    "TextDecodeError",
    "TextFormat",
    "TransportFootprint",
    "ble_long_write_requests",
    "ble_writes",
    "decode_bytes",
    "decode_text",
    "detect_format",
    "encode_text",
    "nfc_apdus",
    "qr_byte_capacity",
    "qr_version",
    "transport_footprint",
]

#: The largest decoded value :func:`decode_text` returns by default: every
#: trunkkey object is far smaller (a token is capped at 64 KiB by policy).
MAX_TEXT_BYTES = 65536


class TextFormat(StrEnum):
    """A text form of bytes."""

    HEX = "hex"
    BASE64URL = "base64url"


class TextDecodeError(DecodeError):
    """Text that is not the bytes it claims to be. ``problem`` is a stable code:

    ``empty``, ``too_long``, ``not_ascii``, ``whitespace``, ``odd_length_hex``,
    ``not_hex``, ``standard_base64``, ``bad_padding``, ``not_base64url``,
    ``not_canonical``.
    """

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem


_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")
_B64URL_BODY = re.compile(r"[A-Za-z0-9_-]+")
_B64_STANDARD = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def encode_text(data: bytes, fmt: TextFormat | str = TextFormat.BASE64URL, *,
                padded: bool = False) -> str:
    """``data`` as hex (lower case) or base64url (unpadded unless ``padded``)."""
    form = _format(fmt)
    if form is TextFormat.HEX:
        if padded:
            raise InvalidRequest("hex has no padding")
        return bytes(data).hex()
    text = base64.urlsafe_b64encode(bytes(data)).decode("ascii")
    return text if padded else text.rstrip("=")


def detect_format(text: str) -> TextFormat:
    """Which form ``text`` is written in: hex if it is hex digits only, else base64url.

    A base64url string that happens to be all hex digits is read as hex. A
    trunkkey token cannot be one: its first byte, 0xD2, begins its base64url
    form with ``0`` followed by a letter from ``g`` to ``v``.
    """
    stripped = text.strip()
    return TextFormat.HEX if _HEX_DIGITS.fullmatch(stripped) else TextFormat.BASE64URL


def decode_text(text: str | bytes, fmt: TextFormat | str | None = None, *,
                max_bytes: int = MAX_TEXT_BYTES, what: str = "value") -> bytes:
    """The bytes ``text`` encodes, in ``fmt`` or (None) the form :func:`detect_format` finds.

    Refuses more than ``max_bytes`` decoded bytes before decoding anything.
    ``what`` names the value in error messages ("token", "--proof").
    """
    body = _ascii(text, what).strip()
    if not body:
        raise TextDecodeError("empty", f"{what} is empty")
    if any(ch.isspace() for ch in body):
        raise TextDecodeError("whitespace", f"{what} has whitespace inside it")
    form = detect_format(body) if fmt is None else _format(fmt)
    if form is TextFormat.HEX:
        _bound(len(body) // 2, max_bytes, what)
        return _hex(body, what, detected=fmt is None)
    _bound(len(body.rstrip("=")) * 3 // 4, max_bytes, what)
    return _base64url(body, what, detected=fmt is None)


def decode_bytes(data: bytes, fmt: TextFormat | str | None = None, *,
                 max_bytes: int = MAX_TEXT_BYTES, what: str = "value") -> bytes:
    """Raw CBOR as given, or the bytes its text form encodes.

    With ``fmt`` None, a first byte of 0x80 or above is raw CBOR: every
    trunkkey object begins with an array or a tag head, and no text form
    has a byte that high.
    """
    if fmt is None and data[:1] and data[0] >= 0x80:
        _bound(len(data), max_bytes, what)
        return bytes(data)
    return decode_text(data, fmt, max_bytes=max_bytes, what=what)


def _format(fmt: TextFormat | str) -> TextFormat:
    try:
        return TextFormat(fmt)
    except ValueError:
        raise InvalidRequest(f"unknown text format {fmt!r}: use hex or base64url") from None


def _ascii(text: str | bytes, what: str) -> str:
    try:
        return text.decode("ascii") if isinstance(text, bytes) else text.encode("ascii").decode()
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise TextDecodeError(
            "not_ascii", f"{what} is not hex or base64url text (it has non-ASCII bytes)"
        ) from None


def _bound(size: int, max_bytes: int, what: str) -> None:
    if size > max_bytes:
        raise TextDecodeError("too_long", f"{what} is longer than {max_bytes} bytes")


def _hex(body: str, what: str, *, detected: bool) -> bytes:
    if not _HEX_DIGITS.fullmatch(body):
        bad = next(ch for ch in body if ch not in "0123456789abcdefABCDEF")
        raise TextDecodeError("not_hex", f"{what} is not valid hex ({bad!r} is not a hex digit)")
    if len(body) % 2:
        seen = "looks like hex but has" if detected else "has"
        raise TextDecodeError(
            "odd_length_hex",
            f"{what} {seen} an odd number of hex digits ({len(body)}): "
            "a digit is missing or extra (truncated?)",
        )
    return bytes.fromhex(body)


def _base64url(body: str, what: str, *, detected: bool) -> bytes:
    unpadded = body.rstrip("=")
    if not _B64URL_BODY.fullmatch(unpadded) or "=" in unpadded:
        if _B64_STANDARD.fullmatch(body) and ("+" in body or "/" in body):
            raise TextDecodeError(
                "standard_base64",
                f"{what} is standard base64 ('+' or '/'), not base64url: "
                "write '-' for '+' and '_' for '/' (and drop the '=' padding)",
            )
        bad = next((ch for ch in unpadded if not _B64URL_BODY.fullmatch(ch)), "=")
        form = "hex or base64url text" if detected else "valid base64url"
        raise TextDecodeError("not_base64url", f"{what} is not {form} ({bad!r} is in neither)"
                              if detected else f"{what} is not {form} ({bad!r})")
    padding = len(body) - len(unpadded)
    if len(unpadded) % 4 == 1 or (padding and (len(body) % 4 or padding > 2)):
        raise TextDecodeError(
            "bad_padding", f"{what} is not valid base64url (wrong length or '=' padding)"
        )
    try:
        data = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover -- excluded by the checks above
        raise TextDecodeError("not_base64url", f"{what} is not valid base64url") from None
    if encode_text(data) != unpadded:
        raise TextDecodeError(
            "not_canonical", f"{what} is not canonical base64url (its last character's "
            "unused bits are not zero): a character was changed or the text cut"
        )
    return data


# -- transports ------------------------------------------------------------------

#: The longest attribute value ATT allows (Bluetooth Core, Vol 3, Part F, 3.2.9).
BLE_MAX_ATTRIBUTE_BYTES = 512
#: The default ATT_MTU, and the sizes most phones negotiate.
BLE_MTUS = (23, 247, 517)


def ble_writes(size: int, mtu: int = 23) -> int:
    """ATT Write Commands (or notifications) to carry ``size`` bytes chunked by the app.

    Each carries ATT_MTU - 3 bytes of value (1 opcode + 2 handle bytes).
    """
    _check_size(size)
    if mtu < 23:
        raise InvalidRequest("ATT_MTU is at least 23")
    return math.ceil(size / (mtu - 3))


def ble_long_write_requests(size: int, mtu: int = 23) -> int:
    """ATT requests to write ``size`` bytes as one attribute value (a reliable "long write").

    Up to MTU - 3 bytes fit one Write Request; beyond that each Prepare
    Write Request carries MTU - 5 (2 more bytes of offset), then one Execute
    Write Request. An attribute holds at most 512 bytes: larger is refused.
    """
    _check_size(size)
    if mtu < 23:
        raise InvalidRequest("ATT_MTU is at least 23")
    if size > BLE_MAX_ATTRIBUTE_BYTES:
        raise InvalidRequest(
            f"{size} bytes exceed one attribute's {BLE_MAX_ATTRIBUTE_BYTES}: chunk them instead"
        )
    if size <= mtu - 3:
        return 1
    return math.ceil(size / (mtu - 5)) + 1


#: Data bytes in one command APDU (ISO/IEC 7816-4): Lc of one byte, or of three.
NFC_SHORT_MAX = 255
NFC_EXTENDED_MAX = 65535


def nfc_apdus(size: int, *, extended: bool = False) -> int:
    """Command APDUs to send ``size`` bytes: short APDUs chained (CLA bit 0x10), or extended."""
    _check_size(size)
    return max(1, math.ceil(size / (NFC_EXTENDED_MAX if extended else NFC_SHORT_MAX)))


#: Error-correction levels, weakest first: they recover about 7, 15, 25 and 30 %.
QR_LEVELS = ("L", "M", "Q", "H")

# ISO/IEC 18004 table 9, per version 1..40: error-correction codewords per
# block, and number of blocks. Spec data, not figures about trunkkey.
_QR_EC_PER_BLOCK = {
    "L": (7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28,
          28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "M": (10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26,
          26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28),
    "Q": (13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30,
          28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
    "H": (17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28,
          30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30),
}
_QR_BLOCKS = {
    "L": (1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8,
          8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25),
    "M": (1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16,
          17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49),
    "Q": (1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20,
          23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68),
    "H": (1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25,
          25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81),
}


def _qr_data_modules(version: int) -> int:
    """Modules left for codewords once the function patterns are drawn."""
    modules = (16 * version + 128) * version + 64
    if version >= 2:
        alignments = version // 7 + 2
        modules -= (25 * alignments - 10) * alignments - 55
        if version >= 7:
            modules -= 36  # the two version-information areas
    return modules


def qr_byte_capacity(version: int, level: str) -> int:
    """How many bytes one QR code of ``version`` and ``level`` holds in byte mode."""
    if level not in QR_LEVELS or not 1 <= version <= 40:
        raise InvalidRequest("a QR version is 1 to 40 and a level one of L, M, Q, H")
    data_bits = 8 * (_qr_data_modules(version) // 8
                     - _QR_EC_PER_BLOCK[level][version - 1] * _QR_BLOCKS[level][version - 1])
    header = 4 + (8 if version <= 9 else 16)  # mode indicator, character count
    return (data_bits - header) // 8


def qr_version(size: int, level: str = "M") -> int | None:
    """The smallest QR version holding ``size`` bytes in byte mode, or None if none does."""
    _check_size(size)
    for version in range(1, 41):
        if qr_byte_capacity(version, level) >= size:
            return version
    return None


def _check_size(size: int) -> None:
    if type(size) is not int or size < 0:
        raise InvalidRequest("a size is a whole number of bytes, zero or more")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFootprint:
    """What one object of ``size`` bytes takes as text and on each transport."""

    size: int
    hex_chars: int
    base64url_chars: int
    #: ATT writes of MTU - 3 bytes, by ATT_MTU (23, 247, 517).
    ble_writes: dict[int, int]
    nfc_short_apdus: int
    nfc_extended_apdus: int
    #: The smallest QR version by level, for the raw bytes in byte mode.
    qr_version_bytes: dict[str, int | None]
    #: The same for the base64url text (for scanners that pass on text only).
    qr_version_base64url: dict[str, int | None]


def transport_footprint(size: int) -> TransportFootprint:
    """Every figure of :class:`TransportFootprint` for ``size`` bytes."""
    _check_size(size)
    text = math.ceil(size * 4 / 3)
    return TransportFootprint(
        size=size, hex_chars=2 * size, base64url_chars=text,
        ble_writes={mtu: ble_writes(size, mtu) for mtu in BLE_MTUS},
        nfc_short_apdus=nfc_apdus(size), nfc_extended_apdus=nfc_apdus(size, extended=True),
        qr_version_bytes={level: qr_version(size, level) for level in QR_LEVELS},
        qr_version_base64url={level: qr_version(text, level) for level in QR_LEVELS},
    )
