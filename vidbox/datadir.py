"""The data directory: created on first start, holds the database, secret key, spool and media."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from vidbox.config import Settings


def prepare_data_dir(settings: Settings) -> None:
    for path in (settings.data_dir, settings.spool_dir, settings.database_path.parent):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.storage.backend == "local":
        settings.media_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_secret_key(path: Path) -> bytes:
    """The box's signing key: generated once (mode 0600) and reused on every start, so cookies
    and signed links survive restarts. Processes starting at once on a fresh data dir all end
    up with the one key that reached the file first (a hard link never replaces a file), not
    each with its own."""
    try:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48).encode()
    # A name of this process's own: several writing one temp file would mix their keys.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = path.read_bytes().strip()
            if len(existing) >= 32:
                return existing  # another process was first
            os.replace(tmp, path)  # a broken key file (too short): ours replaces it
    finally:
        tmp.unlink(missing_ok=True)
    return key
