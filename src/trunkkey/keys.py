"""Signing and verification keys that know their algorithm.

A key is made for exactly one algorithm and verification never takes the
algorithm from a message: the key decides (the lesson of JWT ``alg: none`` and
of algorithm confusion). Ed25519 runs on libsodium through PyNaCl, measured
faster than OpenSSL for both signing and verifying (see ``tools/bench/``);
ECDSA P-256, the curve automotive secure elements always offer, runs on
OpenSSL through ``cryptography``.

Private key material never appears in ``repr``/``str``, refuses to be pickled,
is exported only through methods that say so, and is written to files that
only the owner can read.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

import nacl.bindings

from . import _cosekey, _mldsa, cbor
from ._algorithms import _P256_HALF_ORDER, _P256_ORDER

# Re-exported: ``Algorithm`` has always been imported from here.
from ._algorithms import Algorithm as Algorithm  # noqa: PLC0414
from ._algorithms import algorithm_of_raw_key as algorithm_of_raw_key  # noqa: PLC0414
from ._algorithms import unique_signature as unique_signature  # noqa: PLC0414
from ._keyfiles import MAX_KEY_FILE, read_private_file, write_private_file
from ._sodium import ed25519_open as _ed25519_open
from ._sodium import ed25519_point_problem
from ._sodium import ed25519_sign as _ed25519_sign
from ._sodium import sha256 as _sha256
from .errors import DecodeError, InvalidRequest, SignatureError

# OpenSSL (``_openssl``) is imported by the functions that use a P-256 key or
# a PEM, never at module level: an Ed25519 car runs on libsodium alone.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from ._openssl import PrivateKey, PublicKey

#: Length of a trunkkey key id: the RFC 9679 COSE key thumbprint (SHA-256)
#: truncated to its first 8 bytes. Collisions cannot grant access (the
#: signature is still checked with the key found), and a trust store refuses
#: two keys with the same id.
KID_LENGTH = 8
#: A COSE_Key trunkkey reads holds at most kty, kid, alg, crv, x, y and d: about
#: 125 bytes for a private P-256 key; an AKP key (ML-DSA) its pub and seed: 2106
#: bytes for a private ES256 + ML-DSA-65 composite root key, the longest. Anything
#: larger is refused unread.
MAX_COSE_KEY_BYTES = 2112
#: A PEM key, even encrypted, is a few hundred bytes; the key file cap bounds it.
MAX_PEM_BYTES = MAX_KEY_FILE

# COSE_Key labels and values, as read in ``_cosekey``.
_KTY, _KID, _ALG, _CRV, _X, _D = (_cosekey.KTY, _cosekey.KID, _cosekey.ALG, _cosekey.CRV,
                                  _cosekey.X, _cosekey.D)
_KTY_OKP, _KTY_EC2, _KTY_AKP = _cosekey.KTY_OKP, _cosekey.KTY_EC2, _cosekey.KTY_AKP
_CRV_P256, _CRV_ED25519, _Y = _cosekey.CRV_P256, _cosekey.CRV_ED25519, _cosekey.Y


def _forbid_pickle(obj: object) -> NoReturn:
    raise TypeError(f"{type(obj).__name__} cannot be pickled: export it explicitly")


class VerificationKey:
    """A public key bound to one algorithm. Immutable and hashable."""

    __slots__ = ("_algorithm", "_ec", "_kid", "_raw", "_thumbprint")

    def __init__(self, algorithm: Algorithm, raw: bytes) -> None:
        """Build from raw public bytes: 32 bytes (Ed25519), x || y (P-256, 64 bytes), or
        the ML-DSA-44 (1312 bytes) or composite (ML-DSA-65 || Ed25519, 1984 bytes;
        ML-DSA-65 || P-256 x || y, 2016 bytes) key.

        Raises :class:`InvalidRequest` unless the bytes are a canonical point of
        the curve's prime-order group.
        """
        if not isinstance(algorithm, Algorithm):
            raise InvalidRequest("algorithm must be a trunkkey.Algorithm")
        raw = bytes(raw)
        # The OpenSSL object of a P-256 key, or the _mldsa.Public of an ML-DSA one.
        self._ec: Any = None
        if algorithm is Algorithm.EDDSA:
            problem = ed25519_point_problem(raw)
            if problem is not None:
                raise InvalidRequest(problem)
        elif algorithm.post_quantum:
            try:
                self._ec = _mldsa.Public(algorithm.value, raw, _classical_public)
            except (ValueError, InvalidRequest) as exc:
                raise InvalidRequest(f"not an {algorithm.cose_name} public key: {exc}") from None
        else:
            # OpenSSL checks that the point is on the curve, coordinates below p.
            from . import _openssl  # noqa: PLC0415 -- OpenSSL on the first P-256 key

            if len(raw) != 64:
                raise InvalidRequest("a P-256 public key is x || y, 64 bytes")
            try:
                self._ec = _openssl.p256_public(raw)
            except ValueError:
                raise InvalidRequest("not a point on P-256") from None
        self._algorithm = algorithm
        self._raw = raw
        # The thumbprint is computed when first asked for: a courier key is
        # built from every delivery token, and verifying needs only its bytes.
        self._thumbprint: bytes | None = None
        self._kid: bytes | None = None

    def _compute_thumbprint(self) -> bytes:
        thumbprint = _sha256(cbor.encode(self._thumbprint_members()))
        self._thumbprint, self._kid = thumbprint, thumbprint[:KID_LENGTH]
        return thumbprint

    # -- identity -----------------------------------------------------------
    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    @property
    def raw(self) -> bytes:
        """The raw public key bytes (Ed25519: 32 bytes; P-256: x || y)."""
        return self._raw

    @property
    def kid(self) -> bytes:
        """Key id: the first 8 bytes of the RFC 9679 thumbprint."""
        kid = self._kid
        if kid is None:
            return self._compute_thumbprint()[:KID_LENGTH]
        return kid

    def thumbprint(self) -> bytes:
        """The full RFC 9679 COSE key thumbprint (SHA-256)."""
        thumbprint = self._thumbprint
        if thumbprint is None:
            return self._compute_thumbprint()
        return thumbprint

    def _thumbprint_members(self) -> dict[int, Any]:
        if self._algorithm is Algorithm.EDDSA:
            return {_KTY: _KTY_OKP, _CRV: _CRV_ED25519, _X: self._raw}
        if self._algorithm.post_quantum:  # AKP (draft-ietf-cose-dilithium): alg, pub (-1)
            return {_KTY: _KTY_AKP, _ALG: int(self._algorithm), _CRV: self._raw}
        return {_KTY: _KTY_EC2, _CRV: _CRV_P256, _X: self._raw[:32], _Y: self._raw[32:]}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerificationKey):
            return NotImplemented
        return self._algorithm is other._algorithm and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self._algorithm, self._raw))

    def __repr__(self) -> str:
        return f"VerificationKey(alg={self._algorithm.cose_name}, kid={self.kid.hex()})"

    def __reduce__(self) -> tuple[type[VerificationKey], tuple[Algorithm, bytes]]:
        return (VerificationKey, (self._algorithm, self._raw))

    # -- verification -------------------------------------------------------
    def verify(self, signature: bytes, message: bytes) -> None:
        """Return ``None`` if ``signature`` is valid over ``message``; raise otherwise."""
        if not self.is_valid_signature(signature, message):
            raise SignatureError("signature does not verify")

    def is_valid_signature(self, signature: bytes, message: bytes) -> bool:
        """The boolean form of :meth:`verify`, for hot paths that branch anyway.

        Accepts every signature the algorithm defines as valid, including
        high-s ECDSA (Wycheproof counts it valid). trunkkey's own objects use
        :meth:`is_valid_unique_signature` instead.
        """
        return self._check_signature(signature, message, unique=False)

    def is_valid_unique_signature(self, signature: bytes, message: bytes) -> bool:
        """Like :meth:`is_valid_signature`, but only the one encoding trunkkey emits.

        ECDSA is malleable: if (r, s) verifies, so does (r, n - s). trunkkey
        signs with low s only and its verifiers refuse high s, so no byte of a
        token, proof or grant can change and still verify. (Ed25519 needs no
        such rule: libsodium already refuses non-canonical S.)
        """
        return self._check_signature(signature, message, unique=True)

    def _check_signature(self, signature: bytes, message: bytes, *, unique: bool) -> bool:
        if type(signature) is not bytes:
            return False
        if self._algorithm is Algorithm.EDDSA:
            return len(signature) == 64 and _ed25519_open(signature + message, self._raw)
        if self._algorithm.post_quantum:
            return bool(self._ec.verify(signature, message))  # an _mldsa.Public
        if len(signature) != 64:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
            return False
        if unique and s > _P256_HALF_ORDER:
            return False
        if self._ec is None:
            return False
        from . import _openssl  # noqa: PLC0415 -- loaded already: this key is P-256

        return _openssl.p256_verify(self._ec, r, s, message)

    # -- export / import ----------------------------------------------------
    def to_cose_key(self, *, include_kid: bool = True, include_alg: bool = True) -> bytes:
        """The public key as a deterministically encoded COSE_Key."""
        members = self._thumbprint_members()
        if include_kid:
            members[_KID] = self.kid
        if include_alg:
            members[_ALG] = int(self._algorithm)
        return cbor.encode(members)

    def cose_key_map(self) -> dict[int, Any]:
        """The minimal COSE_Key map (kty, crv, x[, y]) as used inside ``cnf``."""
        return self._thumbprint_members()

    @classmethod
    def from_cose_key(cls, data: bytes | dict[int, Any]) -> VerificationKey:
        """Read a public COSE_Key (bytes in trunkkey's strict encoding, or a decoded map).

        Bytes are refused before parsing beyond :data:`MAX_COSE_KEY_BYTES`.
        """
        members: Any
        if isinstance(data, dict):
            members = data
        else:
            cbor.refuse_oversized(data, MAX_COSE_KEY_BYTES, "COSE_Key")
            members = cbor.decode(data)
        return cls._from_cose_map(members, private=False)  # type: ignore[return-value]

    @classmethod
    def _from_cose_map(cls, members: Any, *, private: bool) -> VerificationKey | SigningKey:
        alg, raw, d = _cosekey.key_parts(members, private=private)
        try:
            public = cls(Algorithm(alg), raw)
        except (InvalidRequest, ValueError) as exc:
            raise DecodeError(f"COSE_Key does not hold a valid public key: {exc}") from None
        if _KID in members and members[_KID] != public.kid:
            raise DecodeError("COSE_Key kid is not this key's thumbprint id")
        return public if not private else SigningKey._matching(public, d)

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM."""
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        return _openssl.public_pem(self._cryptography_key())

    @classmethod
    def from_pem(cls, data: bytes) -> VerificationKey:
        """Read a SubjectPublicKeyInfo PEM; refused before parsing beyond :data:`MAX_PEM_BYTES`."""
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        cbor.refuse_oversized(data, MAX_PEM_BYTES, "PEM public key")
        try:
            loaded = _openssl.load_public_pem(data)
        except (ValueError, TypeError):
            raise DecodeError("not a PEM public key") from None
        try:
            return cls.from_cryptography(loaded)
        except InvalidRequest as exc:  # OpenSSL loads any 32 bytes as an Ed25519 key
            raise DecodeError(f"PEM does not hold a valid public key: {exc}") from None

    @classmethod
    def from_cryptography(cls, key: object) -> VerificationKey:
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        parts = _openssl.public_parts(key)
        if parts is not None:
            return cls(Algorithm.EDDSA if parts[0] == "EdDSA" else Algorithm.ES256, parts[1])
        raise DecodeError("unsupported key type: trunkkey uses Ed25519 or P-256")

    def _cryptography_key(self) -> PublicKey:
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        if self._algorithm.post_quantum:
            raise InvalidRequest("an ML-DSA key is written as a COSE_Key, not PEM")
        if self._ec is not None:
            p256: ec.EllipticCurvePublicKey = self._ec
            return p256
        return _openssl.ed25519_public(self._raw)


class SigningKey:
    """A private key bound to one algorithm.

    ``repr`` shows only the algorithm and key id; the object cannot be pickled
    or copied into a string by accident. Export is explicit:
    :meth:`private_pem`, :meth:`private_cose_key`, :meth:`save`.
    """

    __slots__ = ("__secret", "_public")
    _public: VerificationKey
    __secret: bytes | ec.EllipticCurvePrivateKey | _mldsa.Secret

    def __init__(self, *_: object, **__: object) -> None:
        raise TypeError("use SigningKey.generate(), SigningKey.load() or SigningKey.from_pem()")

    @classmethod
    def _make(
        cls, public: VerificationKey, secret: bytes | ec.EllipticCurvePrivateKey | _mldsa.Secret
    ) -> SigningKey:
        self = object.__new__(cls)
        self._public = public
        # Name-mangled so that it does not show in tab-completion or vars().
        self.__secret = secret
        return self

    @classmethod
    def generate(cls, algorithm: Algorithm = Algorithm.EDDSA) -> SigningKey:
        """A fresh key from the operating system's CSPRNG."""
        if algorithm is Algorithm.EDDSA:
            return cls._from_private_scalar(Algorithm.EDDSA, os.urandom(32))
        if algorithm is Algorithm.ES256:
            from . import _openssl  # noqa: PLC0415 -- OpenSSL on the first P-256 key

            return cls._from_cryptography_private(_openssl.p256_generate())
        if not isinstance(algorithm, Algorithm):
            raise InvalidRequest("algorithm must be a trunkkey.Algorithm")
        # ML-DSA: a fresh seed; a composite's classical half then a fresh key of its own.
        composite = _mldsa.COMPOSITES.get(algorithm.value)
        classical = cls.generate(Algorithm(composite.classical_alg)) if composite else None
        return cls._from_private_scalar(algorithm, os.urandom(32) + (
            b"" if classical is None else classical._private_scalar()))

    @classmethod
    def _from_private_scalar(cls, algorithm: Algorithm, d: bytes) -> SigningKey:
        """The key from its COSE_Key ``d``: Ed25519 seed, P-256 scalar, or ML-DSA seed(s)."""
        if algorithm.post_quantum:
            composite = _mldsa.COMPOSITES.get(algorithm.value)
            classical = None if composite is None else cls._from_private_scalar(
                Algorithm(composite.classical_alg), d[32:])
            seeds = _mldsa.Secret(algorithm.value, d, classical)
            return cls._make(VerificationKey(algorithm, seeds.public_raw()), seeds)
        if algorithm is Algorithm.EDDSA:
            public_raw, secret = nacl.bindings.crypto_sign_seed_keypair(d)
            return cls._make(VerificationKey(Algorithm.EDDSA, public_raw), secret)
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on the first P-256 key

        try:
            private = _openssl.p256_private(int.from_bytes(d, "big"))
        except ValueError:
            raise DecodeError("not a valid P-256 private scalar") from None
        return cls._from_cryptography_private(private)

    @classmethod
    def _matching(cls, public: VerificationKey, d: object) -> SigningKey:
        """The private key ``d`` of a COSE_Key, which must be ``public``'s own."""
        seed_length = _mldsa.SIZES[public.algorithm][2] if public.algorithm.post_quantum else 32
        if type(d) is not bytes or len(d) != seed_length:
            raise DecodeError(f"COSE_Key private part must be {seed_length} bytes")
        signing = cls._from_private_scalar(public.algorithm, d)
        if signing.public_key != public:
            raise DecodeError("COSE_Key private part does not match its public part")
        return signing

    @classmethod
    def _from_cryptography_private(cls, key: object) -> SigningKey:
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        parts = _openssl.private_parts(key)
        if parts is not None:
            secret = parts[1]
            if isinstance(secret, bytes):
                return cls._from_private_scalar(Algorithm.EDDSA, secret)
            return cls._make(VerificationKey.from_cryptography(secret.public_key()), secret)
        raise DecodeError("unsupported key type: trunkkey uses Ed25519 or P-256")

    # -- identity -----------------------------------------------------------
    @property
    def algorithm(self) -> Algorithm:
        return self._public.algorithm

    @property
    def public_key(self) -> VerificationKey:
        return self._public

    @property
    def kid(self) -> bytes:
        return self._public.kid

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.algorithm.cose_name}, kid={self.kid.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        _forbid_pickle(self)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        _forbid_pickle(self)

    def __getstate__(self) -> NoReturn:
        # object.__getstate__ (3.11+) would hand out the slot holding the secret.
        _forbid_pickle(self)

    def __copy__(self) -> SigningKey:
        return self

    def __deepcopy__(self, memo: object) -> SigningKey:
        return self

    # -- signing ------------------------------------------------------------
    def sign(self, message: bytes) -> bytes:
        """Ed25519 or ECDSA P-256 (r || s, low s), 64 bytes; or ML-DSA-44 / a composite."""
        secret = self.__secret
        if isinstance(secret, bytes):
            return _ed25519_sign(message, secret)
        if isinstance(secret, _mldsa.Secret):
            return secret.sign(message)
        from . import _openssl  # noqa: PLC0415 -- loaded already: this key is P-256

        return unique_signature(Algorithm.ES256, _openssl.p256_sign(secret, message))

    # -- export -------------------------------------------------------------
    def _cryptography_private(self) -> PrivateKey:
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        secret = self.__secret
        if isinstance(secret, _mldsa.Secret):
            raise InvalidRequest("an ML-DSA key is written as a COSE_Key, not PEM")
        if isinstance(secret, bytes):
            return _openssl.ed25519_private(secret[:32])
        return secret

    def _private_scalar(self) -> bytes:
        secret = self.__secret
        if isinstance(secret, bytes):
            return secret[:32]
        if isinstance(secret, _mldsa.Secret):
            return secret.seed
        return secret.private_numbers().private_value.to_bytes(32, "big")

    def private_pem(self, *, password: bytes | None = None) -> bytes:
        """Export the private key as PKCS#8 PEM (encrypted when ``password`` is given)."""
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        return _openssl.private_pem(self._cryptography_private(), password)

    def private_cose_key(self) -> bytes:
        """Export the private key as a COSE_Key (with kid and alg)."""
        members = self._public._thumbprint_members()
        members[_X if self.algorithm.post_quantum else _D] = self._private_scalar()
        members[_KID] = self.kid
        members[_ALG] = int(self.algorithm)
        return cbor.encode(members)

    @classmethod
    def from_pem(cls, data: bytes, *, password: bytes | None = None) -> SigningKey:
        """Read a PKCS#8 PEM; refused before parsing beyond :data:`MAX_PEM_BYTES`."""
        from . import _openssl  # noqa: PLC0415 -- OpenSSL on first use

        cbor.refuse_oversized(data, MAX_PEM_BYTES, "PEM private key")
        try:
            loaded = _openssl.load_private_pem(data, password)
        except (ValueError, TypeError):
            # cryptography's message may quote parts of the input: say nothing of it.
            raise DecodeError("not a PEM private key, or wrong password") from None
        return cls._from_cryptography_private(loaded)

    @classmethod
    def from_cose_key(cls, data: bytes) -> SigningKey:
        """Read a private COSE_Key; refused before parsing beyond :data:`MAX_COSE_KEY_BYTES`."""
        cbor.refuse_oversized(data, MAX_COSE_KEY_BYTES, "COSE_Key")
        try:
            members = cbor.decode(data)
        except DecodeError:
            raise DecodeError("not a COSE_Key private key") from None
        return VerificationKey._from_cose_map(members, private=True)  # type: ignore[return-value]

    # -- files --------------------------------------------------------------
    def save(
        self, path: str | os.PathLike[str], *, password: bytes | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write the key to a new file readable only by its owner (mode 0600).

        PEM; an ML-DSA key, which has no PEM here, as its private COSE_Key (no password).
        """
        data = (self.private_cose_key() if self.algorithm.post_quantum and password is None
                else self.private_pem(password=password))
        write_private_file(path, data, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, password: bytes | None = None) -> SigningKey:
        """Read a PEM or COSE_Key private key file; refuse one that others can read."""
        data = read_private_file(path)
        if data.lstrip().startswith(b"-----BEGIN"):
            return cls.from_pem(data, password=password)
        return cls.from_cose_key(data)


# A composite's classical half: an Ed25519 or P-256 key like any other, checked alike.
def _classical_public(alg: int, raw: bytes) -> VerificationKey:
    return VerificationKey(Algorithm(alg), raw)
