"""RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs.

Pure functions over SHA-256 hashes, with the RFC's domain separation (a
leaf is ``SHA-256(0x00 || entry)``, an interior node
``SHA-256(0x01 || left || right)``), so a leaf can never be passed off as a
node or the reverse. The proof algorithms are those of RFC 9162 section 2.1
(generation) and 2.1.3.2 / 2.1.4.2 (verification), in the RFC's hash order.

Generation works over a *node source*: a function that answers the hash of
the subtree over entries ``[lo, hi)``. A full list of leaf hashes is one
(:func:`node_source`); the car's log, which has pruned old entries and kept
only the frontier, is another. Verification needs nothing but the proof.

No proof for a tree of up to 2**64 entries is longer than :data:`MAX_PROOF_HASHES`
hashes, so a verifier refuses a longer one before hashing anything.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

from .errors import InvalidRequest

HASH_SIZE = 32
#: The largest tree size the proofs here speak of (RFC 9162 uses 64-bit sizes).
MAX_TREE_SIZE = 2**64 - 1
#: No inclusion or consistency proof in a tree of up to MAX_TREE_SIZE entries is longer.
MAX_PROOF_HASHES = 64
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: The hash of the subtree over entries ``[lo, hi)`` (``0 <= lo < hi``).
NodeSource = Callable[[int, int], bytes]


def leaf_hash(entry: bytes) -> bytes:
    """MTH of one entry: ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + bytes(entry)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``): where RFC 9162 splits."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_size(size: int, what: str) -> None:
    if type(size) is not int or not (0 <= size <= MAX_TREE_SIZE):
        raise InvalidRequest(f"{what} must be an int from 0 to 2**64 - 1")


def node_source(leaf_hashes: Sequence[bytes]) -> NodeSource:
    """A node source over a complete list of leaf hashes (perfect subtrees cached)."""
    cache: dict[tuple[int, int], bytes] = {}

    def subtree(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaf_hashes[lo]
        found = cache.get((lo, hi))
        if found is not None:
            return found
        k = split_point(hi - lo)
        value = node_hash(subtree(lo, lo + k), subtree(lo + k, hi))
        if (hi - lo) & (hi - lo - 1) == 0:  # perfect subtrees never change
            cache[(lo, hi)] = value
        return value

    return subtree


def root(size: int, nodes: NodeSource) -> bytes:
    """MTH of the first ``size`` entries (the empty tree's is SHA-256 of nothing)."""
    _check_size(size, "size")
    return EMPTY_ROOT if size == 0 else nodes(0, size)


def root_of(entries: Sequence[bytes]) -> bytes:
    """MTH of a list of entries."""
    return root(len(entries), node_source([leaf_hash(e) for e in entries]))


def inclusion_proof(index: int, size: int, nodes: NodeSource) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, leaf to root."""
    _check_size(size, "size")
    if type(index) is not int or not (0 <= index < size):
        raise InvalidRequest("index must be an int below size")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(nodes(lo + k, hi))
            hi = lo + k
        else:
            path.append(nodes(lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, nodes: NodeSource) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1."""
    _check_size(new_size, "new_size")
    if type(old_size) is not int or not (0 < old_size <= new_size):
        raise InvalidRequest("old_size must be an int from 1 to new_size")
    return _subproof(old_size, 0, new_size, True, nodes)


def _subproof(m: int, lo: int, hi: int, whole: bool, nodes: NodeSource) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if whole else [nodes(lo, hi)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, whole, nodes), nodes(lo + k, hi)]
    return [*_subproof(m - k, lo + k, hi, False, nodes), nodes(lo, lo + k)]


def _well_formed(proof: Sequence[bytes]) -> bool:
    return len(proof) <= MAX_PROOF_HASHES and all(
        type(h) is bytes and len(h) == HASH_SIZE for h in proof
    )


