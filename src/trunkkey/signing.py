"""What signs a trunkkey object: a private key in memory, or one that never leaves a token.

Every signed object goes through :func:`trunkkey.cose.sign1`, which asks its
key for four things only — the algorithm, the key id, the public key and a
signature over the bytes it hands over. :class:`SigningBackend` names those
four: a :class:`~trunkkey.SigningKey` is one, and so is a
:class:`~trunkkey.pkcs11.Pkcs11Signer` whose private key stays in an HSM.

(``trunkkey.authority.Signer`` is another thing: the key a *verifier* expects
a token's signature from.)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .errors import InvalidRequest
from .keys import Algorithm, SigningKey, VerificationKey


@runtime_checkable
class SigningBackend(Protocol):
    """Anything that signs with one private key of a fixed algorithm.

    ``sign`` returns the raw 64-byte signature over exactly the bytes given:
    Ed25519, or ECDSA P-256 with SHA-256 as ``r || s``. A backend need not
    produce the low-s form: :func:`trunkkey.cose.sign1` puts every signature
    into trunkkey's one form (:func:`trunkkey.keys.unique_signature`) and
    checks it under :attr:`public_key` before it leaves.
    """

    @property
    def algorithm(self) -> Algorithm:
        """The algorithm the private key signs with; the key decides, never a message."""
        ...

    @property
    def kid(self) -> bytes:
        """The key id objects name in their header: :attr:`public_key`'s ``kid``."""
        ...

    @property
    def public_key(self) -> VerificationKey:
        """The public half, as cars and verifiers are given it."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature over ``message``."""
        ...


def signing_backend(key: object, what: str) -> SigningBackend:
    """``key`` if it is a backend whose algorithm and kid are its public key's; refuse otherwise.

    Checked once, where a key is handed to trunkkey, so that a backend naming
    another key's kid is refused before it signs anything.
    """
    if type(key) is SigningKey:
        return key  # consistent by construction, and the common case on hot paths
    if not isinstance(key, SigningBackend):
        raise InvalidRequest(f"{what} must be a trunkkey.SigningKey or another SigningBackend")
    public = key.public_key
    if not isinstance(public, VerificationKey):
        raise InvalidRequest(f"{what}.public_key must be a trunkkey.VerificationKey")
    if key.algorithm is not public.algorithm or key.kid != public.kid:
        raise InvalidRequest(f"{what} names another algorithm or kid than its public key's")
    return key
