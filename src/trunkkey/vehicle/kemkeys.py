"""The car's own KEM keys, beside its trust anchors, rotated by signed trust updates.

The car makes each key itself and keeps the private half in its state
directory (one PEM file per key, mode 0600); only the public half leaves, in
a proposal signed by the vehicle key (:mod:`.kemproposal`). A key opens
tokens only once the carmaker has endorsed it in a trust update bound to
this car (:mod:`trunkkey.consent.rotation`, role 2), and only inside the
window that update gave it:

1. ``propose(suite, now=...)`` makes a **pending** key, writes it, and
   returns the signed proposal; a second proposal replaces the pending key
   (no update may name the first any more; its file is set aside until the
   next adoption, for an update that checked it just before);
2. the carmaker verifies the proposal and signs a bound update listing the
   car's keys — the new one from ``T``, the old one until ``T + overlap``;
3. the unit applies it (``apply_trust_update``): the update is persisted
   first, then :meth:`CarKemKeys.adopt` makes the listed keys the keyring,
   and deletes the files of keys no longer listed.

A key named by an update that the car does not hold refuses the whole
update (``unknown_key``), so no update can leave the car unable to open
what the backend seals to it. Until the unit has booted and applied its
trust state, no key is known endorsed: ``propose`` then deletes no file
(the pending key it replaces may be one an update endorsed just before a
crash). Files: ``kem-pending.key`` and ``kem-<key id>.key``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..claims import check_name
from ..consent._files import sync_directory
from ..consent.rotation import KemKeyEntry
from ..errors import DecodeError, InvalidRequest, KeyFileError
from ..keys import VerificationKey
from ..sealed import (
    KEM_KEY_BYTES,
    CarKemKey,
    CarKeyring,
    CarPublicKey,
    KeyringEntry,
    kem_key_id,
    load_car_key,
)
from ..sealed_pq import PRIVATE_BYTES, CarHybridKemKey, CarHybridPublicKey
from ..signing import SigningBackend, signing_backend
from .kemproposal import SUITES, KemProposal, sign_kem_proposal

PENDING_FILE = "kem-pending.key"
_KEY_FILE = re.compile(r"kem-(pending|[0-9a-f]{16})\.key")
_TMP_FILE = ".kem-pending.tmp"

_PrivateKey = CarKemKey | CarHybridKemKey


class CarKemKeys(CarKeyring):
    """A keyring whose keys the car made and a signed, bound trust update endorsed.

    Give it to the unit as ``car_keys`` (``VehicleUnit(..., car_keys=kem,
    consent=...)``): it opens tokens with the endorsed keys current at the
    decision time, and the unit's trust updates set them. Until an update
    endorses one, it opens nothing.
    """

    __slots__ = ("_adopted", "_directory", "_endorsed", "_held", "_lock", "_randomness",
                 "_superseded", "_vehicle", "_vehicle_key")

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        vehicle_id: str,
        vehicle_key: SigningBackend,
        randomness: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        """``directory``: where the private keys live (the unit's state directory);
        ``vehicle_key``: the key that signs this car's receipts signs its proposals."""
        self._vehicle = check_name(vehicle_id, "vehicle_id")
        self._vehicle_key = signing_backend(vehicle_key, "vehicle_key")
        self._randomness = randomness
        self._directory = Path(directory)
        self._directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._endorsed: frozenset[bytes] = frozenset()
        #: Whether the trust state has said which keys are endorsed since boot.
        self._adopted = False
        #: raw public key -> (private key, its file)
        self._held: dict[bytes, tuple[_PrivateKey, Path]] = {}
        #: Pending keys a newer proposal replaced: kept, but not offered to an
        #: update, until the next adoption says whether one was endorsed.
        self._superseded: set[bytes] = set()
        with contextlib.suppress(FileNotFoundError):
            (self._directory / _TMP_FILE).unlink()  # a proposal the car died writing
        for path in sorted(self._directory.iterdir()):
            if _KEY_FILE.fullmatch(path.name):
                key = load_car_key(path)
                self._held[key.public_key.raw] = (key, path)
        self._publish(())

    # -- what the unit and the trust update see --------------------------------
    @property
    def vehicle_id(self) -> str:
        return self._vehicle

    @property
    def vehicle_public_key(self) -> VerificationKey:
        """The key the carmaker checks this car's proposals with."""
        return self._vehicle_key.public_key

    def holds(self, key: CarPublicKey | CarHybridPublicKey) -> bool:
        """Whether the car holds this key's private half (endorsed or pending);
        not a pending key that a newer proposal replaced."""
        return (isinstance(key, CarPublicKey | CarHybridPublicKey) and key.raw in self._held
                and key.raw not in self._superseded)

    @property
    def pending(self) -> CarPublicKey | CarHybridPublicKey | None:
        """The public half of the key proposed and not (yet) endorsed, if any."""
        for key, path in tuple(self._held.values()):
            if path.name == PENDING_FILE and key.public_key.raw not in self._endorsed:
                return key.public_key
        return None

    def adopt(self, entries: Sequence[KemKeyEntry]) -> None:
        """Open tokens with exactly ``entries`` (each in its window) from now on.

        Called by the trust updater once the update that lists them is
        persisted, and at boot with what it restored (nothing before the
        first update); until then :meth:`propose` deletes no file. Keys the
        car does not hold are skipped (the updater refuses an update naming
        one); files of keys no longer listed are deleted, except the pending one.
        """
        with self._lock:
            ring = []
            for entry in sorted(entries, key=lambda e: e.not_before, reverse=True):
                held = self._held.get(entry.key.raw)
                if held is not None:
                    ring.append(KeyringEntry(key=held[0], not_before=entry.not_before,
                                             not_after=entry.not_after))
            self._endorsed = frozenset(entry.key.raw for entry in entries)
            self._adopted = True
            self._publish(tuple(ring))
            # Tidy after the keyring changed: a failure here leaves files that
            # the next adoption (or boot) tidies, never a key opening too much.
            with contextlib.suppress(OSError, KeyFileError):
                self._tidy()
            self._superseded -= self._endorsed

    def _tidy(self) -> None:
        for raw, (key, path) in list(self._held.items()):
            if raw in self._endorsed and path.name == PENDING_FILE:
                self._to_own_file(raw, key, path)
            elif raw not in self._endorsed and path.name != PENDING_FILE:
                path.unlink(missing_ok=True)
                del self._held[raw]
                self._superseded.discard(raw)
        sync_directory(self._directory)

    # -- the car's side of a rotation ---------------------------------------------
    def propose(self, suite: str = "x25519", *, now: int) -> bytes:
        """Make a new pending key of ``suite`` (``"x25519"`` or ``"mlkem768-x25519"``),
        write it (0600) and return its proposal, signed by the vehicle key, for
        the carmaker. ``now``: the car's trusted time, the proposal's ``created_at``."""
        if suite not in SUITES:
            raise InvalidRequest(f"suite must be one of {', '.join(SUITES)}")
        key = self._generate(suite)
        proposal = KemProposal(vehicle_id=self._vehicle, key=key.public_key, created_at=now)
        with self._lock:
            pending = self._directory / PENDING_FILE
            if self._adopted:
                # Until the trust state is applied nothing is known endorsed,
                # and tidying would delete the endorsed keys' files.
                with contextlib.suppress(OSError, KeyFileError):
                    self._tidy()
            tmp = self._directory / _TMP_FILE
            key.save(tmp, overwrite=True)
            self._set_aside(pending)
            os.replace(tmp, pending)
            sync_directory(self._directory)
            self._held[key.public_key.raw] = (key, pending)
        return sign_kem_proposal(self._vehicle_key, proposal)

    def _set_aside(self, pending: Path) -> None:
        """Move the pending key, if any, to its own file, never deleting it.

        An update that checked it may be persisting it right now, or (before
        the trust state is applied) may have done so just before a crash:
        deleting it would strand the car. Unless endorsed, it is superseded:
        no update may name it, and the next tidying (the next adoption, or
        proposal after one) deletes it unless an update endorsed it meanwhile.
        """
        for raw, (old, path) in list(self._held.items()):
            if path != pending:
                continue
            try:
                self._to_own_file(raw, old, path)
            except OSError as exc:
                raise KeyFileError(f"cannot set {path} aside: {exc.strerror}") from None
            if raw not in self._endorsed:
                self._superseded.add(raw)

    def _to_own_file(self, raw: bytes, key: _PrivateKey, pending: Path) -> None:
        """Move ``key`` out of the pending file into ``kem-<key id>.key``.

        Only while the pending file still holds it: a second ``CarKemKeys``
        on this directory (made by mistake) may have moved it and written its
        own key there, which this one must not take for its own. The key is
        in memory, so if no file holds it any more it is written again.
        """
        target = pending.with_name(f"kem-{kem_key_id(key.public_key).hex()}.key")
        if _file_holds(pending, raw):
            os.replace(pending, target)
        elif not _file_holds(target, raw):
            key.save(target, overwrite=True)
        self._held[raw] = (key, target)

    def _generate(self, suite: str) -> _PrivateKey:
        if suite == "x25519":
            return CarKemKey(self._randomness(KEM_KEY_BYTES))
        return CarHybridKemKey(self._randomness(PRIVATE_BYTES))

    # -- what it refuses -----------------------------------------------------------
    def replace(self, keys: object) -> None:  # noqa: ARG002 -- refused, whatever it is given
        raise InvalidRequest("a car's own KEM keys change only through a signed trust update")

    def __repr__(self) -> str:
        pending = "" if self.pending is None else ", 1 pending"
        return f"CarKemKeys({self._vehicle!r}, {len(self.entries)} keys{pending})"

    def __reduce__(self) -> Any:
        raise TypeError("a car's KEM keys are not pickled")


def _file_holds(path: Path, raw: bytes) -> bool:
    """Whether ``path`` is a key file of the private half of public key ``raw``."""
    try:
        return load_car_key(path).public_key.raw == raw
    except (KeyFileError, DecodeError):
        return False
