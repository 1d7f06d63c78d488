"""Which process of a shared spool is alive: each holds an ``flock`` on
``<spool>/.live/<token>.lock`` (the file holds its ``host:pid:token`` name) while it lives.

The kernel drops the lock however the process dies, so on the same host a free lock, or no
file at all (a process removes its own at a clean exit), means the process is gone. A PID
alone could not tell: in a container the new server often has the old one's PID. Another
host's lock says nothing dependable over NFS (a mount with ``nolock`` or ``local_lock`` keeps
locks host-local), so a process of another host is never declared dead from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from pathlib import Path

LIVE_DIR = ".live"


class ProcessMark:
    """This process, as upload leases and spool files name it, with its life lock."""

    def __init__(self, spool_root: Path) -> None:
        self.host = socket.gethostname()[:60]
        self.token = uuid.uuid4().hex[:16]
        self.name = f"{self.host}:{os.getpid()}:{self.token}"
        self.live_dir = Path(spool_root) / LIVE_DIR
        self._fd: int | None = None

    def _path(self, token: str) -> Path:
        return self.live_dir / f"{token}.lock"

    def hold(self) -> None:
        """Take the life lock (at start, before this process writes any upload)."""
        if self._fd is not None:
            return
        self.live_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(self.token), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new name: never taken
        os.write(fd, self.name.encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(self.token).unlink()
        os.close(self._fd)
        self._fd = None

    def is_dead(self, holder: str) -> bool:
        """Whether ``holder`` (``host:pid:token``, maybe with ``/request`` after it) is a
        process of this host that no longer lives. Never True for another host's process."""
        host, _, rest = holder.partition(":")
        token = rest.split("/", 1)[0].rsplit(":", 1)[-1]
        if host != self.host or not token.isalnum():
            return False
        return self.token_is_dead(token) is True

    def token_is_dead(self, token: str) -> bool | None:
        """Whether the process ``token`` is gone: True or False for this host's processes
        (and for a token whose life file is gone), None for another host's (unknown)."""
        if token == self.token:
            return False
        path = self._path(token)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            owner = os.read(fd, 200).decode(errors="replace")
            if owner.partition(":")[0] != self.host:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        finally:
            os.close(fd)  # also drops the lock taken just now
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a dead process's: nobody needs it any more
        return True
