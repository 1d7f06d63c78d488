"""A spool shared by processes on several hosts (NFS): a start sweeps only what is really
dead. A one-shot body's file names its receiver; this host's dead receivers are known from
their life locks, another host's only from the file going an hour without a change (its
file locks are not dependable from here)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

from vidbox.config import Settings
from vidbox.uploads import UploadSpool
from vidbox.uploads.liveness import LIVE_DIR, ProcessMark


def receiving(spool: UploadSpool, owner: str, *, age_seconds: float = 0) -> Path:
    path = spool.root / f"{uuid.uuid4().hex}.{owner}.receiving"
    path.write_bytes(b"x" * 1000)
    if age_seconds:
        moment = time.time() - age_seconds
        os.utime(path, (moment, moment))
    return path


def other_host(spool: UploadSpool) -> str:
    """A process of another host sharing the spool: its life file, whose lock this host
    cannot see (nobody here holds it)."""
    token = uuid.uuid4().hex[:16]
    (spool.root / LIVE_DIR).mkdir(exist_ok=True)
    (spool.root / LIVE_DIR / f"{token}.lock").write_text(f"elsewhere-{token}:7:{token}")
    return token


def test_another_hosts_body_is_kept_while_it_may_still_arrive(settings: Settings) -> None:
    spool = UploadSpool(settings.spool_dir)
    token = other_host(spool)
    fresh = receiving(spool, token, age_seconds=120)
    stale = receiving(spool, token, age_seconds=2 * 3600)
    assert spool.remove_abandoned() == (1, 1000)
    assert fresh.exists() and not stale.exists()


def test_a_live_process_of_this_host_keeps_its_body(settings: Settings) -> None:
    mark = ProcessMark(settings.spool_dir)
    mark.hold()
    try:
        spool = UploadSpool(settings.spool_dir)
        body = receiving(spool, mark.token, age_seconds=2 * 3600)
        assert spool.remove_abandoned() == (0, 0)
        assert body.exists()
    finally:
        mark.release()
    # Its process gone (here: its life lock dropped), the next start removes it.
    assert UploadSpool(settings.spool_dir).remove_abandoned() == (1, 1000)
    assert not body.exists()


def test_a_dead_process_of_this_host_is_known_at_once(settings: Settings) -> None:
    spool = UploadSpool(settings.spool_dir)
    dead = uuid.uuid4().hex[:16]
    (spool.root / LIVE_DIR).mkdir(exist_ok=True)
    life = spool.root / LIVE_DIR / f"{dead}.lock"
    life.write_text(f"{socket.gethostname()}:7:{dead}")  # nobody holds its lock
    body = receiving(spool, dead)
    assert spool.remove_abandoned() == (1, 1000)
    assert not body.exists() and not life.exists()


def test_a_body_being_received_is_never_swept(settings: Settings) -> None:
    import asyncio

    spool = UploadSpool(settings.spool_dir)
    other = UploadSpool(settings.spool_dir)
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def body() -> object:
        yield b"x" * 5000
        arrived.set()
        await release.wait()

    async def go() -> tuple[int, int]:
        upload_id = uuid.uuid4().hex
        task = asyncio.create_task(
            spool.stream_to_spool(upload_id, body(), max_bytes=10_000)  # type: ignore[arg-type]
        )
        await arrived.wait()
        swept = await asyncio.to_thread(other.remove_abandoned)
        release.set()
        assert await task == 5000
        return swept

    assert asyncio.run(go()) == (0, 0)
