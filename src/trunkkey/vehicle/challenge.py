"""Challenges for proof of possession: fresh, short-lived, single use.

The courier's device signs a challenge the car chose (see
:mod:`trunkkey.proof`); the verifier checks the signature, and this book
checks the rest: that the car really issued the challenge, that it is still
fresh, and that it has not been answered before. A relay that forwards the
exchange to a car farther away than radio range needs time; the time to live
bounds how much.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidRequest
from ..proof import MAX_CHALLENGE_BYTES, MIN_CHALLENGE_BYTES
from ..reasons import Reason

DEFAULT_CHALLENGE_TTL = 30
#: More outstanding challenges than this and the oldest is forgotten: a
#: device asking over and over cannot make the car hold unbounded state.
DEFAULT_MAX_OUTSTANDING = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeRefusal:
    """Why a challenge answer was refused before any token was looked at."""

    reason: Reason
    detail: str


class ChallengeBook:
    """Challenges issued and not yet answered, with their issue time.

    Kept in memory on purpose: a reboot forgets every outstanding challenge,
    which can only make a courier ask again.
    """

    def __init__(
        self,
        *,
        randomness: Callable[[int], bytes],
        ttl: int = DEFAULT_CHALLENGE_TTL,
        size: int = MIN_CHALLENGE_BYTES,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
    ) -> None:
        if type(ttl) is not int or not (1 <= ttl <= 300):
            raise InvalidRequest("challenge ttl must be 1 to 300 seconds")
        if type(size) is not int or not (MIN_CHALLENGE_BYTES <= size <= MAX_CHALLENGE_BYTES):
            raise InvalidRequest(
                f"challenge size must be {MIN_CHALLENGE_BYTES} to {MAX_CHALLENGE_BYTES} bytes"
            )
        if type(max_outstanding) is not int or max_outstanding < 1:
            raise InvalidRequest("max_outstanding must be a positive int")
        self._random = randomness
        self._ttl = ttl
        self._size = size
        self._max = max_outstanding
        self._issued: OrderedDict[bytes, int] = OrderedDict()

    @property
    def ttl(self) -> int:
        return self._ttl

    def __len__(self) -> int:
        return len(self._issued)

    def __repr__(self) -> str:
        return f"ChallengeBook(ttl={self._ttl}, outstanding={len(self._issued)})"

    def issue(self, now: int) -> bytes:
        """A fresh challenge, remembered with its issue time ``now``."""
        challenge = self._random(self._size)
        if type(challenge) is not bytes or len(challenge) != self._size:
            raise InvalidRequest("randomness source returned the wrong length")
        if challenge in self._issued:
            # Only a broken randomness source repeats 128 bits: refuse to reuse.
            raise InvalidRequest("randomness source repeated a challenge")
        self._issued[challenge] = now
        while len(self._issued) > self._max:
            self._issued.popitem(last=False)
        return challenge

    def redeem(self, challenge: object, now: int) -> ChallengeRefusal | None:
        """Spend ``challenge``; ``None`` if it was issued here, unused and fresh.

        Spent whatever the outcome, so that a refused answer (an expired one,
        or one whose proof then fails) cannot be tried again.
        """
        if type(challenge) is not bytes:
            return ChallengeRefusal(reason=Reason.CHALLENGE_UNKNOWN, detail="challenge not bytes")
        issued_at = None
        # Constant-time comparison against each: the set is small and bounded.
        for known in self._issued:
            if hmac.compare_digest(known, challenge):
                issued_at = self._issued.pop(known)
                break
        if issued_at is None:
            return ChallengeRefusal(
                reason=Reason.CHALLENGE_UNKNOWN,
                detail="challenge was not issued by this unit, or was already used",
            )
        age = now - issued_at
        # A negative age means the clock went back since the challenge was
        # issued: its lifetime can no longer be measured, so it is refused.
        if age > self._ttl or age < 0:
            return ChallengeRefusal(
                reason=Reason.CHALLENGE_EXPIRED,
                detail=f"answered {age} s after issue; lifetime is {self._ttl} s",
            )
        return None

    def forget_all(self) -> None:
        self._issued.clear()
