"""Who may sign a token for one presentation: the one protocol the verifier asks.

The verifier does not know where a token's signer comes from. It asks a
:class:`TokenAuthority` — a :class:`~trunkkey.TrustStore` for a token signed
by a key the car trusts directly, a consent verifier
(:mod:`trunkkey.consent`) for a token that hangs from a chain of grants — for
the :class:`Signer` of the token's exact protected header, and later for any
checks of the authenticated claims. Both answer a header that names no
acceptable signer through :func:`header_refusal`, so a token header is
refused for the same reason whichever way it came.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .cose import HeaderProblem, Typ, decode_protected
from .reasons import Reason

if TYPE_CHECKING:
    from .claims import TokenClaims
    from .ledger.base import DailyLimit
    from .trust import TrustedKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a token (or the chain it hangs from) was refused."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """The key a token must be signed by for this presentation, and its conditions."""

    #: The key, the issuer name it speaks for, and its validity period.
    trusted: TrustedKey
    #: The exact protected header a token by this key carries.
    token_header: bytes
    #: Daily limits that the ledger counts, in its atomic step, if the token opens.
    limits: tuple[DailyLimit, ...] = ()


@runtime_checkable
class TokenAuthority(Protocol):
    """Finds a token's signer, and checks its authenticated claims."""

    def token_signer(
        self, protected: bytes, chain: bytes | None, *, now: int, vehicle_id: str, skew: int
    ) -> Signer | Refusal:
        """The signer for a token with this exact protected header (and chain), or why not."""
        ...

    def check_claims(self, claims: TokenClaims, signer: Signer) -> Refusal | None:
        """Refuse an authentic token for a reason beyond its own claims (revoked, out of scope)."""
        ...


_HEADER_REASON = {
    HeaderProblem.MALFORMED: Reason.MALFORMED,
    HeaderProblem.UNSUPPORTED: Reason.UNSUPPORTED_HEADER,
    HeaderProblem.WRONG_TYPE: Reason.WRONG_TYPE,
}


def header_refusal(
    protected: bytes,
    signer_for_kid: Callable[[bytes], TrustedKey | None],
    unknown: Callable[[bytes], Refusal],
) -> Refusal:
    """Say precisely why a token's protected header is not the one its signer uses.

    Called only after the exact-bytes match failed. ``signer_for_kid`` names
    the acceptable signer for a kid; ``unknown`` says why a kid names none.
    """
    header = decode_protected(protected)
    if isinstance(header, HeaderProblem):
        return Refusal(reason=_HEADER_REASON[header], detail="protected header refused")
    if header.typ != Typ.TOKEN:
        return Refusal(reason=Reason.WRONG_TYPE, detail=f"typ {header.typ} is not a trunkkey token")
    if header.kid is None:
        return Refusal(reason=Reason.MALFORMED, detail="token has no kid")
    entry = signer_for_kid(header.kid)
    if entry is None:
        return unknown(header.kid)
    if header.alg != int(entry.key.algorithm):
        return Refusal(
            reason=Reason.ALG_MISMATCH,
            detail=f"alg {header.alg} is not the key's {entry.key.algorithm.cose_name}",
        )
    # Every field is right, so only a non-canonical encoding can be left.
    return Refusal(reason=Reason.MALFORMED, detail="protected header not deterministically encoded")
