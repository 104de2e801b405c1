"""RFC 9162 Merkle trees: the published test data passes, every corruption of
a proof is refused, and the proofs mean what they say for any tree.

The vectors are the RFC 6962 reference implementation's, as published by
transparency-dev/merkle (tests/vectors/rfc9162, Apache-2.0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._vectors import MISSING, load_json, missing, vector_dir
from trunkkey.errors import InvalidRequest
from trunkkey.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    compact_range,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    node_source,
    root,
    root_of,
    split_point,
    verify_consistency,
    verify_inclusion,
)


def _data() -> dict[str, Any] | None:
    where = vector_dir("rfc9162")
    return None if where is None else load_json(where / "merkle.json")


DATA = _data()


def _cases(kind: str) -> list[Any]:
    if DATA is None:
        return [MISSING]
    return [pytest.param(case, id=f"{kind}-{i}") for i, case in enumerate(DATA[kind])]


def _leaves() -> list[bytes]:
    assert DATA is not None
    return [bytes.fromhex(x) for x in DATA["leaves"]]


def _corruptions(proof: list[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Every single flipped bit, a missing, an extra and a reordered hash."""
    for i, h in enumerate(proof):
        for bit in range(len(h) * 8):
            flipped = bytearray(h)
            flipped[bit // 8] ^= 1 << (bit % 8)
            yield f"bit {bit} of hash {i}", [*proof[:i], bytes(flipped), *proof[i + 1:]]
        yield f"hash {i} missing", proof[:i] + proof[i + 1:]
    for i in range(len(proof) + 1):
        yield f"extra hash at {i}", [*proof[:i], b"\x5a" * 32, *proof[i:]]
    for i in range(len(proof) - 1):
        if proof[i] != proof[i + 1]:
            yield f"hashes {i},{i + 1} swapped", [
                *proof[:i], proof[i + 1], proof[i], *proof[i + 2:]
            ]


def _shape(index: int, size: int) -> list[bool] | None:
    """Which side each sibling of ``index``'s path sits on (None: no such leaf)."""
    if not 0 <= index < size:
        return None
    return [lo < index for lo, _ in _siblings(index, size)]


def _siblings(index: int, size: int) -> Iterator[tuple[int, int]]:
    lo, hi, out = 0, size, []
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    yield from reversed(out)


def _walk(m: int, n: int, steps: int) -> list[bool] | None:
    """Which hashes RFC 9162's consistency check combines on which side (None: fails)."""
    out: list[bool] = []
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    for _ in range(steps - 1):
        if sn == 0:
            return None
        out.append(bool(fn & 1 or fn == sn))
        if fn & 1 == 0 and fn == sn:
            while fn & 1 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    return out if sn == 0 else None


# -- the published vectors -----------------------------------------------------
def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    if DATA is None:
        missing("rfc9162")
    assert root_of([]) == EMPTY_ROOT == bytes.fromhex(DATA["empty_tree_root"])


@pytest.mark.parametrize("case", _cases("roots"))
def test_tree_root_matches_the_reference(case: dict[str, Any] | None) -> None:
    if case is None:
        missing("rfc9162")
    assert root_of(_leaves()[: case["tree_size"]]).hex() == case["root"]


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_inclusion_proof_matches_the_reference_and_verifies(case: dict[str, Any] | None) -> None:
    if case is None:
        missing("rfc9162")
    index, size = case["leaf_index"], case["tree_size"]
    expected = [bytes.fromhex(h) for h in case["proof"]]
    nodes = node_source([leaf_hash(e) for e in _leaves()[:size]])
    assert inclusion_proof(index, size, nodes) == expected
    leaf = leaf_hash(bytes.fromhex(case["leaf"]))
    assert verify_inclusion(leaf, index, size, expected, bytes.fromhex(case["root"]))


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_every_corrupted_inclusion_proof_is_refused(case: dict[str, Any] | None) -> None:
    if case is None:
        missing("rfc9162")
    index, size, top = case["leaf_index"], case["tree_size"], bytes.fromhex(case["root"])
    proof = [bytes.fromhex(h) for h in case["proof"]]
    leaf = leaf_hash(bytes.fromhex(case["leaf"]))
    for what, bad in _corruptions(proof):
        assert not verify_inclusion(leaf, index, size, bad, top), what
    for wrong in {index - 1, index + 1, index ^ 1, size, -1} - {index}:
        assert not verify_inclusion(leaf, wrong, size, proof, top), f"index {wrong}"
    for wrong in {size - 1, size + 1, size * 2, 0} - {size}:
        # RFC 9162 binds the size through the root: a size whose path has the
        # very same shape (index 0 of 7 and of 8) cannot be told apart from the
        # proof alone, which is why a checkpoint signs size and root together.
        if _shape(index, wrong) != _shape(index, size):
            assert not verify_inclusion(leaf, index, wrong, proof, top), f"size {wrong}"
    assert not verify_inclusion(leaf_hash(b"other"), index, size, proof, top)
    assert not verify_inclusion(bytes.fromhex(case["leaf"]) or b"", index, size, proof, top)


@pytest.mark.parametrize("case", _cases("consistency"))
def test_consistency_proof_matches_the_reference_and_verifies(
    case: dict[str, Any] | None,
) -> None:
    if case is None:
        missing("rfc9162")
    m, n = case["size1"], case["size2"]
    expected = [bytes.fromhex(h) for h in case["proof"]]
    nodes = node_source([leaf_hash(e) for e in _leaves()[:n]])
    assert consistency_proof(m, n, nodes) == expected
    assert verify_consistency(m, n, bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"]),
                              expected)


@pytest.mark.parametrize("case", _cases("consistency"))
def test_every_corrupted_consistency_proof_is_refused(case: dict[str, Any] | None) -> None:
    if case is None:
        missing("rfc9162")
    m, n = case["size1"], case["size2"]
    old, new = bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])
    proof = [bytes.fromhex(h) for h in case["proof"]]
    for what, bad in _corruptions(proof):
        assert not verify_consistency(m, n, old, new, bad), what
    for wrong_m in {m - 1, m + 1, 0, n + 1} - {m}:
        assert not verify_consistency(wrong_m, n, old, new, proof), f"old size {wrong_m}"
    for wrong_n in {n - 1, n + 1, 2 * n} - {n}:
        # As for inclusion: a new size that walks the proof the same way is
        # bound only by the root it is signed with, in a checkpoint.
        steps = len(proof) + (m & (m - 1) == 0)
        if _walk(m, wrong_n, steps) != _walk(m, n, steps):
            assert not verify_consistency(m, wrong_n, old, new, proof), f"new size {wrong_n}"
    if old != new:
        assert not verify_consistency(m, n, new, old, proof)
    flipped = bytes([new[0] ^ 1]) + new[1:]
    assert not verify_consistency(m, n, old, flipped, proof)


