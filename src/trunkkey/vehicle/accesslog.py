"""The car's access log: every security-relevant event, in a Merkle tree the car
signs checkpoints of, so that nobody can quietly drop or rewrite an entry.

Entries (:class:`~trunkkey.logentry.LogEntry`) come from the unit's event bus,
plus one at each boot. An opening's entry is different: it is written by the
token's spend itself (:class:`LoggedLedger`), so it is durable before the
actuator moves. On the SQLite ledger the car boots with, it goes into the
ledger's journal in the spend's own transaction (one commit, one fsync, see
:meth:`~trunkkey.SqliteLedger.spend_journalled`); with any other ledger the
log keeps its entries in memory (:class:`MemoryJournal`), for tests and
simulations.

The backend acknowledges (signs) a checkpoint once it holds every entry up
to it; the car then prunes those entries, keeping the tree's frontier, so
the log holds at most the entries since the last acknowledgement plus 64
hashes (docs/resource-bounds.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .. import cbor
from ..checkpoint import (
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
    LogBundle,
    LogEvidence,
    open_log_ack,
    sign_checkpoint,
)
from ..errors import DecodeError, InvalidRequest, SignatureError
from ..keys import VerificationKey
from ..ledger.base import DailyLimit, Ledger, SpendOutcome
from ..ledger.sqlite import SqliteLedger
from ..logentry import EntryKind, LogEntry
from ..merkle import FrontierTree, consistency_proof, inclusion_proof, leaf_hash
from ..signing import SigningBackend


class JournalStore(Protocol):
    """Where the log's entries are kept (the SQLite ledger's journal, or memory)."""

    def append(self, entry: bytes) -> int: ...

    def size(self) -> int: ...

    def base(self) -> tuple[int, bytes]: ...

    def entries(self, start: int) -> list[bytes]: ...

    def prune(self, upto: int, frontier: bytes) -> int: ...


class MemoryJournal:
    """A journal in memory: for a unit on a ledger other than SQLite (tests, simulations)."""

    def __init__(self) -> None:
        self._base = 0
        self._frontier = b""
        self._entries: list[bytes] = []

    def append(self, entry: bytes) -> int:
        self._entries.append(bytes(entry))
        return self.size() - 1

    def size(self) -> int:
        return self._base + len(self._entries)

    def base(self) -> tuple[int, bytes]:
        return self._base, self._frontier

    def entries(self, start: int) -> list[bytes]:
        return self._entries[max(0, start - self._base):]

    def prune(self, upto: int, frontier: bytes) -> int:
        dropped = upto - self._base
        self._entries = self._entries[dropped:]
        self._base, self._frontier = upto, frontier
        return dropped


class AccessLog:
    """One car's access log: append, checkpoint, prove, prune on acknowledgement."""

    def __init__(
        self, *, vehicle_id: str, vehicle_key: SigningBackend, store: JournalStore,
        time: Callable[[], int], ack_key: VerificationKey | None = None,
    ) -> None:
        self._vehicle = vehicle_id
        self._key = vehicle_key
        self._store = store
        self._time = time
        self._ack_key = ack_key
        base, frontier = store.base()
        hashes = cbor.decode(frontier) if frontier else []
        self._tree = FrontierTree(base, hashes)
        for entry in store.entries(base):
            self._tree.append(leaf_hash(entry))
        #: The index of the opening in progress: never pruned until it relocks.
        self.pinned: int | None = None

    def __repr__(self) -> str:
        return f"AccessLog({self._vehicle!r}, size={self.size}, pruned={self.pruned})"

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def pruned(self) -> int:
        """How many entries were pruned after the backend acknowledged them."""
        return self._tree.base

    @property
    def hashes_held(self) -> int:
        """Hashes the car holds in memory for its tree (the storage bound's measure)."""
        return self._tree.held

    def entries(self, start: int | None = None) -> list[bytes]:
        """The entries held, from ``start`` (default: the first not pruned)."""
        first = self.pruned if start is None else start
        if first < self.pruned:
            raise InvalidRequest(f"entries below {self.pruned} were pruned")
        return self._store.entries(first)

    def append(self, entry: LogEntry) -> int:
        """Append ``entry`` durably (its own commit); return its index."""
        return self.append_bytes(entry.encode())

    def append_bytes(self, data: bytes) -> int:
        """Append an encoded entry durably; return its index."""
        index = self._store.append(data)
        self._tree.append(leaf_hash(data))
        return index

    def appended(self, data: bytes) -> int:
        """Note an entry the store already holds (written by the spend)."""
        return self._tree.append(leaf_hash(data))

    def checkpoint(self, size: int | None = None) -> bytes:
        """A checkpoint of the log (now, or of an earlier size), signed by the car."""
        wanted = self.size if size is None else size
        return sign_checkpoint(
            self._key,
            Checkpoint(
                vehicle_id=self._vehicle, size=wanted, root=self._tree.root(wanted),
                time=self._time(),
            ),
        )

    def inclusion(self, index: int, size: int | None = None) -> InclusionProof:
        wanted = self.size if size is None else size
        path = inclusion_proof(index, wanted, self._tree.nodes)
        return InclusionProof(wanted, index, tuple(path))

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        wanted = self.size if new_size is None else new_size
        path = consistency_proof(old_size, wanted, self._tree.nodes)
        return ConsistencyProof(old_size, wanted, tuple(path))

    def evidence(self, index: int) -> LogEvidence:
        """For a receipt: a fresh checkpoint and the proof that entry ``index`` is in it."""
        entry = self._store.entries(index)[0]
        return LogEvidence(self.checkpoint(), entry, self.inclusion(index).encode())

    def bundle(self) -> LogBundle:
        """What the courier's handheld carries to the backend: the newest
        checkpoint, the entries since the last acknowledgement, and the
        consistency proof from there."""
        start = self.pruned
        proof = None if start == 0 else self.consistency(start).encode()
        return LogBundle(self.checkpoint(), start, tuple(self.entries(start)), proof)

    def apply_ack(self, signed: bytes) -> int:
        """Prune what a backend acknowledgement covers; return how many entries went.

        Refused (:class:`~trunkkey.errors.DecodeError` or
        :class:`~trunkkey.errors.SignatureError`) unless signed by the
        provisioned backend key, for this car, of a size this log has, with
        this log's root at that size. The opening in progress is never pruned.
        """
        if self._ack_key is None:
            raise SignatureError("this car holds no backend key to check acknowledgements with")
        acked = open_log_ack(signed, self._ack_key, vehicle_id=self._vehicle)
        if acked.size > self.size:
            raise DecodeError("acknowledgement of entries this car never wrote")
        if acked.size <= self.pruned:
            return 0
        if not acked.same_tree(
            Checkpoint(vehicle_id=self._vehicle, size=acked.size,
                       root=self._tree.root(acked.size), time=acked.time)
        ):
            raise DecodeError("acknowledgement of a log that is not this car's")
        upto = acked.size if self.pinned is None else min(acked.size, self.pinned)
        if upto <= self.pruned:
            return 0
        frontier = self._tree.frontier(upto)
        dropped = self._store.prune(upto, cbor.encode(frontier))
        self._tree.forget(upto)
        return dropped


