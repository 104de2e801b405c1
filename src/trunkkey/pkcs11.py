"""Signing keys that never leave a PKCS#11 token: an HSM, a smart card, SoftHSM2.

A :class:`Pkcs11Token` logs into one token once (PKCS#11 logs a whole
process in, per token) and hands out a :class:`Pkcs11Signer` for each key
label on it. A signer is a :class:`~trunkkey.signing.SigningBackend`: pass
it wherever trunkkey takes a :class:`~trunkkey.SigningKey` to sign — an
:class:`~trunkkey.Issuer`, a grant, a revocation list, a trust update, a
receipt. The token signs; trunkkey builds every object around the signature
in :func:`trunkkey.cose.sign1`, as for a key in memory.

* **Ed25519** with ``CKM_EDDSA``, over the message itself.
* **ECDSA P-256** with ``CKM_ECDSA`` over the SHA-256 digest computed here
  (plain ``CKM_ECDSA`` is what tokens have in common; SoftHSM2 has no
  ``CKM_ECDSA_SHA256``).
  The token's ``r || s`` may have a high ``s``; ``sign1`` puts it in the low
  form trunkkey's verifiers require.

A private key that the token would let out (``CKA_EXTRACTABLE`` true or
``CKA_SENSITIVE`` false) is refused: the point of the token is that it cannot
leave. The PIN is used to log in and not kept; it appears in no ``repr`` and
no error. Needs the ``pkcs11`` extra (python-pkcs11), loaded only by this
module, which ``import trunkkey`` never imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session
from pkcs11.exceptions import PinIncorrect, PinLocked, PKCS11Error, UserAlreadyLoggedIn
from pkcs11.types import Key, SignMixin

from ._keyfiles import read_private_file
from .errors import HardwareKeyError, InvalidRequest
from .keys import Algorithm, VerificationKey

#: Where :meth:`Pkcs11Token.open` reads the PIN when given neither ``pin`` nor ``pin_file``.
PIN_ENV = "TRUNKKEY_PKCS11_PIN"

# CKA_EC_PARAMS as tokens write them: the curve's OID, or for Ed25519 also the
# printable string "edwards25519" (PKCS#11 3.0 allows both; SoftHSM2 writes it).
_P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_ED25519_PARAMS = (bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519")


def _pin(pin: str | None, pin_file: str | os.PathLike[str] | None) -> str:
    """The one PIN from the one source given: argument, owner-only file, or :data:`PIN_ENV`."""
    if pin is not None and pin_file is not None:
        raise InvalidRequest("give the PIN as pin or pin_file, not both")
    if pin_file is not None:
        # The same rule as a key file: refused if other users can read it.
        text = read_private_file(Path(pin_file)).decode("utf-8", "replace")
        pin = text.rstrip("\r\n")
    elif pin is None:
        pin = os.environ.get(PIN_ENV)
        if pin is None:
            raise InvalidRequest(f"no PIN: pass pin or pin_file, or set {PIN_ENV}")
    if type(pin) is not str or not pin:
        raise InvalidRequest("the PIN must be a non-empty string")
    return pin


class Pkcs11Token:
    """One logged-in session on one PKCS#11 token; its keys sign through it.

    PKCS#11 lets a session run one operation at a time, so signers of one
    token take turns on a lock. Close the token (or leave its ``with``
    block) to log out; its signers then refuse to sign.
    """

    __slots__ = ("_label", "_lock", "_session")
    _label: str
    _lock: threading.Lock
    _session: Session | None

    def __init__(self, *_: object, **__: object) -> None:
        raise TypeError("use Pkcs11Token.open(library=..., token_label=..., pin_file=...)")

    @classmethod
    def open(
        cls, *, library: str | os.PathLike[str], token_label: str, pin: str | None = None,
        pin_file: str | os.PathLike[str] | None = None,
    ) -> Pkcs11Token:
        """Log into the token labelled ``token_label`` through the PKCS#11 module ``library``.

        The PIN comes from exactly one place: ``pin``, ``pin_file`` (a file
        only its owner can read; a trailing newline is ignored) or the
        :data:`PIN_ENV` environment variable — never the command line, where
        other users see it. Raises :class:`~trunkkey.HardwareKeyError` if
        the token is absent or refuses the PIN.
        """
        if type(token_label) is not str or not token_label:
            raise InvalidRequest("token_label must be a non-empty string")
        secret = _pin(pin, pin_file)
        try:
            module = pkcs11.lib(os.fspath(library))
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise HardwareKeyError(
                f"cannot load the PKCS#11 module {os.fspath(library)!r} ({type(exc).__name__})"
            ) from None
        where = f"PKCS#11 token {token_label!r}"
        try:
            session = module.get_token(token_label=token_label).open(user_pin=secret, rw=False)
        except PinIncorrect:
            raise HardwareKeyError(f"{where} refused the PIN (wrong PIN)") from None
        except PinLocked:
            raise HardwareKeyError(f"{where} is locked: too many wrong PINs") from None
        except UserAlreadyLoggedIn:
            raise HardwareKeyError(
                f"{where} is already logged in by this process: take every key from one "
                "Pkcs11Token"
            ) from None
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise HardwareKeyError(f"{where}: cannot log in ({type(exc).__name__})") from None
        finally:
            del secret
        self = object.__new__(cls)
        self._label = token_label
        self._session = session
        self._lock = threading.Lock()
        return self

    def signer(self, key_label: str) -> Pkcs11Signer:
        """The signer for the key pair labelled ``key_label`` (private and public objects)."""
        if type(key_label) is not str or not key_label:
            raise InvalidRequest("key_label must be a non-empty string")
        where = f"key {key_label!r} on PKCS#11 token {self._label!r}"
        with self._lock:
            session = self._live_session()
            try:
                private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
                public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=key_label)
                extractable = private[Attribute.EXTRACTABLE]
                sensitive = private[Attribute.SENSITIVE]
                algorithm, raw = _public_parts(public)
            except PKCS11Error as exc:
                raise HardwareKeyError(f"{where}: {type(exc).__name__}") from None
            except HardwareKeyError as exc:
                raise HardwareKeyError(f"{where}: {exc}") from None
        if not isinstance(private, SignMixin):
            raise HardwareKeyError(f"{where} is not a key that signs")
        if extractable or not sensitive:
            raise HardwareKeyError(
                f"{where} can leave the token (CKA_EXTRACTABLE or not CKA_SENSITIVE): "
                "generate it with extractable=False, sensitive=True"
            )
        try:
            public_key = VerificationKey(algorithm, raw)
        except InvalidRequest as exc:
            raise HardwareKeyError(f"{where}: the public key is not valid: {exc}") from None
        return Pkcs11Signer._make(self, key_label, private, public_key)

    def _live_session(self) -> Session:
        if self._session is None:
            raise HardwareKeyError(f"PKCS#11 token {self._label!r} is closed")
        return self._session

    def _sign(
        self, private: SignMixin, mechanism: Mechanism, data: bytes, key_label: str
    ) -> bytes:
        with self._lock:
            self._live_session()  # the key handle outlives its session: refuse once closed
            try:
                signature = private.sign(data, mechanism=mechanism)
            except PKCS11Error as exc:
                raise HardwareKeyError(
                    f"key {key_label!r} on PKCS#11 token {self._label!r} did not sign: "
                    f"{type(exc).__name__}"
                ) from None
        return bytes(signature)

    def close(self) -> None:
        """Close the session (the last one closed logs the process out of the token)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            # An error here means the token is already gone: nothing is left to log out.
            with contextlib.suppress(PKCS11Error):
                session.close()

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._session is None else "open"
        return f"Pkcs11Token({self._label!r}, {state})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pkcs11Token is a live session: it cannot be pickled")


