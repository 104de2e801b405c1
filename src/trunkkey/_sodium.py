"""The libsodium calls on trunkkey's hot paths: Ed25519 sign, verify and the point check.

PyNaCl's ``nacl.bindings.crypto_sign_open`` allocates an output buffer,
copies the verified message into it and returns it; trunkkey only needs the
yes or no, and libsodium's ``crypto_sign_open`` accepts NULL for both outputs
(it then copies nothing). Calling it through PyNaCl's own cffi module saves
about 1 µs of each 41 µs verification, measured (``python -m tools.bench.run``).
Signing likewise copies only the 64 signature bytes out.

Both fall back to the public PyNaCl bindings when its cffi module does not
look as expected, so a PyNaCl release that moves it costs speed, never
correctness. The Wycheproof vectors (``tests/test_wycheproof.py``) run
through whichever path is in use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import nacl.bindings
import nacl.exceptions

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


def _binding_open(signed: bytes, public: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signed, public)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _binding_sign(message: bytes, secret: bytes) -> bytes:
    return nacl.bindings.crypto_sign(message, secret)[:SIGNATURE_BYTES]


_Open = Callable[[bytes, bytes], bool]
_Sign = Callable[[bytes, bytes], bytes]


def _direct() -> tuple[_Open, _Sign] | None:
    try:
        from nacl._sodium import ffi, lib  # noqa: PLC0415 -- optional: PyNaCl's private module
        raw_open, raw_sign = lib.crypto_sign_open, lib.crypto_sign
        null, new, buffer = ffi.NULL, ffi.new, ffi.buffer
    except (ImportError, AttributeError):
        return None

    def open_(signed: bytes, public: bytes) -> bool:
        # ``public`` is 32 bytes and ``signed`` at least 64: the callers
        # (VerificationKey, which checks lengths when built) guarantee it,
        # and libsodium reads exactly that much.
        status: int = raw_open(null, null, signed, len(signed), public)
        return status == 0

    def sign(message: bytes, secret: bytes) -> bytes:
        out = new("unsigned char[]", len(message) + SIGNATURE_BYTES)
        if raw_sign(out, null, message, len(message), secret) != 0:
            raise RuntimeError("libsodium crypto_sign failed")
        signature: bytes = buffer(out, SIGNATURE_BYTES)[:]
        return signature

    return open_, sign


_found = _direct()
#: ``ed25519_open(signature + message, public_key) -> bool``
ed25519_open: Callable[[bytes, bytes], bool] = _binding_open if _found is None else _found[0]
#: ``ed25519_sign(message, secret_key) -> 64-byte signature``
ed25519_sign: Callable[[bytes, bytes], bytes] = _binding_sign if _found is None else _found[1]
DIRECT = _found is not None


@functools.lru_cache(maxsize=1024)
def _is_ed25519_point(raw: bytes) -> bool:
    # libsodium: canonical encoding, on the curve, not of small order, and in
    # the prime-order subgroup. The check costs 0.7-0.9 of a verification
    # (a scalar multiplication by the group order), and the keys a verifier
    # sees repeat (issuers, roots, a courier's device): the answer depends on
    # the 32 bytes alone, so it is kept for the last 1024 keys seen.
    valid: bool = nacl.bindings.crypto_core_ed25519_is_valid_point(raw)
    return valid


def ed25519_point_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not an Ed25519 public key trunkkey accepts, or ``None``.

    The one check every Ed25519 :class:`~trunkkey.VerificationKey` passes,
    however it is built. libsodium's verify refuses small-order and
    non-canonical keys, but a key with a torsion part (a genuine key plus a
    point of small order) verifies about one signature in eight made for it:
    held anywhere, it would be a second public key for one secret. So a key is
    refused when it is built, and a token, grant or update that carries one is
    malformed.
    """
    if len(raw) != PUBLIC_KEY_BYTES:
        return "an Ed25519 public key is 32 bytes"
    if not _is_ed25519_point(raw):
        return ("not a valid Ed25519 point (non-canonical, off the curve, of small order, "
                "or outside the prime-order group)")
    return None
