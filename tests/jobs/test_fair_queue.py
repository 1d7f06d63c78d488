"""Fair queueing on the media lane: one user's uploads cannot hold back another user's."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.jobs.helpers import add_user as add_user_row
from tests.jobs.helpers import add_video, run, set_job
from tests.postgres import settings_for
from tests.support import (
    add_user,
    api_login,
    bearer,
    make_test_clip,
    start_server,
    wait_for_status,
    wait_until,
)
from vidbox.config import Settings
from vidbox.jobs import MEDIA_LANE
from vidbox.jobs.queue import claim_next, enqueue
from vidbox.models import JobState, utcnow
from vidbox.services import open_services


def _encoders(parent: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] == str(parent) and b"libx264" in argv:
            return True
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_another_users_video_goes_before_the_rest_of_a_busy_users(
    tmp_path: Path, clip: Path
) -> None:
    settings = settings_for(
        data_dir=tmp_path / "data",
        environ={
            # Slow enough that the first video is still encoding while the others arrive.
            "VIDBOX_PROCESSING__PRESET": "veryslow",
            "VIDBOX_PROCESSING__RENDITIONS": "240p,360p,480p,720p",
        },
    )
    first = make_test_clip(tmp_path / "first.mp4", size="1280x720", seconds=10)
    add_user(settings, "busy@example.org")
    add_user(settings, "other@example.org")
    live = start_server(settings)
    try:
        with live.client() as client:
            busy = bearer(api_login(client, "busy@example.org")["access"])
            other = bearer(api_login(client, "other@example.org")["access"])

            def upload(headers: dict[str, str], path: Path) -> str:
                files = {"file": (path.name, path.read_bytes(), "video/mp4")}
                response = client.post("/api/videos", headers=headers, files=files)
                assert response.status_code == 201, response.text
                return str(response.json()["id"])

            busy_ids = [upload(busy, first)]
            wait_until(lambda: _encoders(os.getpid()), timeout=60, what="x264 to run")
            busy_ids += [upload(busy, clip), upload(busy, clip)]
            other_id = upload(other, clip)
            ready = {
                vid: wait_for_status(client, vid, {"READY"}, timeout=180, headers=headers)
                for vid, headers in [(other_id, other)] + [(v, busy) for v in busy_ids]
            }
    finally:
        live.stop()
    first_ready = datetime.fromisoformat(str(ready[busy_ids[0]]["ready_at"]))
    other_ready = datetime.fromisoformat(str(ready[other_id]["ready_at"]))
    assert other_ready > first_ready  # the precondition: it really had to wait
    for vid in busy_ids[1:]:
        assert other_ready < datetime.fromisoformat(str(ready[vid]["ready_at"]))


def test_the_user_with_fewer_running_jobs_goes_first(settings: Settings) -> None:
    async def go() -> None:
        async with open_services(settings) as services:
            db = services.db
            busy, other = await add_user_row(db), await add_user_row(db)
            jobs = {}
            for name, owner in [("running", busy), ("busy", busy), ("other", other)]:
                video_id = await add_video(db, owner)
                async with db.session() as session:
                    job = await enqueue(
                        session, "transcode", {}, lane=MEDIA_LANE, video_id=video_id
                    )
                jobs[name] = job.id
            long_ago = utcnow() - timedelta(hours=1)
            await set_job(db, jobs["running"], state=JobState.RUNNING, claimed_at=long_ago)
            await set_job(db, jobs["busy"], run_at=long_ago)  # the oldest in the queue
            claimed = await claim_next(
                db, lane=MEDIA_LANE, kinds=["transcode"], worker="w", lease_seconds=60
            )
            assert claimed is not None and claimed.id == jobs["other"]
            claimed = await claim_next(
                db, lane=MEDIA_LANE, kinds=["transcode"], worker="w", lease_seconds=60
            )
            # Both users have one running now; the busy user was served longer ago.
            assert claimed is not None and claimed.id == jobs["busy"]

    run(go())