def _public_parts(public: Key) -> tuple[Algorithm, bytes]:
    """The algorithm and raw public bytes of a token's EC or Edwards public key object."""
    params = bytes(public[Attribute.EC_PARAMS])
    point = bytes(public[Attribute.EC_POINT])
    key_type = public.key_type
    if key_type == KeyType.EC_EDWARDS and params in _ED25519_PARAMS:
        algorithm, size = Algorithm.EDDSA, 32
    elif key_type == KeyType.EC and params == _P256_PARAMS:
        algorithm, size = Algorithm.ES256, 65
    else:
        raise HardwareKeyError("the key is neither Ed25519 nor P-256: trunkkey signs with those")
    # CKA_EC_POINT is a DER OCTET STRING holding the point; some tokens give the bare point.
    if len(point) == size + 2 and point[0] == 0x04 and point[1] == size:
        point = point[2:]
    if len(point) != size:
        raise HardwareKeyError("the public key's CKA_EC_POINT is not a point of its curve")
    if algorithm is Algorithm.ES256:
        if point[0] != 0x04:
            raise HardwareKeyError("the P-256 public key is not an uncompressed point")
        point = point[1:]
    return algorithm, point


class Pkcs11Signer:
    """A key pair on a PKCS#11 token, as a :class:`~trunkkey.signing.SigningBackend`.

    Made by :meth:`Pkcs11Token.signer`. Its private half is a handle: the
    key's bytes are never in this process.
    """

    __slots__ = ("_label", "_mechanism", "_private", "_public", "_token")
    _label: str
    _mechanism: Mechanism
    _private: SignMixin
    _public: VerificationKey
    _token: Pkcs11Token

    def __init__(self, *_: object, **__: object) -> None:
        raise TypeError("use Pkcs11Token.open(...).signer(key_label)")

    @classmethod
    def _make(
        cls, token: Pkcs11Token, label: str, private: SignMixin, public: VerificationKey
    ) -> Pkcs11Signer:
        self = object.__new__(cls)
        self._token = token
        self._label = label
        self._private = private
        self._public = public
        self._mechanism = (
            Mechanism.EDDSA if public.algorithm is Algorithm.EDDSA else Mechanism.ECDSA
        )
        return self

    @property
    def algorithm(self) -> Algorithm:
        return self._public.algorithm

    @property
    def kid(self) -> bytes:
        return self._public.kid

    @property
    def public_key(self) -> VerificationKey:
        return self._public

    @property
    def label(self) -> str:
        """The key's ``CKA_LABEL`` on its token."""
        return self._label

    def sign(self, message: bytes) -> bytes:
        """The token's 64-byte signature over ``message`` (P-256: over its SHA-256, any s)."""
        data = message if self._mechanism is Mechanism.EDDSA else hashlib.sha256(message).digest()
        return self._token._sign(self._private, self._mechanism, data, self._label)

    def __repr__(self) -> str:
        return (
            f"Pkcs11Signer(token={self._token._label!r}, key={self._label!r}, "
            f"alg={self.algorithm.cose_name}, kid={self.kid.hex()})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Pkcs11Signer is a handle on a live session: it cannot be pickled")