class LoggedLedger:
    """The unit's ledger, writing the opening's entry with the token's spend.

    The unit names the opening it is about to decide (:meth:`expect`); a spend
    that answers ``FIRST_USE`` then carries that opening's entry, in the same
    transaction on a :class:`~trunkkey.SqliteLedger`. Every other call passes
    through unchanged.
    """

    def __init__(self, ledger: Ledger, log: AccessLog, journal: JournalStore, *, boot: int) -> None:
        self._ledger = ledger
        self._log = log
        self._same_file = isinstance(ledger, SqliteLedger) and not isinstance(
            journal, MemoryJournal
        )
        self._boot = boot
        self._action: str | None = None
        #: Index of the last opening's entry (set by a FIRST_USE spend).
        self.last_opening: int | None = None

    def expect(self, action: str | None) -> None:
        self._action = action
        self.last_opening = None

    def spend(
        self, vehicle_id: str, token_id: bytes, keep_until: int, *, issued_at: int, at: int,
        limits: tuple[DailyLimit, ...] = (),
    ) -> SpendOutcome:
        entry = LogEntry(
            kind=EntryKind.TOKEN_ALLOWED, at=at, boot=self._boot, token_id=token_id,
            action=self._action,
        ).encode()
        if self._same_file:
            assert isinstance(self._ledger, SqliteLedger)  # noqa: S101 -- checked at init
            outcome = self._ledger.spend_journalled(
                vehicle_id, token_id, keep_until, issued_at=issued_at, at=at, limits=limits,
                entry=entry,
            )
            if outcome is SpendOutcome.FIRST_USE:
                self.last_opening = self._log.appended(entry)
            return outcome
        outcome = self._ledger.spend(
            vehicle_id, token_id, keep_until, issued_at=issued_at, at=at, limits=limits
        )
        if outcome is SpendOutcome.FIRST_USE:
            self.last_opening = self._log.append_bytes(entry)
        return outcome

    def consume(self, vehicle_id: str, token_id: bytes, keep_until: int) -> bool:
        return self._ledger.consume(vehicle_id, token_id, keep_until)

    def prune(self, now: int, *, limit: int | None = None) -> int:
        return self._ledger.prune(now, limit=limit)

    def count(self) -> int:
        return self._ledger.count()

    def close(self) -> None:
        self._ledger.close()


def open_store(ledger: Ledger) -> JournalStore:
    """The journal in the SQLite ledger's file, or one in memory for other ledgers."""
    if isinstance(ledger, SqliteLedger):
        return ledger.journal
    return MemoryJournal()



def attach_log(
    ledger: Ledger, *, vehicle_id: str, vehicle_key: SigningBackend, boot: int,
    time: Callable[[], int], ack_key: VerificationKey | None,
) -> tuple[AccessLog, LoggedLedger]:
    """The unit's log over ``ledger``, with this boot's entry written, and the
    ledger the verifier spends through."""
    store = open_store(ledger)
    log = AccessLog(
        vehicle_id=vehicle_id, vehicle_key=vehicle_key, store=store, time=time, ack_key=ack_key
    )
    if log.size == 0 and isinstance(ledger, SqliteLedger) and ledger.start_floor > 0:
        # The ledger was started afresh after a loss, and its journal with it.
        log.append(LogEntry(kind=EntryKind.LEDGER_RECOVERED, at=None, boot=boot))
    log.append(LogEntry(kind=EntryKind.BOOT, at=None, boot=boot))
    return log, LoggedLedger(ledger, log, store, boot=boot)
