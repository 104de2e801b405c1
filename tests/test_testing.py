"""trunkkey.testing: each strategy produces what it says, and the fixtures work."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trunkkey import Algorithm, ManualClock, Reason, SqliteLedger
from trunkkey.testing import (
    TAMPERED_REASONS,
    Bundle,
    Hostility,
    TokenCase,
    hostile_tokens,
    make_bundle,
    sqlite_ledger,
    trunkkey_bundle,  # noqa: F401 -- fixtures are found by name in the module
    trunkkey_clock,  # noqa: F401
    trunkkey_ledger_factory,  # noqa: F401
    valid_tokens,
)

# One bundle per algorithm for the whole module: key generation is not what is tested.
BUNDLES = {alg: make_bundle(algorithm=alg) for alg in Algorithm}
ED = BUNDLES[Algorithm.EDDSA]


@pytest.mark.parametrize("alg", list(Algorithm))
def test_valid_tokens_are_allowed(alg: Algorithm) -> None:
    bundle = BUNDLES[alg]

    @settings(max_examples=40, deadline=None)
    @given(valid_tokens(bundle))
    def check(case: TokenCase) -> None:
        decision = case.verify(bundle.fresh_verifier())
        assert decision.reason is Reason.ALLOWED, decision.detail
        assert case.kind is None
        assert case.expected == {Reason.ALLOWED}

    check()


@settings(max_examples=30, deadline=None)
@given(valid_tokens(ED))
def test_a_valid_token_is_allowed_once(case: TokenCase) -> None:
    verifier = ED.fresh_verifier()
    assert case.verify(verifier).allowed
    assert case.verify(verifier).reason is Reason.ALREADY_USED


@pytest.mark.parametrize("kind", list(Hostility))
def test_each_hostile_kind_gets_its_reason(kind: Hostility) -> None:
    @settings(max_examples=25, deadline=None)
    @given(hostile_tokens(ED, kinds=[kind]))
    def check(case: TokenCase) -> None:
        assert case.kind is kind
        decision = case.verify(ED.fresh_verifier())
        assert not decision.allowed
        case.check(decision)
        if kind is not Hostility.TAMPERED:
            assert len(case.expected) == 1

    check()


def test_tampered_reasons_never_include_allowed() -> None:
    assert Reason.ALLOWED not in TAMPERED_REASONS


@settings(max_examples=60, deadline=None)
@given(hostile_tokens(BUNDLES[Algorithm.ES256]))
def test_hostile_tokens_are_denied_for_p256_too(case: TokenCase) -> None:
    case.check(case.verify(BUNDLES[Algorithm.ES256].fresh_verifier()))


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_hostile_draw_covers_every_kind(data: st.DataObject) -> None:
    # Every kind must be reachable from the default (all kinds) strategy.
    case = data.draw(hostile_tokens(ED))
    assert case.kind in set(Hostility)


def test_check_reports_an_unexpected_decision() -> None:
    bundle = make_bundle()
    token = bundle.mint()
    case = TokenCase(
        token=token, vehicle_id=bundle.vehicle_id, action=bundle_action(), purpose=None,
        now=bundle.clock.now(), location=None, proof=None, challenge=None,
        expected=frozenset({Reason.EXPIRED}), kind=Hostility.EXPIRED,
    )
    with pytest.raises(AssertionError, match="got allowed"):
        case.check(case.verify(bundle.verifier))


def bundle_action() -> str:  # a plain string is accepted wherever an Action is
    return "trunk"


def test_hostile_tokens_needs_a_kind() -> None:
    with pytest.raises(ValueError, match="at least one"):
        hostile_tokens(ED, kinds=[])


def test_bundle_mint_and_verify_share_the_clock() -> None:
    bundle = make_bundle(vehicle_id="VIN-X")
    token = bundle.mint(valid_for=600)
    bundle.clock.advance(601 + bundle.policy.max_skew)
    assert bundle.verifier.verify(token, vehicle_id="VIN-X", action="trunk").reason is (
        Reason.EXPIRED
    )


def test_fresh_verifier_does_not_share_spent_tokens() -> None:
    bundle = make_bundle()
    token = bundle.mint()
    assert bundle.verifier.verify(token, vehicle_id=bundle.vehicle_id, action="trunk").allowed
    assert bundle.fresh_verifier().verify(
        token, vehicle_id=bundle.vehicle_id, action="trunk"
    ).allowed


def test_sqlite_ledger_context_manager_cleans_up(tmp_path: pytest.TempPathFactory) -> None:
    with sqlite_ledger(str(tmp_path)) as ledger:
        bundle = make_bundle(ledger=ledger)
        token = bundle.mint()
        assert bundle.verifier.verify(token, vehicle_id=bundle.vehicle_id, action="trunk").allowed
        assert ledger.count() == 1
        path = ledger.path
        assert path.exists()
    assert not path.exists()


# A fixture argument shadows the import that makes pytest find it: F811 by design.
def test_fixtures(
    trunkkey_clock: ManualClock,  # noqa: F811
    trunkkey_ledger_factory: Callable[[], SqliteLedger],  # noqa: F811
    trunkkey_bundle: Bundle,  # noqa: F811
) -> None:
    start = trunkkey_clock.now()
    trunkkey_clock.advance(5)
    assert trunkkey_clock.now() == start + 5
    first, second = trunkkey_ledger_factory(), trunkkey_ledger_factory()
    assert first.path != second.path
    assert first.consume("VIN", b"\x01" * 16, start + 60)
    assert second.consume("VIN", b"\x01" * 16, start + 60)  # separate files
    token = trunkkey_bundle.mint()
    decision = trunkkey_bundle.verifier.verify(
        token, vehicle_id=trunkkey_bundle.vehicle_id, action="trunk"
    )
    assert decision.allowed


def test_core_does_not_import_testing() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trunkkey, trunkkey.cli; "
        "print('hypothesis' in sys.modules, 'trunkkey.testing' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]

