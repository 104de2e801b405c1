"""Small state files written so that a crash leaves the old or the new file, never half."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: write a sibling, fsync, rename, fsync the directory."""
    # Imported here: a car loads this module to verify, and writes only when
    # an update arrives (tempfile brings random and shutil with it).
    import tempfile  # noqa: PLC0415

    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    sync_directory(directory)


def sync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable: it is, only once the entry is."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
