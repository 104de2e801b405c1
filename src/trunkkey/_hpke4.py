"""HPKE-4 for sealed tokens, and which library does it.

HPKE-4 is DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base
mode, with empty ``info`` and the Enc_structure of the sealed token's fixed
protected header as AAD (draft-ietf-cose-hpke). trunkkey writes none of
HPKE itself:

* sealing is ``pyhpke``'s (the library python-cwt uses);
* opening is ``cryptography``'s compiled HPKE through its private binding
  ``hpke._decrypt_with_aad`` — its public API takes no AAD — used only
  after it passes a known answer (:func:`compiled_open`), else pyhpke's.

Everything here is imported on the first sealed token only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .cose import enc_structure

if TYPE_CHECKING:
    from pyhpke import CipherSuite

#: ``{1: 42}``: the protected header of every sealed token (so its first
#: eleven bytes are the same for every car, token and sender).
PROTECTED = b"\xa1\x01\x18\x2a"
#: The HPKE aad of every sealed token: the Enc_structure of its fixed header.
AAD = enc_structure(PROTECTED)


@functools.cache
def pyhpke_suite() -> CipherSuite:
    """pyhpke's HPKE-4, built once (it is immutable)."""
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId  # noqa: PLC0415 -- only when sealing

    return CipherSuite.new(
        KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
    )




#: A known answer for :func:`compiled_open`'s check: HPKE-4 with the
#: Enc_structure as AAD, sealed by pyhpke to the X25519 key ``_KAT_KEY``.
_KAT_KEY = bytes(range(32))
_KAT_SEALED = bytes.fromhex(
    "358072d6365880d1aeea329adf9121383851ed21a28e3b75e965d0d2cd166254f8c1457612cd"
    "b336fd50962bea24610fd31c6635eedbe65c7ed3e59d8afb1f06d63b4fdf908ff5840c0434cc"
)
_KAT_PLAINTEXT = b"trunkkey HPKE-4 known answer"


@functools.cache
def compiled_open() -> Any:
    """``cryptography``'s compiled HPKE-4 open with AAD, or ``None`` for pyhpke.

    ``cryptography``'s public HPKE API takes no AAD, which COSE-HPKE needs;
    its Rust binding ``hpke._decrypt_with_aad`` does, but it is private (kept
    for its RFC 9180 tests) and may change or go in any release. So it is
    used only if it is there and, on first use, opens a known answer sealed
    by pyhpke *and* refuses the same answer under another AAD (a version
    that ignored the AAD would fail here); otherwise every open goes through
    pyhpke. It halves the cost of an open (docs/performance.md).
    """
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust  # noqa: PLC0415
        from cryptography.hazmat.primitives import hpke  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PrivateKey,
        )

        decrypt = rust.hpke._decrypt_with_aad
        suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
        key = X25519PrivateKey.from_private_bytes(_KAT_KEY)
    except Exception:  # noqa: BLE001 -- any failure means "do not use it"
        # (UnsupportedAlgorithm, from an OpenSSL without X25519, is none of the usual four)
        return None

    def open_(sealed: bytes, private: Any) -> bytes:
        return bytes(decrypt(suite, sealed, private, None, AAD))

    def open_under_empty_aad(sealed: bytes) -> bytes:
        return bytes(decrypt(suite, sealed, key, None, b""))

    return open_ if _passes_known_answer(open_, open_under_empty_aad, key) else None


def _passes_known_answer(open_: Any, open_under_empty_aad: Any, key: Any) -> bool:
    """Whether ``open_`` opens the known answer with ``key`` and the same bytes
    are refused under another AAD."""
    try:
        if open_(_KAT_SEALED, key) != _KAT_PLAINTEXT:
            return False
    except Exception:  # noqa: BLE001 -- any failure means "do not use it"
        return False
    try:
        open_under_empty_aad(_KAT_SEALED)
    except Exception:  # noqa: BLE001 -- refused under another AAD: it binds the AAD
        return True
    return False


def hpke4_open(
    openssl_key: Any, pyhpke_key: Callable[[], Any], enc: bytes, ciphertext: bytes
) -> bytes | None:
    """HPKE-4 open of one sealed token with one car key: the padded plaintext,
    or ``None``. The one place a sealed token meets HPKE, whichever library
    runs under it (``pyhpke_key`` loads pyhpke's form of the key only if asked)."""
    compiled = compiled_open()
    try:
        if compiled is not None:
            return bytes(compiled(enc + ciphertext, openssl_key))
        recipient = pyhpke_suite().create_recipient_context(enc, pyhpke_key())
        return bytes(recipient.open(ciphertext, aad=AAD))
    except Exception:  # noqa: BLE001 -- either library raises several types; each means "not for us"
        return None


def pyhpke_seal(padded: bytes, to: bytes, ephemeral: bytes | None) -> tuple[bytes, bytes]:
    """``(enc, ciphertext)``: ``padded`` sealed to the X25519 public key ``to``,
    with a fresh ephemeral key unless ``ephemeral`` fixes it (known-answer
    vectors only)."""
    suite = pyhpke_suite()
    eks = None
    if ephemeral is not None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PrivateKey,
        )
        from pyhpke import KEMKeyPair  # noqa: PLC0415

        public = X25519PrivateKey.from_private_bytes(ephemeral).public_key().public_bytes_raw()
        eks = KEMKeyPair(suite.kem.deserialize_private_key(ephemeral),
                         suite.kem.deserialize_public_key(public))
    enc, sender = suite.create_sender_context(suite.kem.deserialize_public_key(to), eks=eks)
    return enc, sender.seal(padded, aad=AAD)
