"""COSE_Sign1 (RFC 9052 §4.2) for trunkkey: the one way a signed object is made and opened.

Also the envelope of a sealed token, a COSE_Encrypt0 (§5.2): its strict
layout and its Enc_structure live here beside the Sig_structure; the HPKE
that fills it lives in :mod:`trunkkey.sealed`.

Two layers:

* the **strict profile** that every trunkkey object uses: a tagged
  COSE_Sign1 in deterministic CBOR whose protected header holds exactly
  ``alg``, optionally ``kid``, and ``typ`` (RFC 9596), whose unprotected header
  is empty — COSE does not sign it, so nothing may live there — and whose
  signature is in its unique form and of a length one of trunkkey's
  algorithms has (64 bytes; ML-DSA-44 2420; the EdDSA + ML-DSA-65 and ES256 +
  ML-DSA-65 composites 3373, both halves required), its key's own: a length
  never names an algorithm, the key the header's kid finds does. Parsing the envelope is
  hand-written because it is on the hot path and its shape is fixed.

  Every token, proof, grant, chain link, revocation list, trust update, time
  sync and receipt is signed by :func:`sign1` and checked by
  :func:`signature_holds` (directly, or through :func:`open_sign1`); no other
  module builds a ``Sig_structure`` or calls a key's signature check, and a
  test fails if one does. Whatever names a signed object uses
  :func:`identity_of`: the SHA-256 of what was signed, never of the
  signature bytes, so no re-encoding of a signature yields a new name.
* a **standard verifier** (:func:`verify_sign1`) that accepts what RFC 9052
  allows — untagged messages, ``alg`` in the unprotected bucket, other
  headers — when the caller's key fixes the algorithm. It exists for
  conformance with other implementations, never for trunkkey tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import cbor2

from . import cbor
from ._sodium import equal, sha256
from .errors import DecodeError, SignatureError
from .keys import Algorithm, SigningKey, VerificationKey, unique_signature

if TYPE_CHECKING:
    from .signing import SigningBackend

COSE_SIGN1_TAG = 18
HDR_ALG, HDR_CRIT, HDR_CTY, HDR_KID, HDR_TYP = 1, 2, 3, 4, 16

SIG_STRUCTURE_PREFIX = b"\x84\x6aSignature1"  # ["Signature1", ...
#: The signature lengths of trunkkey's algorithms: Ed25519 and P-256 (64),
#: ML-DSA-44 (2420), both ML-DSA-65 composites (3373). The key then demands
#: its own; a length never picks an algorithm.
SIGNATURE_LENGTHS = frozenset(alg.signature_length for alg in Algorithm)


class Typ(IntEnum):
    """``typ`` values (RFC 9596) that separate trunkkey's signed objects.

    Values are CoAP Content-Formats from the Experimental Use range
    (65000-65535), which costs 3 bytes where a media-type string would cost 30.
    Every object a key signs carries its own, so a grant, a receipt or a
    time-sync message can never be passed off as a token, or the reverse.
    Media-type names, for documentation: ``application/trunkkey-<name>+cose``.
    """

    TOKEN = 65301
    PROOF = 65302
    GRANT = 65303
    RECEIPT = 65304
    TIME_SYNC = 65305
    REVOCATION_LIST = 65306
    TRUST_UPDATE = 65307
    CHECKPOINT = 65308
    LOG_ACK = 65309
    KEM_PROPOSAL = 65310


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4)."""
    return (
        SIG_STRUCTURE_PREFIX
        + cbor.head(2, len(protected)) + protected
        + cbor.head(2, len(external_aad)) + external_aad
        + cbor.head(2, len(payload)) + payload
    )


@functools.lru_cache(maxsize=1024)
def protected_header(algorithm: Algorithm, typ: Typ, kid: bytes | None) -> bytes:
    """The strict-profile protected header bytes (memoised: a pure function of its inputs)."""
    members: dict[int, Any] = {HDR_ALG: int(algorithm), HDR_TYP: int(typ)}
    if kid is not None:
        members[HDR_KID] = kid
    return cbor.encode(members)


def sign1(
    key: SigningBackend, payload: bytes, *, typ: Typ, include_kid: bool = True,
    external_aad: bytes = b"",
) -> bytes:
    """A strict-profile, tagged COSE_Sign1 over ``payload``, signed by ``key``.

    A :class:`SigningKey` signs in the unique form itself. Any other backend
    (an HSM, say) has its signature put into that form and checked under its
    public key here: a backend that signs with another key than it names, or
    returns anything but a signature, fails at signing, not in every car.
    """
    protected = protected_header(key.algorithm, typ, key.kid if include_kid else None)
    protected_item = cbor.head(2, len(protected)) + protected
    payload_item = cbor.head(2, len(payload)) + payload
    signature = key.sign(to_be_signed(protected_item, payload_item, external_aad))
    if type(key) is not SigningKey:
        signature = unique_signature(key.algorithm, signature)
        if not signature_holds(key.public_key, signature, protected_item, payload_item,
                               external_aad):
            raise SignatureError("the signing backend's signature does not verify under its key")
    return (b"\xd2\x84" + protected_item + b"\xa0" + payload_item
            + cbor.head(2, len(signature)) + signature)


