"""Test helpers for code that uses trunkkey: strategies, a fake clock, ledgers, fixtures.

This module needs the ``test`` extra (``pip install 'trunkkey[test]'``):
it imports hypothesis and pytest. Nothing in trunkkey itself imports it.

The shapes:

* :func:`make_bundle` gives a ready issuer, trust store and verifier on a
  :class:`~trunkkey.ManualClock` — one object to pass around in tests.
* :func:`valid_tokens` draws tokens that the bundle's verifier must allow,
  each with the context to present it in (:class:`TokenCase`).
* :func:`hostile_tokens` draws tokens that must be denied — tampered,
  expired, not yet valid, for another vehicle, presented for a wider scope
  than granted, signed by an untrusted key — each with the reasons a correct
  verifier may give.
* pytest fixtures ``trunkkey_clock``, ``trunkkey_ledger_factory`` and
  ``trunkkey_bundle``: enable them with ``pytest_plugins = ["trunkkey.testing"]``
  in your ``conftest.py``.

Token ids are drawn by hypothesis, so they repeat across examples (shrinking
makes them all zero): present each case to a fresh ledger, e.g.
:meth:`Bundle.fresh_verifier`, or a replay will be reported as one.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import pytest
from hypothesis import strategies as st

from ..claims import Action, Purpose, TokenClaims
from ..clock import ManualClock
from ..geo import Geofence, Location
from ..issuer import Issuer
from ..keys import Algorithm, SigningKey
from ..ledger import Ledger, MemoryLedger, SqliteLedger
from ..proof import make_proof
from ..reasons import Reason
from ..trust import TrustedKey, TrustStore
from ..verifier import Decision, Verifier, VerifierPolicy

__all__ = [
    "TAMPERED_REASONS",
    "Bundle",
    "Hostility",
    "TokenCase",
    "hostile_tokens",
    "make_bundle",
    "sqlite_ledger",
    "trunkkey_bundle",
    "trunkkey_clock",
    "trunkkey_ledger_factory",
    "valid_tokens",
]

#: 2026-05-04 09:00:00 UTC: the default start of a bundle's clock.
DEFAULT_START = 1_777_885_200
#: The shortest challenge the proof format allows (16 to 32 bytes).
_CHALLENGE_SIZE = 16

#: What a verifier may answer for a token with flipped bits: which one depends
#: on where the flip lands (envelope, header, payload or signature), but never
#: ``allowed``. A flip that turns the COSE_Sign1 tag (0xd2) into COSE_Encrypt0's
#: (0xd0) makes the bytes claim to be a sealed token, which cannot open.
TAMPERED_REASONS = frozenset({
    Reason.CANNOT_OPEN,
    Reason.MALFORMED,
    Reason.WRONG_TYPE,
    Reason.UNSUPPORTED_HEADER,
    Reason.UNKNOWN_KEY,
    Reason.ALG_MISMATCH,
    Reason.BAD_SIGNATURE,
})


class Hostility(StrEnum):
    """The kinds of hostile token :func:`hostile_tokens` draws."""

    TAMPERED = "tampered"  #: bits of a valid token flipped
    EXPIRED = "expired"  #: presented after its window (and the skew) ended
    NOT_YET_VALID = "not_yet_valid"  #: presented before its window (and the skew)
    OTHER_VEHICLE = "other_vehicle"  #: presented to a car it was not minted for
    WIDENED_ACTION = "widened_action"  #: asked to do another action than it grants
    WIDENED_PURPOSE = "widened_purpose"  #: presented for another purpose than it grants
    WRONG_KEY = "wrong_key"  #: signed by a key the verifier does not trust


_EXPECTED: dict[Hostility, frozenset[Reason]] = {
    Hostility.TAMPERED: TAMPERED_REASONS,
    Hostility.EXPIRED: frozenset({Reason.EXPIRED}),
    Hostility.NOT_YET_VALID: frozenset({Reason.NOT_YET_VALID}),
    Hostility.OTHER_VEHICLE: frozenset({Reason.WRONG_VEHICLE}),
    Hostility.WIDENED_ACTION: frozenset({Reason.WRONG_ACTION}),
    Hostility.WIDENED_PURPOSE: frozenset({Reason.WRONG_PURPOSE}),
    Hostility.WRONG_KEY: frozenset({Reason.UNKNOWN_KEY}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCase:
    """A token, the context to present it in, and the reasons a correct verifier gives."""

    token: bytes
    vehicle_id: str
    action: Action
    purpose: Purpose | None
    now: int
    location: Location | None
    proof: bytes | None
    challenge: bytes | None
    expected: frozenset[Reason]
    kind: Hostility | None = None  #: ``None`` for a valid token

    def verify(self, verifier: Verifier) -> Decision:
        """Present the token to ``verifier`` at this case's time and place."""
        return verifier.verify_at(
            self.token,
            now=self.now,
            vehicle_id=self.vehicle_id,
            action=self.action,
            purpose=self.purpose,
            location=self.location,
            proof=self.proof,
            challenge=self.challenge,
        )

    def check(self, decision: Decision) -> None:
        """Fail with a readable message unless ``decision`` is one this case expects."""
        if decision.reason not in self.expected:
            wanted = ", ".join(sorted(r.value for r in self.expected))
            raise AssertionError(
                f"{self.kind or 'valid'} token: got {decision.reason.value} "
                f"({decision.detail}), expected {wanted}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """An issuer, the trust store that trusts it, and a verifier, on one manual clock."""

    signing_key: SigningKey
    issuer: Issuer
    trust_store: TrustStore
    clock: ManualClock
    ledger: Ledger
    verifier: Verifier
    vehicle_id: str
    #: A key with the issuer's name that the trust store does NOT hold.
    stranger_key: SigningKey
    #: The courier device key that ``cnf``-bound tokens name.
    courier_key: SigningKey

    @property
    def policy(self) -> VerifierPolicy:
        return self.verifier.policy

    def fresh_verifier(self, ledger: Ledger | None = None) -> Verifier:
        """A verifier like :attr:`verifier` on a new ledger (in-memory by default)."""
        return Verifier(
            trust_store=self.trust_store,
            ledger=ledger if ledger is not None else MemoryLedger(),
            clock=self.clock,
            policy=self.policy,
        )

    def mint(self, *, valid_for: int = 4 * 3600, action: Action = Action.TRUNK,
             purpose: Purpose = Purpose.DELIVERY) -> bytes:
        """A token for this bundle's vehicle, valid from the clock's now."""
        now = self.clock.now()
        return self.issuer.mint(vehicle_id=self.vehicle_id, action=action, purpose=purpose,
                                not_before=now, expires=now + valid_for)


def make_bundle(
    *,
    algorithm: Algorithm = Algorithm.EDDSA,
    issuer_name: str = "shop.test",
    vehicle_id: str = "VIN-TEST-0001",
    start: int = DEFAULT_START,
    ledger: Ledger | None = None,
    policy: VerifierPolicy | None = None,
) -> Bundle:
    """Fresh keys, an issuer, a trust store holding only its key, and a verifier."""
    key = SigningKey.generate(algorithm)
    clock = ManualClock(start)
    store = TrustStore([TrustedKey.create(key.public_key, issuer_name)])
    used = ledger if ledger is not None else MemoryLedger()
    return Bundle(
        signing_key=key,
        issuer=Issuer(key, issuer_name, clock=clock),
        trust_store=store,
        clock=clock,
        ledger=used,
        verifier=Verifier(trust_store=store, ledger=used, clock=clock, policy=policy),
        vehicle_id=vehicle_id,
        stranger_key=SigningKey.generate(algorithm),
        courier_key=SigningKey.generate(),
    )


@contextlib.contextmanager
def sqlite_ledger(directory: str | Path | None = None) -> Iterator[SqliteLedger]:
    """A :class:`~trunkkey.SqliteLedger` in a new file, closed and deleted afterwards."""
    with tempfile.TemporaryDirectory(dir=directory, prefix="trunkkey-ledger-") as tmp:
        ledger = SqliteLedger(Path(tmp) / "ledger.sqlite3")
        try:
            yield ledger
        finally:
            ledger.close()


# -- strategies ---------------------------------------------------------------

_names = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S")), min_size=1,
    max_size=20,
)


@st.composite
def _valid_case(draw: st.DrawFn, bundle: Bundle) -> tuple[TokenClaims, TokenCase]:
    policy = bundle.policy
    base = bundle.clock.now()
    not_before = base + draw(st.integers(-3600, 7 * 24 * 3600))
    lifetime = draw(st.integers(1, policy.max_lifetime))
    issued_at = not_before - draw(st.integers(0, 3600))
    action = draw(st.sampled_from(Action))
    purpose = draw(st.sampled_from(Purpose))
    geofence = draw(st.none() | st.builds(
        Geofence.from_degrees,
        st.floats(-89.0, 89.0), st.floats(-179.0, 179.0), st.integers(5, 50_000),
    ))
    bound = draw(st.booleans())
    order_ref = draw(st.none() | st.binary(min_size=1, max_size=64))
    claims = TokenClaims(
        issuer=bundle.issuer.name,
        vehicle_id=bundle.vehicle_id,
        not_before=not_before,
        expires=not_before + lifetime,
        issued_at=issued_at,
        token_id=draw(st.binary(min_size=16, max_size=16)),
        action=action,
        purpose=purpose,
        geofence=geofence,
        courier_key=bundle.courier_key.public_key if bound else None,
        order_ref=order_ref,
    )
    token = bundle.issuer.sign_claims(claims)
    challenge = (
        draw(st.binary(min_size=_CHALLENGE_SIZE, max_size=_CHALLENGE_SIZE)) if bound else None
    )
    proof = (
        make_proof(bundle.courier_key, token=token, vehicle_id=bundle.vehicle_id,
                   challenge=challenge)
        if challenge is not None else None
    )
    case = TokenCase(
        token=token,
        vehicle_id=bundle.vehicle_id,
        action=action,
        purpose=draw(st.sampled_from([None, purpose])),
        now=draw(st.integers(not_before, not_before + lifetime - 1)),
        location=None if geofence is None else geofence.centre,
        proof=proof,
        challenge=challenge,
        expected=frozenset({Reason.ALLOWED}),
    )
    return claims, case


def valid_tokens(bundle: Bundle) -> st.SearchStrategy[TokenCase]:
    """Tokens from ``bundle.issuer`` that ``bundle``'s verifier must allow (on a fresh ledger).

    They vary in action, purpose, window, geofence (the car is then at its
    centre), ``cnf`` binding (the case then carries a valid proof) and order
    reference.
    """
    return _valid_case(bundle).map(lambda pair: pair[1])


@st.composite
def _hostile_case(draw: st.DrawFn, bundle: Bundle, kinds: tuple[Hostility, ...]) -> TokenCase:
    kind = draw(st.sampled_from(kinds))
    claims, case = draw(_valid_case(bundle))
    skew = bundle.policy.max_skew
    expected = _EXPECTED[kind]
    if kind is Hostility.TAMPERED:
        token = bytearray(case.token)
        positions = draw(st.sets(st.integers(0, len(token) * 8 - 1), min_size=1, max_size=4))
        for bit in positions:
            token[bit // 8] ^= 1 << (bit % 8)
        return replace(case, token=bytes(token), expected=expected, kind=kind)
    if kind is Hostility.EXPIRED:
        now = claims.expires + skew + draw(st.integers(0, 30 * 24 * 3600))
        return replace(case, now=now, expected=expected, kind=kind)
    if kind is Hostility.NOT_YET_VALID:
        now = claims.not_before - skew - draw(st.integers(1, 30 * 24 * 3600))
        return replace(case, now=now, expected=expected, kind=kind)
    if kind is Hostility.OTHER_VEHICLE:
        other = draw(_names.filter(lambda name: name != bundle.vehicle_id))
        return replace(case, vehicle_id=other, expected=expected, kind=kind)
    if kind is Hostility.WIDENED_ACTION:
        wider = next(a for a in Action if a is not claims.action)
        return replace(case, action=wider, expected=expected, kind=kind)
    if kind is Hostility.WIDENED_PURPOSE:
        wider_purpose = next(p for p in Purpose if p is not claims.purpose)
        return replace(case, purpose=wider_purpose, expected=expected, kind=kind)
    # WRONG_KEY: the same claims under a key the trust store does not hold.
    stranger = Issuer(bundle.stranger_key, bundle.issuer.name, clock=bundle.clock)
    return replace(case, token=stranger.sign_claims(claims), expected=expected, kind=kind)


def hostile_tokens(
    bundle: Bundle, kinds: Iterable[Hostility] | None = None
) -> st.SearchStrategy[TokenCase]:
    """Tokens that ``bundle``'s verifier must deny, each with the reasons it may give.

    ``kinds`` limits the draw to some :class:`Hostility` kinds (default: all).
    Each case is a valid case with exactly one thing made wrong, so a verifier
    that allows any of them has a hole in exactly that check.
    """
    chosen = tuple(Hostility) if kinds is None else tuple(kinds)
    if not chosen:
        raise ValueError("kinds must name at least one Hostility")
    return _hostile_case(bundle, chosen)


# -- pytest fixtures ----------------------------------------------------------


@pytest.fixture
def trunkkey_clock() -> ManualClock:
    """A :class:`~trunkkey.ManualClock` at :data:`DEFAULT_START`."""
    return ManualClock(DEFAULT_START)


@pytest.fixture
def trunkkey_ledger_factory(tmp_path: Path) -> Iterator[Callable[[], SqliteLedger]]:
    """Call it to get a new :class:`~trunkkey.SqliteLedger` file; all are closed afterwards."""
    made: list[SqliteLedger] = []

    def factory() -> SqliteLedger:
        ledger = SqliteLedger(tmp_path / f"ledger-{len(made)}.sqlite3")
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close()


@pytest.fixture
def trunkkey_bundle() -> Bundle:
    """A :func:`make_bundle` with Ed25519 keys and an in-memory ledger."""
    return make_bundle()

