"""trunkkey's exception tree.

Everything trunkkey raises on purpose derives from :class:`TrunkkeyError`.
Mistakes by the *caller* (a request that makes no sense, a wrong argument
type) are :class:`InvalidRequest`, which is also a builtin ``ValueError`` so
that ordinary ``except ValueError`` code keeps working (the pynacl pattern).
Untrusted input never raises anything but :class:`DecodeError` or a denied
decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reasons import Reason


class TrunkkeyError(Exception):
    """Base class of every error trunkkey raises on purpose."""


class InvalidRequest(TrunkkeyError, ValueError):
    """The caller asked for something that makes no sense (a programming error)."""


class DecodeError(TrunkkeyError):
    """Untrusted bytes are not a well-formed, strictly encoded object."""


class SignatureError(TrunkkeyError):
    """A signature did not verify, or its algorithm does not match the key."""


class KeyFileError(TrunkkeyError):
    """A key file could not be read or written safely."""


class InsecureKeyFile(KeyFileError):
    """A private key file is readable by other users; it is refused, not used."""


class HardwareKeyError(TrunkkeyError):
    """A key in a hardware token (PKCS#11) could not be reached, logged into or used.

    The message names the token, the key label and the PKCS#11 error; never the PIN.
    """


class LedgerError(TrunkkeyError):
    """The replay ledger could not record or answer; access must be denied."""


class LedgerCorrupted(LedgerError):
    """A ledger file failed its integrity checks and is refused, never used.

    A damaged ledger could have forgotten spent tokens, so it is not opened
    at all; the message names the file and the operator's recovery step
    (``trunkkey ledger recover PATH``, see docs/operations.md).
    """


class AccessDenied(TrunkkeyError):
    """Raised by :meth:`Decision.raise_for_denial` for a denied decision."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"access denied: {reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