# -- domain separation and bounds -----------------------------------------------
def test_a_leaf_cannot_pass_for_an_interior_node() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(a + b) != node_hash(a, b)


def test_a_proof_longer_than_any_tree_needs_is_refused_before_hashing() -> None:
    leaf = leaf_hash(b"x")
    too_long = [b"\0" * 32] * (MAX_PROOF_HASHES + 1)
    assert not verify_inclusion(leaf, 0, 2**64 - 1, too_long, leaf)
    assert not verify_consistency(1, 2**64 - 1, leaf, leaf, too_long)


def test_a_hash_of_the_wrong_length_is_refused() -> None:
    nodes = node_source([leaf_hash(bytes([i])) for i in range(4)])
    proof = inclusion_proof(1, 4, nodes)
    top = root(4, nodes)
    assert not verify_inclusion(leaf_hash(b"\x01"), 1, 4, [proof[0][:31], *proof[1:]], top)


def test_generation_refuses_indexes_and_sizes_outside_the_tree() -> None:
    nodes = node_source([leaf_hash(b"x")])
    with pytest.raises(InvalidRequest):
        inclusion_proof(1, 1, nodes)
    with pytest.raises(InvalidRequest):
        consistency_proof(0, 1, nodes)
    with pytest.raises(InvalidRequest):
        consistency_proof(2, 1, nodes)


