"""Sealed bundles, and what a verifier is presented: a token, its chain, or why not.

A delegated token is sealed with the consent chain it hangs from as a
*sealed bundle* ``[token, chain]`` (:func:`trunkkey.sealed.seal` with
``chain=``), because a chain's grants name the car. Here a verifier's steps
1 and 1b live, in :func:`unseal_presented`, the one function every
verifier, the vehicle unit and the CLI go through: size the presented
bytes, open a sealed token with the car's keys current now, and split a
bundle into token and chain — judged on its framing alone, before any
signature or claim inside is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cose import is_encrypt0
from .errors import DecodeError
from .reasons import Reason
from .sealed import (
    _EMPTY_CHAINS,
    CHAIN_ROOM,
    MAX_SEALED,
    CarKemKey,
    CarKeyring,
    is_sealed,
    open_sealed,
)

if TYPE_CHECKING:
    from .sealed_pq import CarHybridKemKey

#: A bundle's plaintext is a CBOR array of two byte strings, so it begins
#: ``0x82``: never the first byte of a COSE_Sign1 (``0xd2``, or ``0x84`` untagged).
_BUNDLE_LEAD = 0x82


@dataclass(frozen=True, slots=True, repr=False)
class Unsealed:
    """What a presentation carries once opened: the signed token and its chain, if any."""

    token: bytes
    chain: bytes | None

    def __repr__(self) -> str:
        # A token without a device binding is a bearer credential: sizes only.
        chain = "no chain" if self.chain is None else f"chain of {len(self.chain)} bytes"
        return f"Unsealed(token of {len(self.token)} bytes, {chain})"


def _split_bundle(plaintext: bytes) -> Unsealed:
    """A sealed plaintext as token and chain; :class:`DecodeError` for a bundle off the profile.

    Judged on its framing alone, before any signature or claim inside is read:
    exactly two definite byte strings in shortest form and nothing after
    them, a token that is neither sealed nor a bundle itself (one level, no
    nesting), and a chain that is not empty. What the chain holds is the
    chain checks' to judge, with the reasons they give a chain in the clear.
    """
    if plaintext[:1] != bytes([_BUNDLE_LEAD]):
        return Unsealed(plaintext, None)
    from . import cbor  # noqa: PLC0415

    items = cbor.decode(plaintext, max_depth=1)
    if type(items) is not list or len(items) != 2 or any(type(i) is not bytes for i in items):
        raise DecodeError("a sealed bundle is [token, chain], two byte strings")
    token, chain = items
    if not token or is_encrypt0(token) or token[:1] == bytes([_BUNDLE_LEAD]):
        raise DecodeError("a sealed bundle's token is a signed token, neither sealed nor a bundle")
    if chain in _EMPTY_CHAINS:
        raise DecodeError("a sealed bundle's chain is empty (a token without one is sealed alone)")
    return Unsealed(token, chain)


def open_bundle(data: bytes, keys: Iterable[CarKemKey | CarHybridKemKey]) -> Unsealed | None:
    """The token and chain sealed in ``data`` (``chain`` ``None`` for a token sealed
    alone), ``None`` if none of ``keys`` opens it, :class:`DecodeError` if what
    opens is a bundle off the profile."""
    plaintext = open_sealed(data, keys)
    return None if plaintext is None else _split_bundle(plaintext)


def _sealed_cap(keys: CarKeyring | None, cap: int, verifies_chains: bool) -> int:
    """The most sealed bytes a car reads: its token ``cap`` (plus :data:`CHAIN_ROOM` if
    it verifies chains), never less than :data:`MAX_SEALED` — a token it takes in the
    clear may pad to any bucket, and a backend may seal every token to the largest —
    plus the hybrid envelope's extra length if it holds a hybrid key (judged on the
    keys it holds, not on the presented bytes, which are not yet read)."""
    outer = max(MAX_SEALED, cap + CHAIN_ROOM if verifies_chains else cap)
    if keys is not None and any(not isinstance(key, CarKemKey) for key in keys.keys):
        from .sealed_pq import HYBRID_ROOM  # noqa: PLC0415 -- loaded already: it holds its key

        outer += HYBRID_ROOM
    return outer


def unseal_presented(
    token: object, chain: bytes | None, keys: CarKeyring | None, *, now: int, cap: int,
    verifies_chains: bool,
) -> Unsealed | tuple[Reason, str]:
    """Steps 1 and 1b of every verifier: the token and chain presented, or why not.

    ``cap`` is the car's size cap for a signed token; sealed bytes may be
    :data:`CHAIN_ROOM` longer for a car that ``verifies_chains``, never
    shorter than :data:`MAX_SEALED`, and
    :data:`~trunkkey.sealed_pq.HYBRID_ROOM` longer again for a car holding a
    hybrid KEM key (:func:`_sealed_cap`). A sealed
    token opens with ``keys`` current at ``now`` or is ``cannot_open``; a bundle's chain is then
    used exactly as one in the clear, and a chain both ways is ``malformed``.
    """
    if type(token) is not bytes:
        return Reason.MALFORMED, "token must be bytes"
    sealed = is_sealed(token)
    outer = _sealed_cap(keys, cap, verifies_chains) if sealed else cap
    if len(token) > outer:
        return Reason.TOO_LARGE, f"{len(token)} bytes > cap of {outer}"
    if not sealed:
        return Unsealed(token, chain)
    plaintext = None if keys is None else open_sealed(token, keys.current(now))
    if plaintext is None:
        return Reason.CANNOT_OPEN, "sealed token does not open with this car's keys"
    try:
        inner = _split_bundle(plaintext)
    except DecodeError as exc:
        return Reason.MALFORMED, str(exc)
    if inner.chain is not None and chain is not None:
        return Reason.MALFORMED, "a consent chain both sealed and in the clear"
    if len(inner.token) > cap:
        return Reason.TOO_LARGE, f"sealed token of {len(inner.token)} bytes > cap of {cap}"
    return inner if inner.chain is not None else Unsealed(inner.token, chain)
