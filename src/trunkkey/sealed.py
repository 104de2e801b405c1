"""Sealed tokens: a signed token that only its car can read.

A sealed token is a COSE_Encrypt0 whose plaintext is the signed token,
encrypted by COSE-HPKE *integrated encryption* (draft-ietf-cose-hpke-27,
§3.2) to the car's KEM public key:

* ``alg`` ``HPKE-4`` (42, the draft's assumed value, also python-cwt's):
  DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode;
* ``ek`` (-4), the encapsulated key, alone in the unprotected header — no
  ``kid``: a car tries its own current keys, so nothing names it;
* HPKE ``info`` empty, ``aad`` the Enc_structure
  ``["Encrypt0", protected, h'']`` (RFC 9052 §5.3), as the draft says;
* the plaintext padded to a fixed bucket (:data:`BUCKETS`): the token, one
  ``0x80`` byte, then zeros, so the length tells only the bucket, never
  which optional claims the token carries;
* a delegated token is sealed with the consent chain it hangs from, as a
  *sealed bundle* ``[token, chain]`` (two byte strings), so nothing beside
  the ciphertext names the car either: a chain's grants name it.

Every seal draws a fresh encapsulation, so two tokens for one car share
nothing but the fixed header. Sealing is ``pyhpke``'s (the library
python-cwt uses); opening is ``cryptography``'s compiled HPKE where its
AAD binding passes a known answer (:func:`trunkkey._hpke4.compiled_open`),
else pyhpke's.
Both are imported on first use: a car that never sees a sealed token
loads no HPKE and no OpenSSL.

Opening is all or nothing: whatever is wrong — bytes off the profile,
another car's key, one flipped bit, padding no sealer writes — the answer
is :data:`None`, which the verifier reports as ``cannot_open`` before it
reads a byte of what is inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._hpke4 import PROTECTED, hpke4_open, pyhpke_seal, pyhpke_suite
from ._keyfiles import read_private_file, write_private_file
from ._sodium import sha256
from .clock import check_window, in_window
from .cose import ENCRYPT0_LEAD, encrypt0, is_encrypt0, split_encrypt0
from .errors import DecodeError, InvalidRequest
from .keys import KID_LENGTH

if TYPE_CHECKING:
    from .sealed_pq import CarHybridKemKey, CarHybridPublicKey

#: COSE ``alg`` of the default suite, HPKE-4 (the hybrid one is in :mod:`trunkkey.sealed_pq`).
HPKE_4 = 42
SUITES = {HPKE_4: "HPKE-4"}
KEM_KEY_BYTES = 32
#: Plaintext sizes a sealed token may have. 192 holds an Ed25519 trunk
#: token with a geofence or an order (253 bytes sealed); 256 one bound to a
#: courier's device as well (318 sealed). A backend that wants every token
#: to look alike seals them all to one bucket (``seal(..., min_size=256)``).
#: The four largest hold a token with its consent chain (a sealed bundle):
#: 960 already holds an Ed25519-rooted chain of up to four grants beside a
#: device-bound token, 4608 every chain under an EdDSA+ML-DSA-65 root that
#: grants of ordinary size make, and 6656 the largest chain the profile
#: allows (:data:`~trunkkey.consent.chain.MAX_CHAIN_BYTES` plus a hybrid
#: root's longer signature) beside a token of the default 1024-byte cap.
BUCKETS = (192, 256, 384, 512, 960, 1536, 2560, 4608, 6656)
#: What a car that verifies chains adds to its size cap for sealed bytes: the
#: room above 960, the largest bucket a token sealed alone needed before bundles.
CHAIN_ROOM = BUCKETS[-1] - 960
_TAG_BYTES = 16
#: The header a sealed token's bytes begin with, whatever it seals.
FIXED_HEADER = ENCRYPT0_LEAD + b"\x83\x44" + PROTECTED + b"\xa1\x23\x58\x20"
#: The smallest and largest sealed token: a cap for parsers and fuzzers.


def sealed_size(bucket: int) -> int:
    """The length of a token sealed with HPKE-4 whose plaintext is padded to ``bucket``."""
    ciphertext = bucket + _TAG_BYTES
    return len(FIXED_HEADER) + KEM_KEY_BYTES + (2 if ciphertext < 256 else 3) + ciphertext


MIN_SEALED = sealed_size(BUCKETS[0])
MAX_SEALED = sealed_size(BUCKETS[-1])


@dataclass(frozen=True, slots=True)
class CarPublicKey:
    """A car's KEM public key (X25519, 32 bytes): what a backend seals to."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != KEM_KEY_BYTES:
            raise InvalidRequest(f"a car's X25519 key is {KEM_KEY_BYTES} bytes")

    def to_cose_key(self) -> bytes:
        """The key as a COSE_Key: ``{kty: OKP, alg: HPKE-4, crv: X25519, x}``."""
        from . import cbor  # noqa: PLC0415

        return cbor.encode({1: 1, 3: HPKE_4, -1: 4, -2: self.raw})

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM (RFC 8410), what a backend is handed for a car."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PublicKey,
        )

        return X25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes) -> CarPublicKey:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PublicKey,
        )

        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise DecodeError("not a PEM public key") from None
        if not isinstance(key, X25519PublicKey):
            raise DecodeError("not an X25519 public key (a car's KEM key)")
        return cls(key.public_bytes_raw())