# -- properties -------------------------------------------------------------------
ENTRIES = st.lists(st.binary(max_size=8), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(ENTRIES)
def test_inclusion_proofs_verify_for_every_entry_and_fail_for_every_other_leaf(
    entries: list[bytes],
) -> None:
    hashes = [leaf_hash(e) for e in entries]
    nodes = node_source(hashes)
    size, top = len(entries), root(len(entries), nodes)
    for i in range(size):
        proof = inclusion_proof(i, size, nodes)
        assert len(proof) <= max(1, size - 1).bit_length()
        assert verify_inclusion(hashes[i], i, size, proof, top)
        for j, other in enumerate(hashes):
            if other != hashes[i]:
                assert not verify_inclusion(other, i, size, proof, top), (i, j)


@settings(max_examples=60, deadline=None)
@given(ENTRIES, st.data())
def test_any_append_only_growth_verifies_as_consistent(entries: list[bytes], data: Any) -> None:
    n = len(entries)
    m = data.draw(st.integers(1, n))
    nodes = node_source([leaf_hash(e) for e in entries])
    proof = consistency_proof(m, n, nodes)
    assert len(proof) <= 2 * n.bit_length()
    assert verify_consistency(m, n, root(m, nodes), root(n, nodes), proof)


@settings(max_examples=60, deadline=None)
@given(ENTRIES, st.data())
def test_a_forked_tree_is_detected(entries: list[bytes], data: Any) -> None:
    """Change, delete or reorder an entry below the old size: no proof joins the two."""
    n = len(entries)
    m = data.draw(st.integers(1, n))
    i = data.draw(st.integers(0, m - 1))
    forked = list(entries)
    forked[i] = forked[i] + b"!"
    honest = node_source([leaf_hash(e) for e in entries])
    fork = node_source([leaf_hash(e) for e in forked])
    proof = consistency_proof(m, n, fork)
    assert not verify_consistency(m, n, root(m, honest), root(n, fork), proof)
    deleted = entries[:i] + entries[i + 1:] + [b"pad"]
    gone = node_source([leaf_hash(e) for e in deleted])
    if deleted[:m] != entries[:m]:
        assert not verify_consistency(
            m, n, root(m, honest), root(n, gone), consistency_proof(m, n, gone)
        )


@settings(max_examples=40, deadline=None)
@given(ENTRIES, st.data())
def test_the_frontier_alone_proves_everything_after_it(entries: list[bytes], data: Any) -> None:
    """A log that pruned its first m entries, keeping the compact range, still proves."""
    n = len(entries)
    m = data.draw(st.integers(1, n))
    hashes = [leaf_hash(e) for e in entries]
    full = node_source(hashes)
    known = {(lo, hi): h for lo, hi, h in compact_range(m, full)}
    assert len(known) <= m.bit_length()
    later = node_source(hashes)

    def pruned(lo: int, hi: int) -> bytes:
        if (lo, hi) in known:
            return known[(lo, hi)]
        if hi - lo == 1:
            assert lo >= m, f"asked for pruned entry {lo}"
            return later(lo, hi)
        k = split_point(hi - lo)
        return node_hash(pruned(lo, lo + k), pruned(lo + k, hi))

    assert root(n, pruned) == root(n, full)
    assert consistency_proof(m, n, pruned) == consistency_proof(m, n, full)
    for i in range(m, n):
        assert inclusion_proof(i, n, pruned) == inclusion_proof(i, n, full)
