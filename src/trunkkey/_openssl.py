"""Everything trunkkey asks of OpenSSL (through ``cryptography``): P-256 and PEM.

Imported by :mod:`trunkkey.keys` only when a P-256 key or a PEM file is used:
an Ed25519 car runs on libsodium alone, and loading OpenSSL's bindings and
serialisation costs a waking process tens of milliseconds and ~10 MB
(``docs/performance.md``, "Cold start").
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import InvalidRequest

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def p256_public(point: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key at ``x || y``; ValueError unless OpenSSL finds it on the curve."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + point)


def p256_verify(key: ec.EllipticCurvePublicKey, r: int, s: int, message: bytes) -> bool:
    try:
        key.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def p256_sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA P-256 over SHA-256 as raw r || s (either s: the caller picks the form)."""
    r, s = decode_dss_signature(key.sign(message, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def p256_generate() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def p256_private(scalar: int) -> ec.EllipticCurvePrivateKey:
    """ValueError for a scalar outside the group's order."""
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ed25519_public(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def ed25519_private(seed: bytes) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def public_parts(key: object) -> tuple[str, bytes] | None:
    """``("EdDSA", raw)`` or ``("ES256", x || y)`` for a key trunkkey uses, else None."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA", key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        point = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return "ES256", point[1:]
    return None


def private_parts(key: object) -> tuple[str, bytes | ec.EllipticCurvePrivateKey] | None:
    """``("EdDSA", seed)`` or ``("ES256", key)`` for a key trunkkey uses, else None."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return "EdDSA", seed
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    return None


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> object:
    """ValueError or TypeError for anything but a PEM public key."""
    return serialization.load_pem_public_key(data)


def private_pem(key: PrivateKey, password: bytes | None) -> bytes:
    if password is not None and (type(password) is not bytes or not password):
        # b"" (a password from an unset variable) wrote the key unencrypted, to a
        # caller who believed it encrypted.
        raise InvalidRequest("password must be non-empty bytes (None: not encrypted)")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_pem(data: bytes, password: bytes | None) -> object:
    """ValueError or TypeError for anything but a PEM private key (or a wrong password)."""
    return serialization.load_pem_private_key(data, password=password)
