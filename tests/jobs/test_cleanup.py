"""The cleanup job on a real database, spool, data folder and storage (local disk and S3)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlmodel import select

from tests.jobs.helpers import add_user, add_video, all_jobs, run, set_job, video_exists
from tests.postgres import only_local_storage
from tests.storage.conftest import s3_environ
from vidbox.auth.ratelimit import RateLimiter
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE
from vidbox.jobs.cleanup import RATE_LIMIT_AGE, CleanupReport, run_cleanup
from vidbox.jobs.queue import enqueue
from vidbox.models import JobState, RateLimit, Upload, VideoStatus, new_id, utcnow
from vidbox.services import Services, open_services
from vidbox.storage import Storage
from vidbox.uploads import UploadSpool


def age(path: Path, by: timedelta) -> None:
    moment = (utcnow() - by).timestamp()
    os.utime(path, (moment, moment))


async def add_upload(
    services: Services, video_id: str, owner_id: str, *, expires_at: datetime, completed: bool
) -> str:
    upload_id = new_id()
    services.spool.create(upload_id, length=10, info={"expires_at": expires_at})
    async with services.db.session() as session:
        session.add(
            Upload(
                id=upload_id,
                video_id=video_id,
                owner_id=owner_id,
                length=10,
                expires_at=expires_at,
                completed_at=utcnow() if completed else None,
            )
        )
    return upload_id


async def upload_ids(services: Services) -> set[str]:
    async with services.db.read() as session:
        return {upload.id for upload in (await session.exec(select(Upload))).all()}


@only_local_storage
def test_cleanup_removes_what_nobody_owns_and_leaves_live_things_alone(settings: Settings) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)

    async def go() -> None:
        async with open_services(settings) as services:
            db, spool, storage = services.db, services.spool, services.storage
            now = utcnow()
            owner = await add_user(db)

            # Uploads: only unfinished ones past their expiry go, with their UPLOADING video.
            abandoned_video = await add_video(db, owner, VideoStatus.UPLOADING)
            abandoned = await add_upload(
                services, abandoned_video, owner, expires_at=now - hour, completed=False
            )
            resumable_video = await add_video(db, owner, VideoStatus.UPLOADING)
            resumable = await add_upload(
                services, resumable_video, owner, expires_at=now + hour, completed=False
            )
            finished_video = await add_video(db, owner, VideoStatus.PROCESSING)
            finished = await add_upload(
                services, finished_video, owner, expires_at=now - day, completed=True
            )
            rejected_video = await add_video(db, owner, VideoStatus.FAILED)
            rejected = await add_upload(
                services, rejected_video, owner, expires_at=now - hour, completed=False
            )

            # Spool leftovers.
            stray_old = spool.data_path(new_id())
            stray_old.write_bytes(b"x")
            age(stray_old, 2 * hour)
            stray_new = spool.data_path(new_id())
            stray_new.write_bytes(b"x")
            queued_one_shot = spool.data_path(new_id())  # waiting behind a long transcode
            queued_one_shot.write_bytes(b"x")
            age(queued_one_shot, 5 * hour)
            dead_one_shot = spool.data_path(new_id())  # its job died, its video was deleted
            dead_one_shot.write_bytes(b"x")
            age(dead_one_shot, 5 * hour)
            rowless = new_id()  # its video was deleted while a request held the spool lock
            spool.create(rowless, length=1, info={"created_at": now - 2 * hour})
            async with db.session() as session:
                waiting = await enqueue(
                    session,
                    "process_video",
                    {"spool_id": queued_one_shot.stem},
                    lane=MEDIA_LANE,
                    video_id=finished_video,
                )
                dead = await enqueue(
                    session, "process_video", {"spool_id": dead_one_shot.stem}, video_id="gone"
                )
            await set_job(db, dead.id, state=JobState.DEAD)

            # Temp folders of the processing pipeline.
            tmp = settings.data_dir / "tmp"
            old_job = tmp / "job-1"
            old_job.mkdir(parents=True)
            (old_job / "seg_00001.m4s").write_bytes(b"x")
            age(old_job / "seg_00001.m4s", 2 * day)
            age(old_job, 2 * day)
            busy_job = tmp / "job-2"
            busy_job.mkdir()
            (busy_job / "seg_00900.m4s").write_bytes(b"x")  # written just now
            age(busy_job, 2 * day)

            # Storage: objects of a vanished video go once they are an hour old.
            ready_video = await add_video(db, owner, VideoStatus.READY)
            kept_key = f"videos/{owner}/{ready_video}/original.mp4"
            orphan_key = f"videos/{owner}/{new_id()}/hls/720p/seg_00001.m4s"
            fresh_orphan_key = f"videos/{owner}/{new_id()}/original.mp4"
            stray_key = "videos/README"
            for key in (kept_key, orphan_key, fresh_orphan_key, stray_key):
                await storage.put_bytes(key, b"media")
            for key in (kept_key, orphan_key, stray_key):
                age(settings.media_dir / key, 2 * hour)

            # Old succeeded jobs are dropped; failures stay for the admin page.
            async with db.session() as session:
                old_done = await enqueue(session, "mail", {})
                recent_done = await enqueue(session, "mail", {})
            await set_job(db, old_done.id, state=JobState.SUCCEEDED, finished_at=now - 8 * day)
            await set_job(db, recent_done.id, state=JobState.SUCCEEDED, finished_at=now - day)

            report = await run_cleanup(services)

            assert report == CleanupReport(
                expired_uploads=2,
                videos_removed=1,
                spool_leftovers=3,
                temp_entries=1,
                storage_objects=1,
                old_jobs=1,
            )
            assert await upload_ids(services) == {resumable, finished}
            assert not await video_exists(db, abandoned_video)
            assert await video_exists(db, rejected_video)  # shows its error to its owner
            assert await video_exists(db, resumable_video)
            assert set(spool.ids()) == {resumable, finished}
            assert abandoned not in spool.ids()
            assert rejected not in spool.ids()
            assert not stray_old.exists()
            assert not dead_one_shot.exists()
            assert stray_new.exists()
            assert queued_one_shot.exists()
            assert sorted(p.name for p in tmp.iterdir()) == ["job-2"]
            keys = [info.key for info in await storage.list_prefix("videos/")]
            assert sorted(keys) == sorted([kept_key, fresh_orphan_key, stray_key])
            assert {j.id for j in await all_jobs(db)} == {waiting.id, dead.id, recent_done.id}

            # Nothing left to do: a second run changes nothing.
            assert await run_cleanup(services) == CleanupReport()

    run(go())


def test_cleanup_of_s3_objects_waits_an_hour(
    make_settings: Callable[..., Settings], moto_endpoint: str
) -> None:
    settings = make_settings(s3_environ(moto_endpoint))

    async def go() -> None:
        async with open_services(settings) as services:
            storage: Storage = services.storage
            assert storage.name == "s3"
            owner = await add_user(services.db)
            kept = await add_video(services.db, owner)
            kept_key = f"videos/{owner}/{kept}/thumbnail.jpg"
            orphan_keys = [f"videos/{owner}/{new_id()}/hls/{n}.m4s" for n in range(3)]
            for key in (kept_key, *orphan_keys):
                await storage.put_bytes(key, b"media")

            # Just stored: could belong to a video being created right now.
            assert (await run_cleanup(services)).storage_objects == 0
            later = await run_cleanup(services, now=utcnow() + timedelta(hours=2))
            assert later.storage_objects == 3
            assert [i.key for i in await storage.list_prefix("videos/")] == [kept_key]

    run(go())


def test_spool_from_settings_when_services_has_none(settings: Settings) -> None:
    """Without a shared spool object the sweep opens the spool folder itself."""

    async def go() -> None:
        async with open_services(settings) as services:
            stray = UploadSpool(settings.spool_dir).data_path(new_id())
            stray.write_bytes(b"x")
            age(stray, timedelta(hours=2))
            services.spool = None  # type: ignore[assignment]
            report = await run_cleanup(services)
            assert report.spool_leftovers == 1
            assert not stray.exists()

    run(go())


def test_cleanup_forgets_rate_limit_counters_a_day_old(settings: Settings) -> None:
    """Each client and account tried leaves a counter; once its window is long over it goes."""

    async def go() -> None:
        async with open_services(settings) as services:
            limiter = RateLimiter(services.db)
            await limiter.count("old", window=timedelta(minutes=15))
            await limiter.count("recent", window=timedelta(minutes=15))
            later = utcnow() + RATE_LIMIT_AGE + timedelta(minutes=1)
            async with services.db.session() as session:
                row = await session.get(RateLimit, "recent")
                assert row is not None
                row.window_start = later - RATE_LIMIT_AGE + timedelta(minutes=1)
                session.add(row)
            report = await run_cleanup(services, now=later)
            assert report.rate_limits == 1
            async with services.db.read() as session:
                assert [r.key for r in (await session.exec(select(RateLimit))).all()] == ["recent"]

    run(go())


def test_cleanup_keeps_work_folders_of_running_attempts_however_old(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            async with db.session() as session:
                job = await enqueue(session, "process_video", {}, lane=MEDIA_LANE)
            await set_job(db, job.id, state=JobState.RUNNING, attempts=2)
            tmp = settings.data_dir / "tmp"
            running = tmp / f"{new_id()}-{job.id}-2"  # a ten-day encode of a long film
            stopped = tmp / f"{new_id()}-{job.id}-1"  # its first attempt, died with its server
            for folder in (running, stopped):
                folder.mkdir(parents=True)
                (folder / "source.mp4").write_bytes(b"x")
                age(folder / "source.mp4", timedelta(days=10))
                age(folder, timedelta(days=10))
            report = await run_cleanup(services)
            assert report.temp_entries == 1
            assert sorted(p.name for p in tmp.iterdir()) == [running.name]

    run(go())
