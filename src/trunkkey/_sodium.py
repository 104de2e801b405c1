"""The libsodium calls on trunkkey's hot paths: Ed25519 sign, verify and the point
check, and the digests and comparison every decision needs (SHA-256, keyed
BLAKE2b, constant-time equality).

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

The digests are libsodium's rather than ``hashlib``'s and ``hmac``'s because
importing either loads OpenSSL's libcrypto (``_hashlib``): 3.4 MiB of
resident memory and about 5 ms on every wake of a car that already has
libsodium loaded and needs nothing else from OpenSSL (measured with
``python -m tools.bench.cold_start``). The answers are the same bytes
(``tests/test_sodium_digests.py``).
"""

from __future__ import annotations

import functools

# hmac.compare_digest is this very function when OpenSSL is not loaded
# (hmac.py falls back to it): the same constant-time comparison, without libcrypto.
from _operator import _compare_digest
from collections.abc import Callable

import nacl.bindings
import nacl.exceptions

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32
SHA256_BYTES = 32
BLAKE2B_PERSON_BYTES = 16


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


def _binding_sha256(data: bytes) -> bytes:
    return nacl.bindings.crypto_hash_sha256(data)


def _binding_blake2b(data: bytes, size: int, person: bytes) -> bytes:
    return nacl.bindings.crypto_generichash_blake2b_salt_personal(
        data, digest_size=size, person=person
    )


_Sha256 = Callable[[bytes], bytes]
_Blake2b = Callable[[bytes, int, bytes], bytes]


def _direct_digests() -> tuple[_Sha256, _Blake2b] | None:
    # PyNaCl's own wrappers allocate and check on every call (3 us for a
    # SHA-256 that takes 0.6, 13 us for a BLAKE2b the ledger computes for
    # every row it checks on opening), so the cffi functions are called as
    # the signature check calls them, with the public bindings as fallback.
    try:
        from nacl._sodium import ffi, lib  # noqa: PLC0415 -- optional: PyNaCl's private module
        raw_sha256 = lib.crypto_hash_sha256
        raw_blake2b = lib.crypto_generichash_blake2b_salt_personal
        null, new, buffer = ffi.NULL, ffi.new, ffi.buffer
    except (ImportError, AttributeError):
        return None
    salt = new("unsigned char[]", BLAKE2B_PERSON_BYTES)  # zeros, as hashlib's default

    def sha256(data: bytes) -> bytes:
        out = new("unsigned char[]", SHA256_BYTES)
        raw_sha256(out, data, len(data))
        digest: bytes = buffer(out, SHA256_BYTES)[:]
        return digest

    def blake2b(data: bytes, size: int, person: bytes) -> bytes:
        if not (1 <= size <= 64 and len(person) <= BLAKE2B_PERSON_BYTES):
            raise ValueError("BLAKE2b: 1 to 64 digest bytes, a person of at most 16")
        padded = new("unsigned char[]", BLAKE2B_PERSON_BYTES)
        padded[0:len(person)] = person
        out = new("unsigned char[]", size)
        if raw_blake2b(out, size, data, len(data), null, 0, salt, padded) != 0:
            raise RuntimeError("libsodium BLAKE2b failed")
        digest: bytes = buffer(out, size)[:]
        return digest

    return sha256, blake2b


_found = _direct()
#: ``ed25519_open(signature + message, public_key) -> bool``
ed25519_open: Callable[[bytes, bytes], bool] = _binding_open if _found is None else _found[0]
#: ``ed25519_sign(message, secret_key) -> 64-byte signature``
ed25519_sign: Callable[[bytes, bytes], bytes] = _binding_sign if _found is None else _found[1]
DIRECT = _found is not None
_digests = _direct_digests()
#: ``sha256(data) -> 32-byte digest``
sha256: Callable[[bytes], bytes] = _binding_sha256 if _digests is None else _digests[0]
#: ``blake2b(data, digest_size, person) -> digest`` (BLAKE2b, no key, zero salt,
#: ``person`` zero-padded to 16 bytes: hashlib.blake2b's answer for the same).
blake2b: Callable[[bytes, int, bytes], bytes] = (
    _binding_blake2b if _digests is None else _digests[1]
)


def equal(a: bytes, b: bytes) -> bool:
    """Whether ``a == b``, in time that depends on their lengths only (hmac.compare_digest)."""
    return _compare_digest(a, b)


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
