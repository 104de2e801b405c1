"""The one place the service turns bytes into text and back.

Tokens, proofs, challenges, chains, grants and keys travel in JSON as
unpadded base64url (RFC 4648 section 5), read and written by the library's
:mod:`trunkkey.encodings`, so the service and the ``trunkkey`` command accept
and refuse exactly the same text (standard base64 is refused with a hint).
"""

from __future__ import annotations

from trunkkey.encodings import TextDecodeError, TextFormat, decode_text, encode_text


def from_text(value: str) -> bytes:
    """Strictly decode unpadded base64url; raise ``ValueError`` naming what is wrong otherwise."""
    if "=" in value:
        # JSON carries one spelling of each value: the unpadded one.
        raise ValueError("base64url here is written without '=' padding")
    try:
        return decode_text(value, TextFormat.BASE64URL, what="value")
    except TextDecodeError as exc:
        raise ValueError(str(exc)) from None


def to_text(data: bytes) -> str:
    return encode_text(data, TextFormat.BASE64URL)
