"""What killed processes left in a spool shared by processes on this host and maybe others:
one-shot bodies (``<id>.<process>.receiving``) whose receiver is dead.

This host's dead processes are known at once from their life locks (``liveness``); another
host's only by its file going ``STALE_RECEIVING`` without a change, as its file locks are not
dependable from here over NFS. The body's own ``flock`` is a second guard on this host.
"""

from __future__ import annotations

import fcntl
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vidbox.uploads.liveness import ProcessMark

_RECEIVING = re.compile(r"(?P<id>[0-9a-f]{32})(?:\.(?P<owner>[0-9a-f]{8,32}))?\.receiving")
# A one-shot body that has not grown for this long is dead whoever received it: a body that
# goes 60 s without a byte is cut off (server.body_idle_seconds), and an hour leaves room for
# clocks of hosts sharing the spool to disagree.
STALE_RECEIVING = timedelta(hours=1)


def remove_abandoned(root: Path, owner: ProcessMark) -> tuple[int, int]:
    """Delete the one-shot bodies under ``root`` that no process receives any more; returns
    how many files and bytes. ``owner`` is this process."""
    removed = freed = 0
    stale_before = (datetime.now(UTC) - STALE_RECEIVING).timestamp()
    for path in root.glob("*.receiving"):
        match = _RECEIVING.fullmatch(path.name)
        if match is None:
            continue
        receiver = match.group("owner")
        # No token: a file of an older vidbox, always on this host; its lock decides.
        dead = owner.token_is_dead(receiver) if receiver else True
        if dead is False:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            stat = os.fstat(fd)
            if dead is None and stat.st_mtime >= stale_before:
                continue  # another host's, and it may still be arriving
            try:
                # A second guard on this host: a body being written holds its lock.
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            freed += stat.st_size
            path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed, freed
