"""Signed checkpoints of a car's access log, the backend's acknowledgements, and
the proofs that travel with them.

A **checkpoint** says "my log holds ``size`` entries whose RFC 9162 root is
``root``, at trusted time ``time``", signed by the car's vehicle key as a
COSE_Sign1 with its own ``typ`` (:attr:`Typ.CHECKPOINT`), so it can never pass
as a receipt or a token. An **acknowledgement** (:attr:`Typ.LOG_ACK`) is the
same statement signed by the backend: "I hold this car's log up to ``size``";
the car prunes what it covers.

Proofs use the encodings of the COSE Receipts draft
(draft-ietf-cose-merkle-tree-proofs, RFC9162_SHA256 verifiable data
structure): an inclusion proof is ``[tree-size, leaf-index, [+ hash]]``, a
consistency proof ``[tree-size-1, tree-size-2, [* hash]]``. The draft's
receipt is a COSE_Sign1 over a detached root with the proofs in an
unprotected header, which trunkkey's strict COSE profile does not carry: the
root is signed inside the checkpoint's payload instead, and the proofs travel
beside it (docs/token-format.md, "Access log").
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from . import cbor
from .claims import check_name
from .cose import Typ, open_sign1, sign1
from .errors import DecodeError, InvalidRequest
from .keys import VerificationKey
from .merkle import HASH_SIZE, MAX_PROOF_HASHES, MAX_TREE_SIZE, leaf_hash, verify_inclusion
from .signing import SigningBackend, signing_backend

#: No checkpoint or acknowledgement is longer (a 64-byte vehicle id, the largest ints).
MAX_CHECKPOINT_BYTES = 256
#: No encoded proof is longer (64 hashes and two 64-bit ints).
MAX_PROOF_BYTES = 24 + MAX_PROOF_HASHES * (HASH_SIZE + 2)
_VEHICLE, _SIZE, _ROOT, _TIME = 1, 2, 3, 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A log's size and root hash at a trusted time, as one vehicle states it."""

    vehicle_id: str
    size: int
    root: bytes
    time: int

    def __post_init__(self) -> None:
        check_name(self.vehicle_id, "vehicle_id")
        if type(self.size) is not int or not (0 <= self.size <= MAX_TREE_SIZE):
            raise InvalidRequest("size must be an int from 0 to 2**64 - 1")
        if type(self.root) is not bytes or len(self.root) != HASH_SIZE:
            raise InvalidRequest("root must be 32 bytes")
        if type(self.time) is not int or not (0 <= self.time <= MAX_TREE_SIZE):
            raise InvalidRequest("time must be an unsigned 64-bit int")

    def encode(self) -> bytes:
        return cbor.encode(
            {_VEHICLE: self.vehicle_id, _SIZE: self.size, _ROOT: self.root, _TIME: self.time}
        )

    def same_tree(self, other: Checkpoint) -> bool:
        """Same size and the same root (the times may differ)."""
        return self.size == other.size and hmac.compare_digest(self.root, other.root)


def sign_checkpoint(vehicle_key: SigningBackend, checkpoint: Checkpoint) -> bytes:
    """The car's signed statement of its log (``typ`` CHECKPOINT)."""
    return _sign(vehicle_key, checkpoint, Typ.CHECKPOINT)


def open_checkpoint(
    data: bytes, vehicle_key: VerificationKey, *, vehicle_id: str | None = None
) -> Checkpoint:
    """Verify a checkpoint under the car's key; raise DecodeError or SignatureError."""
    return _open(data, vehicle_key, Typ.CHECKPOINT, vehicle_id)


def sign_log_ack(backend_key: SigningBackend, checkpoint: Checkpoint) -> bytes:
    """The backend's signed statement that it holds the car's log up to ``checkpoint``."""
    return _sign(backend_key, checkpoint, Typ.LOG_ACK)


def open_log_ack(
    data: bytes, backend_key: VerificationKey, *, vehicle_id: str | None = None
) -> Checkpoint:
    """Verify an acknowledgement under the backend's key."""
    return _open(data, backend_key, Typ.LOG_ACK, vehicle_id)


def _sign(key: SigningBackend, checkpoint: Checkpoint, typ: Typ) -> bytes:
    signing_backend(key, "key")
    if not isinstance(checkpoint, Checkpoint):
        raise InvalidRequest("checkpoint must be a trunkkey.checkpoint.Checkpoint")
    return sign1(key, checkpoint.encode(), typ=typ)


def _open(data: bytes, key: VerificationKey, typ: Typ, vehicle_id: str | None) -> Checkpoint:
    what = typ.name.lower().replace("_", " ")
    if type(data) is not bytes or len(data) > MAX_CHECKPOINT_BYTES:
        raise DecodeError(f"{what} is not bytes of a bounded size")
    body = cbor.decode(open_sign1(data, key, typ=typ, kid=key.kid).payload)
    if type(body) is not dict or set(body) != {_VEHICLE, _SIZE, _ROOT, _TIME}:
        raise DecodeError(f"{what} has the wrong members")
    try:
        checkpoint = Checkpoint(
            vehicle_id=body[_VEHICLE], size=body[_SIZE], root=body[_ROOT], time=body[_TIME]
        )
    except InvalidRequest as exc:
        raise DecodeError(f"{what} content invalid: {exc}") from None
    if vehicle_id is not None and checkpoint.vehicle_id != vehicle_id:
        raise DecodeError(f"{what} is for another vehicle")
    return checkpoint


