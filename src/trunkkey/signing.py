"""What signs a trunkkey object: a private key in memory, or one that never leaves a token.

Every signed object goes through :func:`trunkkey.cose.sign1`, which asks its
key for four things only — the algorithm, the key id, the public key and a
signature over the bytes it hands over. :class:`SigningBackend` names those
four: a :class:`~trunkkey.SigningKey` is one, and so is a
:class:`~trunkkey.pkcs11.Pkcs11Signer` whose private key stays in an HSM, and
so is a :class:`CompositeSigner`: a hybrid root whose classical half is
another backend (a P-256 key in an HSM) and whose ML-DSA-65 half is in memory.

(``trunkkey.authority.Signer`` is another thing: the key a *verifier* expects
a token's signature from.)
"""

from __future__ import annotations

import os
from typing import NoReturn, Protocol, runtime_checkable

from . import _mldsa
from .errors import InvalidRequest
from .keys import Algorithm, SigningKey, VerificationKey


@runtime_checkable
class SigningBackend(Protocol):
    """Anything that signs with one private key of a fixed algorithm.

    ``sign`` returns the raw signature over exactly the bytes given: Ed25519,
    or ECDSA P-256 with SHA-256 as ``r || s`` (64 bytes); or the algorithm's
    own (ML-DSA-44, a composite). A backend need not
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
        """The signature over ``message``."""
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


#: The composite whose classical half is a key of this algorithm.
_COMPOSITE_OF = {Algorithm(c.classical_alg): Algorithm(alg) for alg, c in _mldsa.COMPOSITES.items()}


class CompositeSigner:
    """A hybrid root (:attr:`Algorithm.hybrid`) whose classical half is another backend.

    The classical half signs where that backend keeps its key -- a P-256 key in
    an HSM (:class:`~trunkkey.pkcs11.Pkcs11Signer`) gives
    :attr:`Algorithm.ES256_MLDSA65` -- and the ML-DSA-65 half signs in this
    process from its 32-byte seed, which the caller keeps as it keeps any
    secret: HSMs that do ML-DSA are rare, and the composite needs both halves.
    Its signatures are the composite's, exactly as a :class:`SigningKey` of
    the same algorithm makes them (:func:`trunkkey.cose.sign1` puts a high-s
    P-256 half into the low-s form and checks the whole before it leaves).
    """

    __slots__ = ("__secret", "_public")

    def __init__(self, mldsa_seed: bytes, classical: SigningBackend) -> None:
        classical = signing_backend(classical, "classical")
        algorithm = _COMPOSITE_OF.get(classical.algorithm)
        if algorithm is None:
            raise InvalidRequest("a composite's classical half is an Ed25519 or P-256 key")
        if type(mldsa_seed) is not bytes or len(mldsa_seed) != 32:
            raise InvalidRequest("an ML-DSA-65 seed is 32 bytes")
        self.__secret = _mldsa.Secret(algorithm.value, mldsa_seed, classical)
        self._public = VerificationKey(algorithm, self.__secret.public_raw())

    @classmethod
    def generate(cls, classical: SigningBackend) -> tuple[CompositeSigner, bytes]:
        """A fresh ML-DSA-65 seed beside ``classical``: the signer, and the seed to keep."""
        seed = os.urandom(32)
        return cls(seed, classical), seed

    @property
    def algorithm(self) -> Algorithm:
        return self._public.algorithm

    @property
    def kid(self) -> bytes:
        return self._public.kid

    @property
    def public_key(self) -> VerificationKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        """ML-DSA-65 here, then the classical half by its backend: the composite signature."""
        return self.__secret.sign(message)

    def __repr__(self) -> str:
        return f"CompositeSigner(alg={self.algorithm.cose_name}, kid={self.kid.hex()})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a CompositeSigner cannot be pickled: keep its seed explicitly")
