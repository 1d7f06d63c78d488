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
    and signed links survive restarts."""
    try:
        key = path.read_bytes().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key
