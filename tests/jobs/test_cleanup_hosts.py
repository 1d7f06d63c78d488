"""Cleanup on a box of two hosts: two real `vidbox serve --role worker` processes with data dirs
of their own (their hosts' disks), one database and one media store. Each sweeps what its own
host holds, the store is swept once for the box, and neither removes what is still in use."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tests.jobs.helpers import add_user, add_video, eventually, run, set_job
from tests.postgres import run_sql
from tests.support import Serve, clean_env, wait_until
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE
from vidbox.jobs.cleanup import CLEANUP_KIND
from vidbox.jobs.hostsweep import SWEEP_LOCK, CleanupReport, HostSweeper, sweep_host
from vidbox.jobs.leftovers import work_dir_name
from vidbox.jobs.queue import enqueue
from vidbox.models import JobState, Upload, new_id, utcnow
from vidbox.services import open_services
from vidbox.uploads import UploadSpool

HOUR = timedelta(hours=1)
# A runner on neither of the two hosts' data dirs, alive as far as its lease says.
ELSEWHERE = "elsewhere:1:0123456789abcdef/media0"


def age(path: Path, by: timedelta) -> None:
    moment = (utcnow() - by).timestamp()
    os.utime(path, (moment, moment))


@dataclass
class Host:
    """What one host holds, and which of it must go."""

    data_dir: Path
    dead: list[Path] = field(default_factory=list)
    live: list[Path] = field(default_factory=list)


async def _leftovers(settings: Settings, host: Host) -> None:
    """On ``host``'s disk: dead things (a folder of an attempt that is not running, an upload
    whose row is gone, a body a killed request left, an old temp file) and live ones (an
    attempt running, an upload in progress, a one-shot upload a failed job keeps for a retry)."""
    now = utcnow()
    spool = UploadSpool(host.data_dir / "spool")
    tmp = host.data_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    async with open_services(settings) as services:
        db = services.db
        owner = await add_user(db)
        video = await add_video(db, owner)
        async with db.session() as session:
            running = await enqueue(session, "process_video", {}, lane=MEDIA_LANE, video_id=video)
            failed = await enqueue(
                session, "process_video", {"spool_id": (kept := new_id())}, video_id=video
            )
            live_upload = new_id()
            session.add(
                Upload(
                    id=live_upload,
                    video_id=video,
                    owner_id=owner,
                    length=10,
                    expires_at=now + 24 * HOUR,
                )
            )
        await set_job(
            db, running.id, state=JobState.RUNNING, worker=ELSEWHERE, attempts=1,
            lease_until=now + 24 * HOUR, claimed_at=now,
        )  # fmt: skip
        await set_job(db, failed.id, state=JobState.FAILED, finished_at=now)

    busy = tmp / work_dir_name(video, running.id or 0, 1)
    busy.mkdir()
    (busy / "source.mp4").write_bytes(b"x")
    stopped = tmp / work_dir_name(video, 999_999, 1)
    stopped.mkdir()
    (stopped / "source.mp4").write_bytes(b"x")
    old_temp = tmp / "stray.bin"
    old_temp.write_bytes(b"x")
    age(old_temp, 48 * HOUR)

    spool.create(live_upload, length=10, info={"created_at": now - 2 * HOUR})
    rowless = new_id()
    spool.create(rowless, length=10, info={"created_at": now - 2 * HOUR})
    one_shot = spool.data_path(kept)
    one_shot.write_bytes(b"x")
    age(one_shot, 5 * HOUR)
    killed = spool.root / f"{new_id()}.receiving"
    killed.write_bytes(b"x")

    host.dead += [stopped, old_temp, spool.data_path(rowless), killed]
    host.live += [busy, spool.data_path(live_upload), one_shot]


def test_each_host_sweeps_its_own_disk_and_the_store_is_swept_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    store = tmp_path / "store"  # the shared media store (a NAS mount, say)
    common = {"VIDBOX_STORAGE__PATH": str(store), "VIDBOX_UPLOADS__RESERVE_BYTES": "0"}
    a, b = Host(tmp_path / "a"), Host(tmp_path / "b")
    first = make_settings(common, data_dir=a.data_dir)
    # The second host: its own data dir, the first one's database.
    if first.database.url:
        shared = {
            "VIDBOX_DATABASE__URL": first.database.url,
            "VIDBOX_SERVER__SECRET_KEY": first.server.secret_key,
        }
    else:
        shared = {"VIDBOX_DATABASE__PATH": str(first.database_path)}
    second = make_settings({**common, **shared}, data_dir=b.data_dir)
    run(_leftovers(first, a))
    run(_leftovers(second, b))

    async def store_objects() -> tuple[str, str, str]:
        async with open_services(first) as services:
            owner = await add_user(services.db)
            video = await add_video(services.db, owner)
            keys = (
                f"videos/{owner}/{video}/original.mp4",  # its video exists
                f"videos/{owner}/{new_id()}/original.mp4",  # a deleted video's, old
                f"videos/{owner}/{new_id()}/original.mp4",  # stored a moment ago
            )
            for key in keys:
                await services.storage.put_bytes(key, b"media")
        return keys

    kept_key, orphan_key, fresh_key = run(store_objects())
    for key in (kept_key, orphan_key):
        age(store / key, 2 * HOUR)

    envs = [
        clean_env(VIDBOX_DATA_DIR=str(a.data_dir), **common),
        clean_env(VIDBOX_DATA_DIR=str(b.data_dir), **common, **shared),
    ]
    workers = [
        Serve("--role", "worker", env={**env, "TEST_LOG": str(tmp_path / f"worker{i}.log")})
        for i, env in enumerate(envs)
    ]
    try:

        def settled() -> bool:
            for worker in workers:
                assert worker.proc.poll() is None, worker.log()
            started = all("job runner started" in worker.log() for worker in workers)
            done = run_sql(
                first, "SELECT count(*) FROM jobs WHERE kind = ? AND state = ?",
                CLEANUP_KIND, JobState.SUCCEEDED,
            )  # fmt: skip
            return started and done[0][0] >= 1

        wait_until(settled, timeout=30, what="both hosts to start and the cleanup job to run")
        for host in (a, b):
            assert [path for path in host.dead if path.exists()] == [], host.data_dir
            assert [path for path in host.live if not path.exists()] == [], host.data_dir
        assert all("host sweep finished" in worker.log() for worker in workers)

        # The box-wide job ran once, on one of the hosts, and the next one waits an hour.
        jobs = run_sql(
            first, "SELECT state, idempotency_key FROM jobs WHERE kind = ? ORDER BY id",
            CLEANUP_KIND,
        )  # fmt: skip
        assert jobs == [(JobState.SUCCEEDED, None), (JobState.QUEUED, CLEANUP_KIND)]
        finished = [w.log().count('msg="cleanup finished"') for w in workers]
        assert sorted(finished) == [0, 1], finished
        assert (store / kept_key).exists()
        assert (store / fresh_key).exists()
        assert not (store / orphan_key).exists()
    finally:
        for worker in workers:
            worker.stop()


def test_the_host_sweep_runs_again_every_interval_and_one_process_sweeps_at_a_time(
    settings: Settings,
) -> None:
    def killed_body() -> Path:
        body = settings.spool_dir / f"{new_id()}.receiving"
        body.write_bytes(b"x")
        return body

    async def go() -> None:
        async with open_services(settings) as services:
            # Another process of this data dir sweeping now: this one leaves it to that one.
            body = killed_body()
            fd = os.open(settings.data_dir / SWEEP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                assert await sweep_host(services) == CleanupReport()
                assert body.exists()
            finally:
                os.close(fd)

            sweeper = HostSweeper(services, interval=timedelta(seconds=0.05))
            await sweeper.start()  # the first sweep is done when start returns
            try:
                assert not body.exists()
                later = killed_body()  # left after start: the next round takes it

                async def gone() -> bool:
                    return not later.exists()

                await eventually(gone, what="the next round of the host sweep")
            finally:
                await sweeper.stop()

    run(go())
