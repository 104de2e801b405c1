"""The one place the service turns bytes into text and back.

Tokens, proofs, challenges, chains, grants and keys travel in JSON as
unpadded base64url (RFC 4648 section 5). Kept to these two functions so the
service can switch to the library's encodings module in one edit.
"""

from __future__ import annotations

import base64
import binascii
import re

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def from_text(value: str) -> bytes:
    """Strictly decode unpadded base64url; raise ``ValueError`` on anything else."""
    if not _BASE64URL.fullmatch(value) or len(value) % 4 == 1:
        raise ValueError("not unpadded base64url (RFC 4648 section 5)")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except binascii.Error:
        raise ValueError("not unpadded base64url (RFC 4648 section 5)") from None
    if to_text(data) != value:
        # Unused trailing bits set: a second spelling of the same bytes.
        raise ValueError("not the canonical base64url of any bytes")
    return data


def to_text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
