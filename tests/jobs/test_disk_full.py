"""A full disk under the media folder: processing waits for space instead of failing for good,
and no failure sentence shows a server path."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.jobs.helpers import get_job, run, set_job
from tests.postgres import only_local_storage, run_sql
from tests.support import (
    add_user,
    api_login,
    bearer,
    browser_login,
    fill_disk,
    small_filesystem,
    start_server,
    wait_until,
)
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE, JobContext, JobHandler, WaitingForDisk
from vidbox.jobs.failures import WAITING_FOR_DISK, gave_up_sentence, is_disk_full, scrub_paths
from vidbox.jobs.outcomes import describe_error
from vidbox.jobs.queue import enqueue
from vidbox.jobs.runner import JobRunner
from vidbox.models import JobState, utcnow
from vidbox.services import open_services
from vidbox.storage import StorageError


@pytest.fixture
def full_media(settings: Settings) -> Iterator[Path]:
    """The media folder on a 1 MiB file system of its own, filled up by one file (needs root
    to mount; the test is skipped elsewhere). Removing the file frees the space."""
    with small_filesystem(settings.media_dir, "1m") as media:
        filler = media / "filler"
        fill_disk(filler)
        yield filler


def job_attempts(settings: Settings) -> int:
    [(attempts,)] = run_sql(settings, "SELECT attempts FROM jobs WHERE kind = 'process_video'")
    return int(attempts)


@only_local_storage
def test_processing_waits_for_disk_space(settings: Settings, full_media: Path, clip: Path) -> None:
    add_user(settings, "full@example.org")
    live = start_server(settings)
    try:
        with live.client() as client:
            headers = bearer(api_login(client, "full@example.org")["access"])
            response = client.post(
                "/api/videos",
                headers=headers,
                files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
            )
            assert response.status_code == 201, response.text
            video_id = response.json()["id"]
            url = f"/api/videos/{video_id}"

            wait_until(
                lambda: client.get(url, headers=headers).json()["error"],
                timeout=120,
                what="the video to say why it is not processed",
            )
            video = client.get(url, headers=headers).json()
            assert (video["status"], video["error"]) == ("PROCESSING", WAITING_FOR_DISK)
            assert str(settings.data_dir) not in video["error"]
            with live.client() as browser:
                browser_login(browser, "full@example.org")
                assert "Waiting for disk space" in browser.get("/").text

            full_media.unlink()  # someone frees space
            wait_until(
                lambda: client.get(url, headers=headers).json()["status"] == "READY",
                timeout=120,
                what="processing to go on once space is back",
            )
            video = client.get(url, headers=headers).json()
            assert video["error"] is None
        # The waits were not attempts: the one that worked is the first counted.
        assert job_attempts(settings) == 1
    finally:
        live.stop()


def test_waiting_for_disk_ends_after_a_day(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            messages: list[str] = []

            async def full(ctx: JobContext) -> None:
                raise WaitingForDisk("The disk is full.")

            async def on_gave_up(ctx: JobContext, message: str) -> None:
                messages.append(message)

            handler = JobHandler(full, on_gave_up=on_gave_up)
            runner = JobRunner(services, {"full": handler}, startup_jobs=())
            async with services.db.session() as session:
                job = await enqueue(session, "full", {}, lane=MEDIA_LANE, max_attempts=2)
            for _ in range(3):  # more waits than max_attempts: none of them counts
                await runner.run_until_idle()
                row = await get_job(services.db, job.id)
                assert row is not None
                assert (row.state, row.attempts) == (JobState.QUEUED, 0)
                assert row.waiting_since is not None
                await set_job(services.db, job.id, run_at=utcnow())
            await set_job(services.db, job.id, waiting_since=utcnow() - timedelta(hours=25))
            await runner.run_until_idle()
            row = await get_job(services.db, job.id)
            assert row is not None
            assert row.state == JobState.DEAD
            assert messages == ["Gave up after 24 hours of waiting. The disk is full."]

    run(go())


def test_disk_full_is_found_behind_storage_errors() -> None:
    def write() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/srv/vidbox/media/x")
        except OSError:
            raise StorageError("local folder /srv/vidbox/media: cannot write x") from None

    with pytest.raises(StorageError) as failed:
        write()
    assert is_disk_full(failed.value)
    assert not is_disk_full(ValueError("bad"))


def test_failure_sentences_show_no_server_paths() -> None:
    error = OSError(errno.EACCES, "Permission denied", "/var/lib/vidbox/tmp/abc-1-1/x.ts")
    assert describe_error(error) == "PermissionError: Permission denied"
    sentence = gave_up_sentence(
        "StorageError: local folder /var/lib/vidbox/media: cannot write videos/a/b: i/o error"
    )
    assert "/var/lib" not in sentence
    assert "a file on the server" in sentence
    ffmpeg = "FFmpeg failed unexpectedly (file:/data/tmp/v-1-1/hls/360p/index.m3u8: I/O error)."
    assert "/data" not in scrub_paths(ffmpeg)
    assert scrub_paths("see https://example.org/a/b and 'C:/x'") == (
        "see https://example.org/a/b and 'C:/x'"
    )
