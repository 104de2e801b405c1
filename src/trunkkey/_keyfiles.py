"""Key files: created readable by their owner only; read only if they are ours
and no one else can read them.

Used by :meth:`trunkkey.SigningKey.save` and :meth:`trunkkey.SigningKey.load`.
"""

from __future__ import annotations

import contextlib
import os
import stat

from .errors import InsecureKeyFile, KeyFileError

#: No key file trunkkey reads is larger: a PEM key, even encrypted, is a few hundred bytes.
MAX_KEY_FILE = 64 * 1024


def write_private_file(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> None:
    """Create ``path`` with mode 0600 before any byte is written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    if overwrite:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; pass overwrite=True to replace it") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        # The umask cannot widen 0600, but an inherited ACL or odd umask could
        # narrow it unexpectedly; set it explicitly.
        os.fchmod(fd, 0o600)
        # os.write may write less (a filling disk returns a short count before
        # ENOSPC): a key saved in part would be found unreadable only when needed.
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)  # no part of a key is left to be mistaken for one
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)


def read_private_file(path: str | os.PathLike[str]) -> bytes:
    try:
        # Non-blocking: a FIFO in a key file's place would otherwise hang the open
        # until someone writes to it (a regular file ignores the flag).
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            # A directory opens for reading too, then fails on read with a bare OSError.
            raise KeyFileError(f"{path} is not a regular file")
        if os.name == "posix" and info.st_uid != os.geteuid():
            # Its owner can read and replace the key whatever the mode says;
            # only root gets this far with another user's 0600 file.
            raise InsecureKeyFile(
                f"{path} is owned by another user (uid {info.st_uid}); chown it to the "
                "user that reads it"
            )
        if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFile(
                f"{path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                "run chmod 600 on it"
            )
        if info.st_size > MAX_KEY_FILE:
            raise KeyFileError(f"{path} is too large to be a key file")
        # Read at most one byte past the cap: a file that grows after fstat
        # must not make us read without bound.
        data = b""
        while len(data) <= MAX_KEY_FILE and (
            chunk := os.read(fd, MAX_KEY_FILE + 1 - len(data))
        ):
            data += chunk
        if len(data) > MAX_KEY_FILE:
            raise KeyFileError(f"{path} is too large to be a key file")
        return data
    finally:
        os.close(fd)
