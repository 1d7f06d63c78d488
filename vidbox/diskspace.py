"""Free space. New uploads stop while less than ``uploads.reserve_bytes`` would be left, so
vidbox does not fill its own disk. When the disk fills anyway (processing output, another
program), a small emergency file beside the database is given up, so sign-ins and other small
writes keep working while someone frees space."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from vidbox.errors import VidboxError
from vidbox.logs import log_fields

log = logging.getLogger("vidbox")

EMERGENCY_BYTES = 8 * 1024**2


class DiskFull(VidboxError):
    status = 507  # Insufficient Storage
    default_detail = (
        "The server's disk is full. Try again in a moment; whoever runs this box needs to "
        "free some space."
    )


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(FileNotFoundError):
            return shutil.disk_usage(candidate).free
    return 0


def is_disk_full(exc: BaseException) -> bool:
    """SQLite says SQLITE_FULL as 'database or disk is full', PostgreSQL SQLSTATE 53100
    (disk_full); the OS says ENOSPC/EDQUOT."""
    seen: BaseException | None = exc
    while seen is not None:
        if "database or disk is full" in str(seen) or getattr(seen, "sqlstate", None) == "53100":
            return True
        if isinstance(seen, OSError) and seen.errno in (28, 122):  # ENOSPC, EDQUOT
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


class EmergencySpace:
    """A preallocated file, deleted the first time the disk is found full."""

    def __init__(self, path: Path, size: int = EMERGENCY_BYTES) -> None:
        self.path = path
        self.size = size

    def ensure(self) -> bool:
        """Create the file when it is missing and there is room to spare; True if it exists."""
        if self.path.exists():
            return True
        if free_bytes(self.path.parent) < 4 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return True
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, self.size)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            return False
        os.close(fd)
        return True

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        log.warning(
            "the disk is full: gave up the emergency space so sign-ins keep working; "
            "free some space",
            extra=log_fields(folder=str(self.path.parent), bytes=self.size),
        )