def to_be_signed(protected_item: bytes, payload_item: bytes, external_aad: bytes = b"") -> bytes:
    """The Sig_structure over a message's own protected and payload bstr items (heads included)."""
    if external_aad:
        return SIG_STRUCTURE_PREFIX + protected_item + cbor.head(2, len(external_aad)) + (
            external_aad + payload_item
        )
    return SIG_STRUCTURE_PREFIX + protected_item + b"\x40" + payload_item


def signature_holds(
    key: VerificationKey, signature: bytes, protected_item: bytes, payload_item: bytes,
    external_aad: bytes = b"",
) -> bool:
    """THE signature rule for trunkkey's own objects: valid, and in its one unique form.

    ECDSA is malleable — if (r, s) verifies, so does (r, n - s) — and a
    malleable signature would give one signed object two encodings. trunkkey
    signs low-s only and accepts low-s only; libsodium already refuses
    non-canonical Ed25519 signatures.
    """
    return key.is_valid_unique_signature(
        signature, to_be_signed(protected_item, payload_item, external_aad)
    )


def identity_of(protected_item: bytes, payload_item: bytes) -> bytes:
    """A signed object's name: SHA-256 of the Sig_structure (empty external AAD).

    That is exactly what the signature covers — the protected header and the
    payload — so every encoding of the signature, and every fresh signature
    over the same content, names the same object.
    """
    return sha256(to_be_signed(protected_item, payload_item))


def signed_identity(message: bytes) -> bytes:
    """:func:`identity_of` a strict-profile COSE_Sign1 (not verified here)."""
    _, _, _, protected_item, payload_item = split_sign1(message)
    return identity_of(protected_item, payload_item)


@dataclass(frozen=True, slots=True)
class Opened:
    """A strict-profile COSE_Sign1 whose header and signature verified."""

    payload: bytes
    #: :func:`identity_of` the object.
    identity: bytes


def open_sign1(
    message: bytes, key: VerificationKey, *, typ: Typ, kid: bytes | None,
    external_aad: bytes = b"",
) -> Opened:
    """Open a strict-profile COSE_Sign1 that ``key`` must have signed as ``typ``.

    The protected header must be exactly ``{alg of key, kid (if given), typ}``
    and the signature must hold in its unique form. Raises
    :class:`DecodeError` for bytes off the profile and :class:`SignatureError`
    for another header or a signature that does not verify.
    """
    protected, payload, signature, protected_item, payload_item = split_sign1(message)
    if not equal(protected, protected_header(key.algorithm, typ, kid)):
        raise SignatureError(
            f"header is not {{alg of the key, {'kid, ' if kid is not None else ''}typ {typ.name}}}"
        )
    if not signature_holds(key, signature, protected_item, payload_item, external_aad):
        raise SignatureError(f"{typ.name.lower().replace('_', ' ')} signature does not verify")
    return Opened(payload, identity_of(protected_item, payload_item))


@dataclass(frozen=True, slots=True)
class Sign1Parts:
    """The pieces of a strict-profile COSE_Sign1, not yet verified."""

    protected: bytes
    payload: bytes
    signature: bytes
    #: The message bytes that the Sig_structure reuses verbatim: the protected
    #: bstr with its head, and the payload bstr with its head.
    protected_item: bytes
    payload_item: bytes

    @property
    def identity(self) -> bytes:
        """:func:`identity_of` this object."""
        return identity_of(self.protected_item, self.payload_item)


def _bstr_at(data: bytes, pos: int) -> tuple[int, int]:
    """Start and end of the content of the byte string whose head is at ``pos``."""
    ib = data[pos]
    if ib >> 5 != 2:
        raise DecodeError("expected a byte string")
    info = ib & 0x1F
    if info < 24:
        start, length = pos + 1, info
    elif info == 24:
        start, length = pos + 2, data[pos + 1]
        if length < 24:
            raise DecodeError("argument not in shortest form")
    elif info == 25:
        start, length = pos + 3, int.from_bytes(data[pos + 1 : pos + 3], "big")
        if length < 0x100:
            raise DecodeError("argument not in shortest form")
    else:
        # A 64 KiB+ byte string never fits the size caps of trunkkey objects.
        raise DecodeError("byte string length out of range")
    end = start + length
    if end > len(data):
        raise DecodeError("truncated byte string")
    return start, end