# -- proofs, in the COSE Receipts draft's encoding ---------------------------------
@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``index`` is in the log of ``size`` entries (RFC 9162 audit path)."""

    size: int
    index: int
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        return cbor.encode([self.size, self.index, list(self.path)])

    def holds(self, entry: bytes, checkpoint: Checkpoint) -> bool:
        """Does this proof place ``entry`` in the log ``checkpoint`` speaks for?"""
        return self.size == checkpoint.size and verify_inclusion(
            leaf_hash(entry), self.index, self.size, self.path, checkpoint.root
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The log of ``old_size`` entries is a prefix of the log of ``new_size``."""

    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def encode(self) -> bytes:
        return cbor.encode([self.old_size, self.new_size, list(self.path)])


def _proof_parts(data: bytes, what: str) -> tuple[int, int, tuple[bytes, ...]]:
    if type(data) is not bytes or len(data) > MAX_PROOF_BYTES:
        raise DecodeError(f"{what} is not bytes of a bounded size")
    item = cbor.decode(data)
    if type(item) is not list or len(item) != 3:
        raise DecodeError(f"{what} is not [size, size, [hashes]]")
    first, second, path = item
    if type(first) is not int or type(second) is not int or first < 0 or second < 0:
        raise DecodeError(f"{what} sizes must be unsigned ints")
    if type(path) is not list or len(path) > MAX_PROOF_HASHES or not all(
        type(h) is bytes and len(h) == HASH_SIZE for h in path
    ):
        raise DecodeError(f"{what} path must be at most 64 hashes of 32 bytes")
    return first, second, tuple(path)


def decode_inclusion_proof(data: bytes) -> InclusionProof:
    size, index, path = _proof_parts(data, "inclusion proof")
    return InclusionProof(size, index, path)


def decode_consistency_proof(data: bytes) -> ConsistencyProof:
    old, new, path = _proof_parts(data, "consistency proof")
    return ConsistencyProof(old, new, path)


# -- what travels: a receipt's evidence, and the courier's bundle ------------------
@dataclass(frozen=True, slots=True)
class LogEvidence:
    """A receipt's proof that its opening is in the car's log: the checkpoint
    signed at the relock, the opening's entry, and its inclusion proof."""

    checkpoint: bytes
    entry: bytes
    proof: bytes

    def to_cbor(self) -> list[bytes]:
        return [self.checkpoint, self.entry, self.proof]

    def check(self, vehicle_key: VerificationKey, *, vehicle_id: str | None = None) -> Checkpoint:
        """The checkpoint, once it verifies and the proof places the entry in it."""
        checkpoint = open_checkpoint(self.checkpoint, vehicle_key, vehicle_id=vehicle_id)
        if not decode_inclusion_proof(self.proof).holds(self.entry, checkpoint):
            raise DecodeError("the opening's inclusion proof does not hold")
        return checkpoint


def read_evidence(item: object) -> LogEvidence:
    """A receipt's log member, unverified: ``[checkpoint, entry, proof]``."""
    if type(item) is not list or len(item) != 3 or not all(type(x) is bytes for x in item):
        raise DecodeError("log evidence is not [checkpoint, entry, proof]")
    return LogEvidence(item[0], item[1], item[2])


#: At most this many entries travel in one bundle (a handheld's visit).
MAX_BUNDLE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class LogBundle:
    """What a courier's handheld carries from the car to the backend.

    The car's newest checkpoint, the entries from ``start`` (the size the
    backend last acknowledged) up to the checkpoint's size, and the
    consistency proof from ``start`` to it (``None`` when ``start`` is 0).
    """

    checkpoint: bytes
    start: int
    entries: tuple[bytes, ...]
    consistency: bytes | None

    def encode(self) -> bytes:
        # trunkkey's CBOR has no null: an empty bstr stands for "no proof".
        proof = b"" if self.consistency is None else self.consistency
        return cbor.encode([self.checkpoint, self.start, list(self.entries), proof])


def decode_bundle(data: bytes) -> LogBundle:
    """Read a bundle's structure (nothing in it is verified yet)."""
    if type(data) is not bytes or len(data) > MAX_BUNDLE_ENTRIES * 160 + 4096:
        raise DecodeError("log bundle is not bytes of a bounded size")
    item = cbor.decode(data)
    if type(item) is not list or len(item) != 4:
        raise DecodeError("log bundle is not [checkpoint, start, [entries], proof]")
    checkpoint, start, entries, consistency = item
    if type(checkpoint) is not bytes or type(start) is not int or start < 0:
        raise DecodeError("log bundle's checkpoint or start is malformed")
    if type(entries) is not list or len(entries) > MAX_BUNDLE_ENTRIES or not all(
        type(e) is bytes for e in entries
    ):
        raise DecodeError("log bundle's entries are malformed")
    if type(consistency) is not bytes:
        raise DecodeError("log bundle's consistency proof is malformed")
    return LogBundle(checkpoint, start, tuple(entries), consistency or None)
