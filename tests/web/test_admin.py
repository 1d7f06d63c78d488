"""The admin page: the queue's failures with their reasons, and retrying them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    csrf_from,
    wait_for_status,
)


def test_a_corrupt_upload_fails_with_a_reason_and_the_admin_can_retry(
    live: LiveServer, clip: Path
) -> None:
    add_user(live.settings, "root@example.org", admin=True)
    truncated = clip.read_bytes()[: clip.stat().st_size // 2]
    with live.client() as client, live.client() as admin:
        auth = bearer(api_login(client, "root@example.org")["access"])
        created = client.post("/api/videos", headers=auth, files={"file": ("cut.mp4", truncated)})
        assert created.status_code == 201
        video_id = created.json()["id"]
        failed = wait_for_status(client, video_id, {"FAILED"}, headers=auth)
        reason = str(failed["error"])
        assert reason.endswith(".")
        assert "ffmpeg" not in reason.lower().replace("ffmpeg can", "")
        assert "\n" not in reason

        csrf = browser_login(admin, "root@example.org")
        page = admin.get("/admin")
        assert "Failed jobs" in page.text
        assert reason in page.text
        job_id = re.search(r'action="/admin/jobs/(\d+)/retry"', page.text)
        assert job_id, page.text
        retried = admin.post(
            f"/admin/jobs/{job_id.group(1)}/retry", data={"_csrf": csrf_from(page.text)}
        )
        assert retried.status_code == 303
        # The retry really runs again: the video goes back through processing to FAILED.
        again = wait_for_status(client, video_id, {"FAILED"}, headers=auth)
        assert again["error"] == reason
        assert admin.post("/admin/jobs/999999/retry", data={"_csrf": csrf}).status_code == 404
