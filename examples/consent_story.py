"""The consent flow, told end to end: an owner's consent, a retailer, a carrier, a courier.

Run: ``python examples/consent_story.py``

Each scene builds a fresh world (carmaker root, retailer, carrier, courier,
and a car that trusts only the root), plays one situation, and prints what
the car decided, offline, with its reason code. The scenes live in
``world.py`` beside this file, so the tests run exactly the same scenes.
"""

from __future__ import annotations

import sys

import world

from trunkkey import Reason
from trunkkey.testing import consent


def main() -> int:
    failures = 0

    def show(title: str, got: Reason, expected: Reason) -> None:
        nonlocal failures
        mark = "ok " if got is expected else "BAD"
        failures += got is not expected
        print(f"[{mark}] {title:<58} -> {got.value}")

    w = consent.build_world()
    sizes = consent.minimal_presentation_size(w)
    print(f"presentation, lean two-link chain: chain {sizes['chain']} + token {sizes['token']}"
          f" + proof {sizes['proof']} = {sizes['total']} bytes"
          f" ({sizes['total_by_reference']} with grants named by digest)")
    show("courier under carrier -> retailer -> consent -> root",
         world.scene_delivery(w).reason, Reason.ALLOWED)
    show("retailer delegates more than the owner consented to",
         world.scene_widened_scope(consent.build_world()).reason, Reason.SCOPE_WIDENED)
    show("owner's consent has expired",
         world.scene_expired_consent(consent.build_world()).reason, Reason.GRANT_EXPIRED)
    show("owner withdrew consent (revocation list applied)",
         world.scene_revoked_consent(consent.build_world()).reason, Reason.GRANT_REVOKED)
    show("carrier mints unlock-relock; it was granted the trunk only",
         world.scene_carrier_outside_grant(consent.build_world()).reason, Reason.SCOPE_WIDENED)
    refused, decision = world.scene_rolled_back_list(consent.build_world())
    show("older revocation list replayed to the car",
         refused.reason if refused is not None else Reason.ALLOWED, Reason.ROLLBACK)
    show("  ...and the token under the revoked grant",
         decision.reason, Reason.GRANT_REVOKED)
    show("captured token after the order was re-issued (RollJam)",
         world.scene_superseded_token(consent.build_world()).reason, Reason.SUPERSEDED)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
