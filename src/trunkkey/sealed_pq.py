"""The post-quantum suite for sealed tokens: ML-KEM-768 + X25519 (hybrid KEM).

Same envelope as :mod:`trunkkey.sealed` — a tagged COSE_Encrypt0 with ``ek``
alone in the unprotected header and the padded token inside — under a
private-use ``alg`` (:data:`HPKE_PQ`, until COSE registers a hybrid
suite): HPKE with the ML-KEM-768 + X25519 hybrid KEM, HKDF-SHA256 and
ChaCha20-Poly1305, from ``cryptography`` (its Rust HPKE; pyhpke has no
ML-KEM). That API's one-shot seal takes ``info`` but no AAD, so this
profile's rule is: the Enc_structure ``["Encrypt0", protected, h'']`` goes
into HPKE ``info`` and ``aad`` is empty. The header is then bound through the
key schedule instead of the AEAD — either way a changed byte cannot open.

A sealed trunk token is ~1.4 KB here (the encapsulated key alone is 1120
bytes): a car that accepts this suite raises its ``max_token_size``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._hpke4 import PROTECTED
from ._keyfiles import read_private_file, write_private_file
from .cose import enc_structure, encrypt0
from .errors import DecodeError, InvalidRequest

#: COSE ``alg`` of the hybrid suite: private use (RFC 9053 §16.4: below -65536).
HPKE_PQ = -65610
PROTECTED_PQ = b"\xa1\x01\x3a\x00\x01\x00\x49"  # {1: -65610}
#: This profile's rule: the Enc_structure, bound through HPKE ``info``.
INFO_PQ = enc_structure(PROTECTED_PQ)
ENC_BYTES = 1120  # ML-KEM-768 ciphertext (1088) + X25519 share (32)
PUBLIC_BYTES = 1184 + 32  # ML-KEM-768 encapsulation key + X25519 public key
PRIVATE_BYTES = 64 + 32  # ML-KEM-768 seed (d || z) + X25519 private key
#: How much longer this suite's envelope is than HPKE-4's around the same
#: plaintext (its ``alg``, its ``ek`` and the ``ek``'s length head: 1 092
#: bytes): what a car holding a hybrid key adds to its cap for sealed bytes.
HYBRID_ROOM = len(encrypt0(PROTECTED_PQ, bytes(ENC_BYTES), b"")) - len(
    encrypt0(PROTECTED, bytes(32), b"")
)


#: PEM labels of this suite's key files. No standard PEM form exists yet for
#: the hybrid key, so the raw bytes (seed || X25519 key; encapsulation key
#: || X25519 public key) are armoured under labels of trunkkey's own.
PRIVATE_LABEL = "TRUNKKEY MLKEM768-X25519 PRIVATE KEY"
PUBLIC_LABEL = "TRUNKKEY MLKEM768-X25519 PUBLIC KEY"


def armour(label: str, raw: bytes) -> bytes:
    body = base64.b64encode(raw).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def unarmour(label: str, data: bytes) -> bytes:
    """The bytes inside a PEM block labelled ``label``, or :class:`DecodeError`."""
    text = data.decode("ascii", "replace").strip().splitlines()
    if len(text) < 3 or text[0] != f"-----BEGIN {label}-----" or (
        text[-1] != f"-----END {label}-----"
    ):
        raise DecodeError(f"not a {label}")
    try:
        return base64.b64decode("".join(text[1:-1]), validate=True)
    except ValueError:
        raise DecodeError(f"not a {label}") from None


def _suite() -> Any:
    from cryptography.hazmat.primitives import hpke  # noqa: PLC0415 -- only when sealing

    return hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                      hpke.AEAD.CHACHA20_POLY1305)


@dataclass(frozen=True, slots=True)
class CarHybridPublicKey:
    """A car's hybrid KEM public key: ML-KEM-768 encapsulation key || X25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != PUBLIC_BYTES:
            raise InvalidRequest(f"a car's ML-KEM-768 + X25519 key is {PUBLIC_BYTES} bytes")

    def to_pem(self) -> bytes:
        return armour(PUBLIC_LABEL, self.raw)

    @classmethod
    def from_pem(cls, data: bytes) -> CarHybridPublicKey:
        raw = unarmour(PUBLIC_LABEL, data)
        if len(raw) != PUBLIC_BYTES:
            raise DecodeError(f"a hybrid KEM public key is {PUBLIC_BYTES} bytes")
        return cls(raw)

    def _hpke(self) -> Any:
        from cryptography.hazmat.primitives import hpke  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import mlkem, x25519  # noqa: PLC0415

        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:1184]),
            x25519.X25519PublicKey.from_public_bytes(self.raw[1184:]),
        )


class CarHybridKemKey:
    """A car's hybrid KEM private key (ML-KEM-768 seed and X25519 key); no secret in repr."""

    __slots__ = ("_hpke", "_private", "_public")

    def __init__(self, private: bytes) -> None:
        if type(private) is not bytes or len(private) != PRIVATE_BYTES:
            raise InvalidRequest(f"a car's hybrid KEM private key is {PRIVATE_BYTES} bytes")
        from cryptography.hazmat.primitives import hpke  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import mlkem, x25519  # noqa: PLC0415

        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(private[:64])
        dh = x25519.X25519PrivateKey.from_private_bytes(private[64:])
        self._private = private
        self._hpke = hpke.MLKEM768X25519PrivateKey(kem, dh)
        self._public = CarHybridPublicKey(
            kem.public_key().public_bytes_raw() + dh.public_key().public_bytes_raw()
        )

    @classmethod
    def generate(cls) -> CarHybridKemKey:
        import secrets  # noqa: PLC0415

        return cls(secrets.token_bytes(PRIVATE_BYTES))

    @property
    def public_key(self) -> CarHybridPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        """The raw secret (seed || X25519 key), for the car's key store only."""
        return self._private

    def __repr__(self) -> str:
        return f"CarHybridKemKey(ML-KEM-768+X25519, public={self._public.raw[-32:].hex()[:16]}…)"

    def __reduce__(self) -> Any:
        raise TypeError("a car's KEM key is not pickled")

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the key to a new file readable only by its owner (mode 0600)."""
        write_private_file(path, armour(PRIVATE_LABEL, self._private), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CarHybridKemKey:
        raw = unarmour(PRIVATE_LABEL, read_private_file(path))
        if len(raw) != PRIVATE_BYTES:
            raise DecodeError(f"a hybrid KEM private key is {PRIVATE_BYTES} bytes")
        return cls(raw)


def seal_pq(padded: bytes, to: CarHybridPublicKey) -> bytes:
    """The padded token sealed to ``to`` with a fresh encapsulation."""
    sealed = _suite().encrypt(padded, to._hpke(), info=INFO_PQ)
    return encrypt0(PROTECTED_PQ, sealed[:ENC_BYTES], sealed[ENC_BYTES:])


def open_pq(enc: bytes, ciphertext: bytes, keys: Iterable[object]) -> bytes | None:
    """The padded plaintext, or ``None`` if none of the hybrid ``keys`` opens it."""
    if len(enc) != ENC_BYTES:
        return None
    suite = _suite()
    for key in keys:
        if isinstance(key, CarHybridKemKey):
            try:
                return bytes(suite.decrypt(enc + ciphertext, key._hpke, info=INFO_PQ))
            except Exception:  # noqa: BLE001, S112 -- InvalidTag or a bad share: not for this key
                continue
    return None
