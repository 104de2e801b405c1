"""The fuzz targets themselves, driven by hypothesis: seeds pass, mutations never escape.

The coverage-guided run (atheris) is ``python -m tools.fuzz.run``; this keeps the
harnesses honest in every test run, without atheris.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.fuzz.targets import TARGETS, max_len, seeds
from trunkkey.sealed import FIXED_HEADER, MAX_SEALED


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_run_clean(name: str) -> None:
    assert seeds(name), name
    for seed in seeds(name):
        TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(TARGETS))
@given(data=st.data())
def test_mutated_seeds_only_produce_typed_outcomes(name: str, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds(name)))
    position = data.draw(st.integers(0, len(seed)))
    insert = data.draw(st.binary(max_size=8))
    cut = data.draw(st.integers(0, 4))
    TARGETS[name](seed[:position] + insert + seed[position + cut :])


@pytest.mark.parametrize("name", ["sealed", "sealed_bundle"])
def test_the_sealed_targets_are_fuzzed_to_one_byte_past_the_largest_sealed_token(
    name: str,
) -> None:
    assert max_len(name) == MAX_SEALED + 1
    for size in (MAX_SEALED, MAX_SEALED + 1):
        TARGETS[name](FIXED_HEADER + bytes(size - len(FIXED_HEADER)))


def test_a_genuine_finding_is_reported() -> None:
    # A target must fail loudly when its invariant breaks, or it checks nothing.
    from tools.fuzz import targets

    original = targets.usual_claim_values
    targets.usual_claim_values = lambda data: ["different"]  # type: ignore[assignment]
    try:
        with pytest.raises(AssertionError, match="disagree"):
            targets.fuzz_claims(seeds("claims")[0])
    finally:
        targets.usual_claim_values = original


#: Inputs the coverage-guided fuzzer once found to escape a target, kept so
#: they can never come back (base64, target name, what was wrong).
FINDINGS = [
    ("cose", "0oRRpAGgBKEAAAKDoAD//////6CgAP//MDxQ",
     "crit holding a map raised TypeError (unhashable) in verify_sign1"),
    ("claims",
     "qgFocmV0YWlsZXIDcTBIR0NNODI2MzNBMDA0MzUyBBprSeAQBRprSdIABhprSdIAB1AAAAAAAAAAAAAAAA"
     "AAAAABCKEBowEBIAYhWCBPWXaJeV9w/3ki7Io+vewl7w/xR1z5tOQEoszTjfIsWToAAQAACjoGIVggT1l2"
     "iXlfcP95IuyKPr3sAGQCR29yZGVyLTE=",
     "unknown claims with both int and text labels: sorting them for the message raised TypeError"),
]


@pytest.mark.parametrize(("name", "data", "what"), FINDINGS)
def test_fuzz_findings_stay_fixed(name: str, data: str, what: str) -> None:
    import base64

    TARGETS[name](base64.b64decode(data))


def test_crit_with_a_non_label_is_a_decode_error() -> None:
    import base64

    from trunkkey import DecodeError, SigningKey
    from trunkkey.cose import verify_sign1

    # cbor2 5 decodes the map inside crit and trunkkey refuses the label; cbor2 6
    # refuses the unhashable map itself. Either way: our own error, never a crash.
    with pytest.raises(DecodeError, match=r"crit labels|not CBOR: CBORDecodeError"):
        verify_sign1(base64.b64decode(FINDINGS[0][1]), SigningKey.generate().public_key)


def test_unknown_labels_of_mixed_types_are_a_decode_error_in_claims_and_grants() -> None:
    # Sorting {99, "x"} for an error message raised TypeError before.
    from trunkkey import DecodeError, cbor
    from trunkkey.claims import decode_claims
    from trunkkey.consent.grant import decode_grant

    with pytest.raises(DecodeError, match="unknown"):
        decode_claims(
            cbor.encode({1: "i", 3: "v", 4: 2, 5: 1, 6: 1, 7: b"x" * 16, -65537: 5, 99: 0, "x": 0})
        )
    with pytest.raises(DecodeError, match="unknown"):
        decode_grant(cbor.encode({1: b"k" * 32, 2: "n", 3: 5, 4: 1, 5: 2, 6: 0, 99: 0, "x": 0}))