class CarKemKey:
    """A car's KEM private key: it opens what was sealed to :attr:`public_key`.

    The secret never appears in ``repr`` and the key cannot be pickled.
    """

    __slots__ = ("_openssl", "_private", "_public", "_pyhpke")

    def __init__(self, private: bytes) -> None:
        if type(private) is not bytes or len(private) != KEM_KEY_BYTES:
            raise InvalidRequest(f"a car's X25519 private key is {KEM_KEY_BYTES} bytes")
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PrivateKey,
        )

        self._openssl = X25519PrivateKey.from_private_bytes(private)
        self._private = private
        self._public = CarPublicKey(self._openssl.public_key().public_bytes_raw())
        self._pyhpke: Any = None

    def _hpke(self) -> Any:
        """pyhpke's form of the key, loaded once on first use (its load re-derives
        the public key: a third of an opening)."""
        if self._pyhpke is None:
            self._pyhpke = pyhpke_suite().kem.deserialize_private_key(self._private)
        return self._pyhpke

    @classmethod
    def generate(cls) -> CarKemKey:
        import secrets  # noqa: PLC0415 -- its hmac import loads OpenSSL; a car's wake never needs it

        return cls(secrets.token_bytes(KEM_KEY_BYTES))

    @property
    def public_key(self) -> CarPublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        """The raw secret, for the car's key store and the test vectors only."""
        return self._private

    def __repr__(self) -> str:
        return f"CarKemKey(HPKE-4, public={self._public.raw.hex()[:16]}…)"

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the key as PKCS#8 PEM to a new file readable only by its owner (0600)."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PrivateKey,
        )

        pem = X25519PrivateKey.from_private_bytes(self._private).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CarKemKey:
        """Read a PEM key file written by :meth:`save`; refuse one that others can read."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.x25519 import (  # noqa: PLC0415
            X25519PrivateKey,
        )

        try:
            key = serialization.load_pem_private_key(read_private_file(path), password=None)
        except (ValueError, TypeError):
            raise DecodeError(f"{path} is not an unencrypted PEM private key") from None
        if not isinstance(key, X25519PrivateKey):
            raise DecodeError(f"{path} is not an X25519 key (a car's KEM key)")
        return cls(key.private_bytes_raw())

    def __reduce__(self) -> Any:
        raise TypeError("a car's KEM key is not pickled")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyringEntry:
    """A KEM key in a :class:`CarKeyring` with the period ``[not_before, not_after)``
    in which it opens tokens (``None``: unbounded)."""

    key: CarKemKey | CarHybridKemKey
    not_before: int | None = None
    not_after: int | None = None

    def __post_init__(self) -> None:
        if not _is_car_key(self.key):
            raise InvalidRequest("a keyring entry holds a CarKemKey or CarHybridKemKey")
        check_window(self.not_before, self.not_after, "KEM key")


class CarKeyring:
    """The car's KEM keys, newest first: replaced whole on rotation.

    A key given bare opens tokens at any time; one given as a
    :class:`KeyringEntry` only inside its window, so a rotated-out key stops
    at its ``not_after`` without another update. Readers take a snapshot
    (one attribute read) and a rotation writes one attribute, so an opening
    never sees half a rotation; during a rotation the old key stays beside
    the new one until every token sealed to it has expired.
    """

    __slots__ = ("_entries",)

    def __init__(self, keys: Iterable[CarKemKey | CarHybridKemKey | KeyringEntry]) -> None:
        self._entries = _checked(keys)

    @property
    def keys(self) -> tuple[CarKemKey | CarHybridKemKey, ...]:
        """Every key held, whatever its window."""
        return tuple(entry.key for entry in self._entries)

    @property
    def entries(self) -> tuple[KeyringEntry, ...]:
        return self._entries

    def current(self, now: int) -> tuple[CarKemKey | CarHybridKemKey, ...]:
        """The keys that open tokens at ``now``: the only ones a verifier tries."""
        return tuple(
            entry.key for entry in self._entries
            if in_window(now, entry.not_before, entry.not_after)
        )

    def replace(self, keys: Iterable[CarKemKey | CarHybridKemKey | KeyringEntry]) -> None:
        self._entries = _checked(keys)

    def _publish(self, entries: tuple[KeyringEntry, ...]) -> None:
        """Swap in ``entries``, possibly none: for a keyring whose keys a signed update sets."""
        self._entries = entries

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._entries)} keys)"


def _checked(
    keys: Iterable[CarKemKey | CarHybridKemKey | KeyringEntry],
) -> tuple[KeyringEntry, ...]:
    entries = tuple(
        key if isinstance(key, KeyringEntry) else KeyringEntry(key=key) for key in keys
    )
    if not entries:
        raise InvalidRequest("a car keyring holds one or more CarKemKey or CarHybridKemKey")
    return entries


def _is_car_key(key: object) -> bool:
    if isinstance(key, CarKemKey):
        return True
    from .sealed_pq import CarHybridKemKey  # noqa: PLC0415 -- the hybrid suite's own module

    return isinstance(key, CarHybridKemKey)


def kem_key_id(key: CarPublicKey | CarHybridPublicKey) -> bytes:
    """A car KEM key's id, of either suite: the first 8 bytes of SHA-256 of its raw
    public key (the length of a signing key's ``kid``). Trust updates name it to remove it."""
    return sha256(key.raw)[:KID_LENGTH]


def kem_public_key(raw: bytes) -> CarPublicKey | CarHybridPublicKey:
    """A car's KEM public key from its raw bytes; the length names the suite
    (32: X25519, 1216: ML-KEM-768 + X25519). :class:`DecodeError` otherwise."""
    from .sealed_pq import PUBLIC_BYTES, CarHybridPublicKey  # noqa: PLC0415

    if type(raw) is not bytes or len(raw) not in (KEM_KEY_BYTES, PUBLIC_BYTES):
        raise DecodeError(f"a car's KEM public key is {KEM_KEY_BYTES} or {PUBLIC_BYTES} bytes")
    return CarPublicKey(raw) if len(raw) == KEM_KEY_BYTES else CarHybridPublicKey(raw)


def load_car_key(path: str | os.PathLike[str]) -> CarKemKey | CarHybridKemKey:
    """A car's KEM private key file of either suite (the PEM label tells which)."""
    from .sealed_pq import PRIVATE_LABEL, CarHybridKemKey  # noqa: PLC0415

    if PRIVATE_LABEL.encode() in read_private_file(path)[:64]:
        return CarHybridKemKey.load(path)
    return CarKemKey.load(path)


def car_public_key(data: bytes) -> CarPublicKey | CarHybridPublicKey:
    """A car's KEM public key, from PEM of either suite (the label tells which)."""
    from .sealed_pq import PUBLIC_LABEL, CarHybridPublicKey  # noqa: PLC0415

    if PUBLIC_LABEL.encode() in data[:64]:
        return CarHybridPublicKey.from_pem(data)
    return CarPublicKey.from_pem(data)


def bucket_for(size: int, min_size: int = 0) -> int:
    """The padded plaintext size for a token of ``size`` bytes (one byte of
    marker), at least ``min_size``."""
    for bucket in BUCKETS:
        if size < bucket and min_size <= bucket:
            return bucket
    raise InvalidRequest(f"a token of {size} bytes is too large to seal (max {BUCKETS[-1] - 1})")


def seal(
    token: bytes, to: CarPublicKey | CarHybridPublicKey, *, chain: bytes | None = None,
    min_size: int = 0,
) -> bytes:
    """``token`` sealed to the car whose KEM public key is ``to``, with a fresh
    encapsulation, padded to the smallest bucket that holds it and is at
    least ``min_size`` bytes. With ``chain`` (the consent chain a delegated
    token hangs from, as :func:`~trunkkey.consent.grant.encode_chain` makes
    it) the plaintext is the bundle ``[token, chain]``: the courier then
    presents the sealed bytes alone. The key's type picks the suite: HPKE-4
    for a :class:`CarPublicKey`, the ML-KEM-768 + X25519 hybrid
    (:mod:`trunkkey.sealed_pq`) for a ``CarHybridPublicKey``."""
    if not isinstance(to, CarPublicKey):
        from .sealed_pq import CarHybridPublicKey, seal_pq  # noqa: PLC0415

        if not isinstance(to, CarHybridPublicKey):
            raise InvalidRequest("seal to a trunkkey.CarPublicKey or CarHybridPublicKey")
        return seal_pq(_padded(_plaintext(token, chain), min_size), to)
    return _seal(token, to, None, min_size, chain=chain)


def _plaintext(token: bytes, chain: bytes | None) -> bytes:
    """The token alone (byte for byte, as before bundles), or the bundle ``[token, chain]``."""
    if type(token) is not bytes or not token:
        raise InvalidRequest("token must be non-empty bytes")
    if is_encrypt0(token):
        # The car opens once and refuses what is inside as malformed: say so here.
        raise InvalidRequest("token is already sealed: seal the signed token, once")
    if chain is None:
        return token
    if type(chain) is not bytes or chain in _EMPTY_CHAINS:
        raise InvalidRequest("chain must be the bytes of a non-empty consent chain")
    from . import cbor  # noqa: PLC0415

    return cbor.encode([token, chain])


def _padded(plaintext: bytes, min_size: int) -> bytes:
    if type(min_size) is not int or min_size > BUCKETS[-1]:
        raise InvalidRequest(f"min_size must be an int of at most {BUCKETS[-1]}")
    return plaintext + b"\x80" + bytes(bucket_for(len(plaintext), min_size) - len(plaintext) - 1)


def _seal(
    token: bytes, to: CarPublicKey, ephemeral: bytes | None, min_size: int = 0,
    *, chain: bytes | None = None,
) -> bytes:
    """:func:`seal` with the ephemeral key fixed: for known-answer vectors only."""
    padded = _padded(_plaintext(token, chain), min_size)
    if not isinstance(to, CarPublicKey):
        raise InvalidRequest("seal to a trunkkey.CarPublicKey")
    enc, ciphertext = pyhpke_seal(padded, to.raw, ephemeral)
    return encrypt0(PROTECTED, enc, ciphertext)


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` claims to be a sealed token (tag 16); says nothing of whether it opens.

    Only ``bytes`` are sealed tokens, as only ``bytes`` are tokens to a verifier."""
    return type(data) is bytes and is_encrypt0(data)


def open_sealed(data: bytes, keys: Iterable[CarKemKey | CarHybridKemKey]) -> bytes | None:
    """The plaintext inside ``data`` — the signed token, or a sealed bundle's
    ``[token, chain]`` (:func:`trunkkey.sealed_bundle.open_bundle` splits it) — or ``None`` if none
    of ``keys`` opens it.

    The header names the suite; the keys of that suite are tried in turn
    (newest first, in a :class:`CarKeyring`) and the first that opens wins.
    ``data`` must be ``bytes`` (:class:`InvalidRequest` otherwise), as a
    verifier requires of a token.
    """
    if type(data) is not bytes:
        raise InvalidRequest("sealed data must be bytes")
    try:
        protected, enc, ciphertext = split_encrypt0(data)
    except DecodeError:
        return None
    if len(ciphertext) - _TAG_BYTES not in BUCKETS:
        return None
    if protected != PROTECTED:
        from .sealed_pq import PROTECTED_PQ, open_pq  # noqa: PLC0415

        padded = open_pq(enc, ciphertext, keys) if protected == PROTECTED_PQ else None
        return None if padded is None else _unpad(padded)
    if len(enc) != KEM_KEY_BYTES:
        return None
    for key in keys:
        if not isinstance(key, CarKemKey):
            continue
        padded = hpke4_open(key._openssl, key._hpke, enc, ciphertext)
        if padded is not None:
            return _unpad(padded)
    return None


def _unpad(padded: bytes) -> bytes | None:
    body = padded.rstrip(b"\x00")
    if not body or body[-1] != 0x80 or len(body) == 1:
        return None
    return body[:-1]


#: The chains no sealer writes into a bundle: none at all, and the empty list.
_EMPTY_CHAINS = (b"", b"\x80")


@dataclass(frozen=True, slots=True)
class SealedInfo:
    """All that can be said of a sealed token without its car's key."""

    size: int
    suite: str


def describe_sealed(data: bytes) -> SealedInfo:
    """Size and suite of a sealed token; :class:`DecodeError` if it is off the profile."""
    from .sealed_pq import ENC_BYTES, PROTECTED_PQ  # noqa: PLC0415

    protected, enc, _ = split_encrypt0(data)
    suites = {PROTECTED: (SUITES[HPKE_4], KEM_KEY_BYTES),
              PROTECTED_PQ: ("HPKE-MLKEM768-X25519", ENC_BYTES)}
    suite, enc_bytes = suites.get(protected, (None, 0))
    if suite is None or len(enc) != enc_bytes:
        raise DecodeError("sealed with a suite this profile does not define")
    return SealedInfo(size=len(data), suite=suite)
