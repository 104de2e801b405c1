"""Reading a SQLite write-ahead log before SQLite does: would its recovery drop a commit?

SQLite's recovery replays WAL frames while their salts match and their
checksums chain, and stops silently at the first that does not. That is right
for a write torn at the end by a crash, but a damaged frame in the middle
makes it drop every later commit, and a dropped commit is a spent token that
opens again. The ledger asks this module before it lets SQLite near the file.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time

from ._sqlite_file import StrPath

_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums in little- / big-endian words
_WAL_VERSION = 3007000
_WAL_HEADER = 32
_FRAME_HEADER = 24


_MASK32 = 0xFFFFFFFF


def _wal_checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum of ``data`` (a multiple of 8 bytes), from ``(s0, s1)``."""
    words = iter(struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data))
    for a, b in zip(words, words, strict=True):
        s0 = (s0 + a + s1) & _MASK32
        s1 = (s1 + b + s0) & _MASK32
    return s0, s1


def wal_drops_commits(path: StrPath) -> bool:
    """Whether SQLite's recovery of ``path``'s WAL would drop a committed transaction.

    Recovery replays frames while their salts match the WAL header and their
    checksums chain, and stops silently at the first that does not: right
    for a write torn by a crash at the end, but a damaged frame in the middle
    makes it drop every later commit too. So: after the frames SQLite keeps,
    is there still a commit frame of this WAL's generation whose checksum is
    right given the frame before it? A WAL being reset by another process at
    this moment can look the same, so a finding is confirmed by a second look.
    """
    if not _wal_scan(path):
        return False
    time.sleep(0.01)  # let a WAL reset by another process finish, then look again
    return _wal_scan(path)


def _wal_scan(path: StrPath) -> bool:
    try:
        with open(f"{os.fspath(path)}-wal", "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return False
    if len(data) < _WAL_HEADER + _FRAME_HEADER:
        return False
    magic, version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(
        ">8I", data[:_WAL_HEADER]
    )
    if (magic not in _WAL_MAGIC or version != _WAL_VERSION or not 512 <= page_size <= 65536
            or page_size & (page_size - 1)):
        # Without a readable header no frame can be told apart; a file that
        # holds whole frames was written by SQLite and is damaged.
        return len(data) >= _WAL_HEADER + _FRAME_HEADER + 512 and any(data)
    big_endian = magic == _WAL_MAGIC[1]
    size = _FRAME_HEADER + page_size
    frames = (len(data) - _WAL_HEADER) // size
    if frames == 0:
        return False
    if _wal_checksum(data[:24], big_endian, 0, 0) != (c1, c2):
        # SQLite ignores a WAL whose header fails its checksum, every frame of
        # it; the frames still name their generation's salts.
        kept = 0
        salt1, salt2 = struct.unpack_from(">2I", data, _WAL_HEADER + 8)
    else:
        recovered = _frames_sqlite_keeps(path, data)
        kept = (_frames_chained(data, big_endian, size, frames) if recovered is None
                else recovered)
    for index in range(kept, frames):
        offset = _WAL_HEADER + index * size
        _page, commit, f1, f2, k1, k2 = struct.unpack_from(">6I", data, offset)
        if not commit or (f1, f2) != (salt1, salt2):
            continue
        # Checked against the checksum stored in the frame before it, as if
        # the chain had held up to there.
        seed = (c1, c2) if index == 0 else struct.unpack_from(">2I", data, offset - size + 16)
        body = data[offset:offset + 8] + data[offset + _FRAME_HEADER:offset + size]
        if _wal_checksum(body, big_endian, *seed) == (k1, k2):
            return True
    return False


def _frames_chained(data: bytes, big_endian: bool, size: int, frames: int) -> int:
    """What SQLite's recovery keeps, worked out here: frames up to the last
    commit whose salts and chained checksums all hold (slower: Python)."""
    salts = struct.unpack_from(">2I", data, 16)
    seed = struct.unpack_from(">2I", data, 24)
    kept = 0
    for index in range(frames):
        offset = _WAL_HEADER + index * size
        _page, commit, f1, f2, k1, k2 = struct.unpack_from(">6I", data, offset)
        body = data[offset:offset + 8] + data[offset + _FRAME_HEADER:offset + size]
        if (f1, f2) != salts or _wal_checksum(body, big_endian, *seed) != (k1, k2):
            break
        seed = (k1, k2)
        if commit:
            kept = index + 1
    return kept


def _frames_sqlite_keeps(path: StrPath, wal: bytes) -> int | None:
    """How many frames of ``wal`` SQLite's own recovery accepts, found on a throwaway copy.

    The copy is recovered and checkpointed, never the ledger itself: a
    recovery of the real file followed by closing it would fold the kept
    frames in and delete the WAL, and with it the evidence of the rest.
    """
    # Imported here: only a WAL that looks damaged gets this far, and a car
    # that wakes to a healthy ledger should not load them (nor bz2 and lzma).
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    # In RAM where there is a RAM file system: a crashed ledger opens that much sooner.
    ram = "/dev/shm"  # noqa: S108 -- a private directory is made inside it
    scratch = ram if os.path.isdir(ram) and os.access(ram, os.W_OK) else None
    try:
        with tempfile.TemporaryDirectory(prefix="trunkkey-wal-check-", dir=scratch) as tmp:
            copy = Path(tmp) / "ledger.db"
            shutil.copyfile(path, copy)
            Path(f"{copy}-wal").write_bytes(wal)
            conn = sqlite3.connect(copy, isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = OFF")
                row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                conn.close()
            return max(0, int(row[1]))  # -1: the copy is not in WAL mode at all
    except OSError:
        return None  # no room for a copy: the caller works it out itself
    except (sqlite3.Error, ValueError, TypeError):
        # The database itself is unreadable (the checks after this refuse
        # it anyway): assume SQLite keeps nothing.
        return 0
