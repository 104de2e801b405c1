"""What the examples share: the consent story's scenes, and the attackers' signing tool.

The worlds themselves come from :mod:`trunkkey.testing` (the tests build on
them too); the scenes here are the ones ``docs/consent.md`` tells, played by
``consent_story.py``. Examples run as scripts, so ``import world`` finds
this file beside them.
"""

from __future__ import annotations

from trunkkey.claims import Action, Purpose
from trunkkey.consent import UpdateRefused
from trunkkey.consent.grant import (
    Grant,
    access_mask,
    encode_chain,
    encode_grant,
    grant_digest,
    make_grant,
)
from trunkkey.consent.revocation import sign_revocation_list
from trunkkey.cose import Typ, sign1
from trunkkey.keys import SigningKey
from trunkkey.testing.consent import DAY, ORDER, ConsentWorld
from trunkkey.verifier import Decision


def sign_unchecked(delegator: SigningKey, grant: Grant) -> bytes:
    """A delegation signed *without* the minting-time narrowing check: the attackers' tool.

    The library has no such function (``sign_delegation`` refuses to widen a
    scope); an attacker holding a delegator's key simply signs the bytes.
    """
    return sign1(delegator, encode_grant(grant), typ=Typ.GRANT, include_kid=False)


# -- the scenes ---------------------------------------------------------------

def scene_delivery(w: ConsentWorld) -> Decision:
    """carrier -> retailer -> owner's consent -> carmaker root: the trunk opens, offline."""
    return w.present(w.token(), w.chain)


def scene_widened_scope(w: ConsentWorld) -> Decision:
    """The retailer delegates more than the owner consented to (a whole year, any action)."""
    wide = make_grant(
        grantee=w.carrier.public_key, grantee_name="dhl",
        access=access_mask([Action.TRUNK, Action.UNLOCK_RELOCK], [Purpose.DELIVERY]),
        not_before=w.clock.now(), expires=w.clock.now() + 365 * DAY, depth=0,
    )
    chain = encode_chain([w.root_grant, sign_unchecked(w.retailer, wide)])
    return w.present(w.token(), chain)


def scene_expired_consent(w: ConsentWorld) -> Decision:
    """The owner's consent ran out; the carrier still has a token minted before."""
    token = w.token()
    w.clock.advance(31 * DAY)
    return w.present(token, w.chain)


def scene_revoked_consent(w: ConsentWorld) -> Decision:
    """The owner withdraws consent; the car applies the carmaker's list, then a courier arrives."""
    token = w.token()
    revocation = sign_revocation_list(
        w.root, version=w.revocations.version + 1, issued_at=w.clock.now(),
        grants=[grant_digest(w.root_grant)],
    )
    w.revocations.apply(revocation, w.anchors, now=w.clock.now())
    return w.present(token, w.chain)


def scene_carrier_outside_grant(w: ConsentWorld) -> Decision:
    """The carrier mints an unlock-relock token; the retailer granted it the trunk only."""
    return w.present(w.token(action=Action.UNLOCK_RELOCK), w.chain, action=Action.UNLOCK_RELOCK)


def scene_rolled_back_list(w: ConsentWorld) -> tuple[UpdateRefused | None, Decision]:
    """After revocation, an attacker replays the older, empty list to the car."""
    now = w.clock.now()
    old = sign_revocation_list(w.root, version=1, issued_at=now)
    new = sign_revocation_list(
        w.root, version=2, issued_at=now, grants=[grant_digest(w.carrier_grant)]
    )
    w.revocations.apply(old, w.anchors, now=now)
    w.revocations.apply(new, w.anchors, now=now)
    refused: UpdateRefused | None = None
    try:
        w.revocations.apply(old, w.anchors, now=now)
    except UpdateRefused as exc:
        refused = exc
    return refused, w.present(w.token(), w.chain)


def scene_superseded_token(w: ConsentWorld) -> Decision:
    """RollJam: a token captured unused; the order was re-issued, so the old one is dead."""
    captured = w.token()
    w.clock.advance(60)
    fresh_iat = w.clock.now()
    revocation = sign_revocation_list(
        w.root, version=w.revocations.version + 1, issued_at=fresh_iat,
        supersede={ORDER: fresh_iat},
    )
    w.revocations.apply(revocation, w.anchors, now=fresh_iat)
    return w.present(captured, w.chain)