def verify_inclusion(
    entry_hash: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` place this leaf hash at ``index`` of ``size``?"""
    if not (_well_formed(proof) and _well_formed([entry_hash, expected_root])):
        return False
    if type(index) is not int or type(size) is not int or not (0 <= index < size <= MAX_TREE_SIZE):
        return False
    fn, sn, r = index, size - 1, entry_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, expected_root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of ``old_size`` a prefix of that of ``new_size``?"""
    if not (_well_formed(proof) and _well_formed([old_root, new_root])):
        return False
    if type(old_size) is not int or type(new_size) is not int:
        return False
    if not (0 < old_size <= new_size <= MAX_TREE_SIZE):
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return (
        sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)
    )


def compact_range(size: int, nodes: NodeSource) -> list[tuple[int, int, bytes]]:
    """The frontier of a tree of ``size``: its maximal perfect subtrees, left to right.

    ``(lo, hi, hash)`` for each; at most 64 of them. They are all a log that
    pruned its first ``size`` entries needs to keep proving consistency from
    ``size`` on and inclusion of every later entry.
    """
    _check_size(size, "size")
    return [(lo, hi, nodes(lo, hi)) for lo, hi in _compact_ranges(size)]


class FrontierTree:
    """A growing tree that may forget its first entries, keeping only the frontier.

    After :meth:`forget` up to ``m``, it holds the compact range of the first
    ``m`` entries (at most 64 hashes) and the leaf hashes from ``m`` on, and
    still answers the root of every size from ``m`` on, the inclusion proof
    of every entry from ``m`` on, and the consistency proof from any size
    from ``m`` on (every node those need is in the frontier or after it).
    """

    def __init__(self, base: int = 0, frontier: Sequence[bytes] = ()) -> None:
        _check_size(base, "base")
        ranges = _compact_ranges(base)
        if len(frontier) != len(ranges) or not all(
            type(h) is bytes and len(h) == HASH_SIZE for h in frontier
        ):
            raise InvalidRequest(f"a frontier of size {base} is {len(ranges)} hashes of 32 bytes")
        self._base = base
        self._known = dict(zip(ranges, frontier, strict=True))
        self._leaves: list[bytes] = []
        self._cache: dict[tuple[int, int], bytes] = {}

    @property
    def base(self) -> int:
        """How many entries were forgotten."""
        return self._base

    @property
    def size(self) -> int:
        return self._base + len(self._leaves)

    @property
    def held(self) -> int:
        """Hashes held: the frontier's, the leaves', the cached nodes'."""
        return len(self._known) + len(self._leaves) + len(self._cache)

    def append(self, entry_hash: bytes) -> int:
        """Add a leaf hash; return its index."""
        if type(entry_hash) is not bytes or len(entry_hash) != HASH_SIZE:
            raise InvalidRequest("a leaf hash is 32 bytes")
        self._leaves.append(entry_hash)
        return self.size - 1

    def nodes(self, lo: int, hi: int) -> bytes:
        """The node source over this tree (see :data:`NodeSource`)."""
        known = self._known.get((lo, hi))
        if known is not None:
            return known
        if hi - lo == 1:
            if lo < self._base:
                raise InvalidRequest(f"entry {lo} was pruned")
            return self._leaves[lo - self._base]
        found = self._cache.get((lo, hi))
        if found is not None:
            return found
        k = split_point(hi - lo)
        value = node_hash(self.nodes(lo, lo + k), self.nodes(lo + k, hi))
        if (hi - lo) & (hi - lo - 1) == 0 and hi <= self.size:
            self._cache[(lo, hi)] = value
        return value

    def root(self, size: int | None = None) -> bytes:
        wanted = self.size if size is None else size
        if type(wanted) is not int or not self._base <= wanted <= self.size:
            raise InvalidRequest(f"a root needs a size from {self._base} to {self.size}")
        return root(wanted, self.nodes)

    def frontier(self, size: int) -> list[bytes]:
        """The compact range of the first ``size`` entries, as hashes."""
        return [h for _, _, h in compact_range(size, self.nodes)]

    def forget(self, upto: int) -> None:
        """Drop every leaf below ``upto``, keeping the frontier that replaces them."""
        if type(upto) is not int or not self._base <= upto <= self.size:
            raise InvalidRequest(f"forget up to a size from {self._base} to {self.size}")
        frontier = self.frontier(upto)
        self._known = dict(zip(_compact_ranges(upto), frontier, strict=True))
        self._leaves = self._leaves[upto - self._base:]
        self._cache = {key: h for key, h in self._cache.items() if key[0] >= upto}
        self._base = upto


def _compact_ranges(size: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    lo = 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            out.append((lo, lo + (1 << bit)))
            lo += 1 << bit
    return out
