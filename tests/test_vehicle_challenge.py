"""Challenges: issued by the unit, single use, short-lived, bounded in number."""

from __future__ import annotations

import itertools

import pytest

from trunkkey import InvalidRequest, Reason
from trunkkey.vehicle import ChallengeBook


def counter_randomness() -> object:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def test_fresh_challenge_redeems_once() -> None:
    book = ChallengeBook(randomness=counter_randomness(), ttl=30)  # type: ignore[arg-type]
    c = book.issue(100)
    assert len(c) == 16
    assert book.redeem(c, 130) is None  # the boundary counts as fresh
    again = book.redeem(c, 130)
    assert again is not None
    assert again.reason is Reason.CHALLENGE_UNKNOWN


def test_expired_challenge_has_its_own_reason_and_is_spent() -> None:
    book = ChallengeBook(randomness=counter_randomness(), ttl=30)  # type: ignore[arg-type]
    c = book.issue(100)
    refusal = book.redeem(c, 131)
    assert refusal is not None
    assert refusal.reason is Reason.CHALLENGE_EXPIRED
    assert "31 s" in refusal.detail
    refusal = book.redeem(c, 131)
    assert refusal is not None
    assert refusal.reason is Reason.CHALLENGE_UNKNOWN


@pytest.mark.parametrize("answer", [b"\x00" * 16, b"", "text", None, b"\x01" * 40])
def test_unknown_or_garbage_challenge(answer: object) -> None:
    book = ChallengeBook(randomness=counter_randomness())  # type: ignore[arg-type]
    book.issue(0)
    refusal = book.redeem(answer, 0)
    assert refusal is not None
    assert refusal.reason is Reason.CHALLENGE_UNKNOWN


def test_outstanding_challenges_are_bounded_oldest_forgotten() -> None:
    book = ChallengeBook(randomness=counter_randomness(), max_outstanding=3)  # type: ignore[arg-type]
    issued = [book.issue(0) for _ in range(5)]
    assert len(book) == 3
    assert book.redeem(issued[0], 0) is not None
    assert book.redeem(issued[4], 0) is None


def test_broken_randomness_is_refused() -> None:
    book = ChallengeBook(randomness=lambda n: b"\x07" * n)
    book.issue(0)
    with pytest.raises(InvalidRequest):
        book.issue(0)
    with pytest.raises(InvalidRequest):
        ChallengeBook(randomness=lambda n: b"short").issue(0)


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"ttl": 301}, {"size": 8}, {"size": 33},
                                    {"max_outstanding": 0}])
def test_bad_configuration(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidRequest):
        ChallengeBook(randomness=bytes, **kwargs)  # type: ignore[arg-type]


def test_a_clock_that_went_back_since_issue_expires_the_challenge() -> None:
    # Measured on a clock set back by 1 s, a 31 s relay would look like 30 s;
    # the lifetime is measured on the raw reading and a negative age refuses.
    book = ChallengeBook(randomness=counter_randomness(), ttl=30)  # type: ignore[arg-type]
    challenge = book.issue(1000)
    refusal = book.redeem(challenge, 999)
    assert refusal is not None
    assert refusal.reason is Reason.CHALLENGE_EXPIRED
