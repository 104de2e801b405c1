"""Reading a token without verifying it — for debugging, never for decisions."""

from __future__ import annotations

from dataclasses import dataclass

from . import cbor
from .claims import TokenClaims, decode_claims
from .cose import HeaderProblem, ProtectedHeader, Typ, decode_protected, parse_sign1
from .errors import DecodeError

#: The largest token any :class:`~trunkkey.VerifierPolicy` can be set to accept.
MAX_INSPECT_BYTES = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class UnverifiedToken:
    """A token's header and claims as they claim to be. NOTHING here is verified."""

    header: ProtectedHeader
    claims: TokenClaims
    signature: bytes
    size: int


def inspect_unverified(token: bytes) -> UnverifiedToken:
    """Decode ``token`` WITHOUT checking its signature, its key or anything else.

    The name is loud on purpose: use this to debug, log or display a token,
    never to decide anything. Raises :class:`DecodeError` if it does not parse,
    and before parsing if it is longer than :data:`MAX_INSPECT_BYTES`.
    """
    cbor.refuse_oversized(token, MAX_INSPECT_BYTES, "token")
    parts = parse_sign1(token)
    header = decode_protected(parts.protected)
    if isinstance(header, HeaderProblem):
        raise DecodeError(f"protected header refused: {header.name.lower()}")
    return UnverifiedToken(
        header=header, claims=decode_claims(parts.payload), signature=parts.signature,
        size=len(token),
    )


def open_unverified(signed: bytes, typ: Typ) -> tuple[ProtectedHeader, bytes] | None:
    """The protected header and payload of a COSE_Sign1 of type ``typ``, UNVERIFIED.

    ``None`` if its header is refused or names another type; :class:`DecodeError`
    if it is no COSE_Sign1. For showing a grant or list, never for deciding.
    """
    parts = parse_sign1(signed)
    header = decode_protected(parts.protected)
    if isinstance(header, HeaderProblem) or header.typ != typ:
        return None
    return header, parts.payload