def parse_sign1(data: bytes) -> Sign1Parts:
    """Split a strict-profile COSE_Sign1; raise :class:`DecodeError` if it is not one."""
    return Sign1Parts(*split_sign1(data))


def split_sign1(data: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """:func:`parse_sign1` as a plain tuple, in :class:`Sign1Parts` field order (hot path)."""
    try:
        if data[0] != 0xD2:
            raise DecodeError("not a tagged COSE_Sign1 (tag 18)")
        if data[1] != 0x84:
            raise DecodeError("COSE_Sign1 must be an array of four items")
        p_start, p_end = _bstr_at(data, 2)
        if data[p_end] != 0xA0:
            raise DecodeError("unprotected header must be an empty map")
        pl_start, pl_end = _bstr_at(data, p_end + 1)
        s_start, s_end = _bstr_at(data, pl_end)
    except IndexError:
        raise DecodeError("truncated COSE_Sign1") from None
    if s_end != len(data):
        raise DecodeError("trailing bytes after COSE_Sign1")
    if s_end - s_start not in SIGNATURE_LENGTHS:
        raise DecodeError("signature must be 64, 2420 or 3373 bytes")
    return (
        data[p_start:p_end],
        data[pl_start:pl_end],
        data[s_start:s_end],
        data[2:p_end],
        data[p_end + 1 : pl_end],
    )


# -- COSE_Encrypt0 (RFC 9052 §5.2), the envelope of a sealed token ----------

COSE_ENCRYPT0_TAG = 16
#: A tagged COSE_Encrypt0's first byte (major type 6, tag 16): what marks a sealed token.
ENCRYPT0_LEAD = bytes([0xC0 | COSE_ENCRYPT0_TAG])
#: ``ek``, the HPKE encapsulated key (draft-ietf-cose-hpke): unprotected, as the draft says.
HDR_EK = -4
ENC_STRUCTURE_PREFIX = b"\x83\x68Encrypt0"  # ["Encrypt0", ...


def is_encrypt0(data: bytes) -> bool:
    """Whether ``data`` claims to be a tagged COSE_Encrypt0; says nothing of whether it opens."""
    return data[:1] == ENCRYPT0_LEAD


def enc_structure(protected: bytes, external_aad: bytes = b"") -> bytes:
    """The AAD of a COSE_Encrypt0 (RFC 9052 §5.3): ``["Encrypt0", protected, external_aad]``."""
    return (
        ENC_STRUCTURE_PREFIX
        + cbor.head(2, len(protected)) + protected
        + cbor.head(2, len(external_aad)) + external_aad
    )


def encrypt0(protected: bytes, ek: bytes, ciphertext: bytes) -> bytes:
    """A tagged COSE_Encrypt0 in trunkkey's sealed profile: ``16([protected, {-4: ek}, ct])``."""
    return (
        ENCRYPT0_LEAD + b"\x83" + cbor.head(2, len(protected)) + protected
        + b"\xa1\x23" + cbor.head(2, len(ek)) + ek
        + cbor.head(2, len(ciphertext)) + ciphertext
    )


def split_encrypt0(data: bytes) -> tuple[bytes, bytes, bytes]:
    """``(protected, ek, ciphertext)`` of a sealed-profile COSE_Encrypt0, or :class:`DecodeError`.

    The profile is as fixed as the signed one: tagged, a protected header
    (judged by the caller), an unprotected header holding ``ek`` alone — no
    ``kid``, nothing that could name the car — and an attached ciphertext,
    every length in its shortest form and nothing after it.
    """
    try:
        if data[0] != 0xD0:
            raise DecodeError("not a tagged COSE_Encrypt0 (tag 16)")
        if data[1] != 0x83:
            raise DecodeError("COSE_Encrypt0 must be an array of three items")
        p_start, p_end = _bstr_at(data, 2)
        if data[p_end] != 0xA1 or data[p_end + 1] != 0x23:
            raise DecodeError("unprotected header must be exactly {ek}")
        ek_start, ek_end = _bstr_at(data, p_end + 2)
        c_start, c_end = _bstr_at(data, ek_end)
    except IndexError:
        raise DecodeError("truncated COSE_Encrypt0") from None
    if c_end != len(data):
        raise DecodeError("trailing bytes after COSE_Encrypt0")
    return data[p_start:p_end], data[ek_start:ek_end], data[c_start:c_end]


class HeaderProblem(IntEnum):
    """Why a strict protected header was refused (mapped to reason codes by callers)."""

    MALFORMED = 1
    UNSUPPORTED = 2
    WRONG_TYPE = 3


@dataclass(frozen=True, slots=True)
class ProtectedHeader:
    alg: int
    typ: int
    kid: bytes | None


def decode_protected(protected: bytes) -> ProtectedHeader | HeaderProblem:
    """Decode a strict-profile protected header, or say what is wrong with it."""
    try:
        members = cbor.decode(protected)
    except DecodeError:
        return HeaderProblem.MALFORMED
    if type(members) is not dict:
        return HeaderProblem.MALFORMED
    if HDR_CRIT in members or not set(members) <= {HDR_ALG, HDR_KID, HDR_TYP}:
        # trunkkey v1 defines no critical or extra headers: refuse rather than ignore.
        return HeaderProblem.UNSUPPORTED
    alg, typ, kid = members.get(HDR_ALG), members.get(HDR_TYP), members.get(HDR_KID)
    if type(alg) is not int or (kid is not None and type(kid) is not bytes):
        return HeaderProblem.MALFORMED
    if type(typ) is not int:
        return HeaderProblem.WRONG_TYPE
    return ProtectedHeader(alg=alg, typ=typ, kid=kid)


# -- The standard (RFC 9052) verifier, for conformance -----------------------

#: Header parameters the standard verifier understands (RFC 9052 §3.1, RFC 9596).
_UNDERSTOOD = frozenset({HDR_ALG, HDR_CRIT, HDR_CTY, HDR_KID, 5, 6, HDR_TYP})


def _loads(data: bytes) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 -- cbor2 raises many types on hostile input
        raise DecodeError(f"not CBOR: {type(exc).__name__}") from None


def verify_sign1(
    message: bytes, key: VerificationKey, *, external_aad: bytes = b"",
    detached_payload: bytes | None = None,
) -> bytes:
    """Verify a standard COSE_Sign1 with ``key`` and return its payload.

    RFC 9052 allows more than trunkkey's profile: the tag may be absent, and
    ``alg`` may sit in either bucket. The key fixes the algorithm: an ``alg``
    anywhere that differs from the key's is an error, never a switch. Raises
    only :class:`DecodeError` or :class:`SignatureError`, whatever the input.
    """
    try:
        return _verify_sign1(message, key, external_aad, detached_payload)
    except (DecodeError, SignatureError):
        raise
    except Exception as exc:  # noqa: BLE001 -- hostile input: fail closed with our own error
        raise DecodeError(f"malformed COSE message ({type(exc).__name__})") from None


def _verify_sign1(
    message: bytes, key: VerificationKey, external_aad: bytes,
    detached_payload: bytes | None,
) -> bytes:
    if len(message) > 65536:
        raise DecodeError("COSE message too large")
    item = _loads(message)
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise DecodeError(f"CBOR tag {item.tag} is not COSE_Sign1")
        item = item.value
    # cbor2 6 decodes an array inside a tag as a tuple, cbor2 5 as a list.
    if type(item) not in (list, tuple) or len(item) != 4:
        raise DecodeError("COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected, payload, signature = item
    # ... and a map inside that tuple as an immutable mapping.
    if type(protected_bytes) is not bytes or not isinstance(unprotected, Mapping):
        raise DecodeError("malformed COSE_Sign1 headers")
    protected = _loads(protected_bytes) if protected_bytes else {}
    if not isinstance(protected, Mapping):
        raise DecodeError("protected header must be a map")
    if set(protected) & set(unprotected):
        raise DecodeError("a header parameter appears in both buckets")
    if HDR_CRIT in unprotected:
        raise DecodeError("crit must be protected")
    crit = protected.get(HDR_CRIT, [])
    if type(crit) not in (list, tuple) or (not crit and HDR_CRIT in protected):
        raise DecodeError("crit must be a non-empty array")
    for label in crit:
        # Labels are ints or text (RFC 9052 3.1); anything else, a map say,
        # is malformed — and would not even be hashable.
        if type(label) not in (int, str):
            raise DecodeError("crit labels must be integers or text strings")
        if label not in _UNDERSTOOD or label not in protected:
            raise DecodeError(f"critical header {label!r} not understood")
    alg = protected.get(HDR_ALG, unprotected.get(HDR_ALG))
    if alg is not None and alg != int(key.algorithm):
        raise SignatureError("alg does not match the verification key")
    if payload is None:
        if detached_payload is None:
            raise DecodeError("detached payload not supplied")
        payload = detached_payload
    elif detached_payload is not None:
        raise DecodeError("payload is attached; do not supply a detached one")
    if type(payload) is not bytes or type(signature) is not bytes:
        raise DecodeError("payload and signature must be byte strings")
    # RFC 9052 4.4: a protected bucket with no attributes enters the
    # Sig_structure as a zero-length bstr, even if the message sent h'A0'.
    key.verify(signature, sig_structure(protected_bytes if protected else b"", payload,
                                        external_aad))
    return payload
