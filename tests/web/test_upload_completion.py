"""A completed tus upload stays answerable: a client that lost the answer to its last PATCH
asks HEAD and learns the upload is done, however far processing got meanwhile."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from tests.support import LiveServer, add_user, api_login, bearer, wait_for_status, wait_until
from tests.web.test_upload_content import send_in_parts
from tests.web.test_uploads import PATCH, TUS, create
from vidbox.models import Upload, utcnow
from vidbox.services import open_services


def test_head_of_a_completed_upload_answers_its_full_offset_until_it_expires(
    live: LiveServer, clip: Path
) -> None:
    add_user(live.settings, "owner@example.org")
    data = clip.read_bytes()
    with live.client() as client:
        auth = bearer(api_login(client, "owner@example.org")["access"])
        created = create(client, auth, len(data), filename="holiday.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        last_start = len(data) - len(data) % 40_000 or len(data) - 40_000
        assert send_in_parts(client, auth, url, data, 40_000).status_code == 204
        # Processing has taken the bytes out of the spool...
        wait_for_status(client, video_id, {"READY"}, headers=auth)
        wait_until(lambda: not list(live.settings.spool_dir.glob("*.part")), what="the spool")

        # ... and the upload still says it is whole.
        head = client.head(url, headers={**TUS, **auth})
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(len(data))
        assert head.headers["upload-length"] == str(len(data))
        assert head.headers["tus-resumable"] == "1.0.0"
        assert head.headers["cache-control"] == "no-store"
        assert head.headers["vidbox-video-id"] == video_id

        # The last part sent again (its 204 was lost): a conflict that says where it stands.
        again = client.patch(
            url,
            content=data[last_start:],
            headers={**PATCH, **auth, "Upload-Offset": str(last_start)},
        )
        assert again.status_code == 409
        assert again.headers["upload-offset"] == str(len(data))
        assert "already complete" in again.json()["detail"]
        assert client.get(f"/api/videos/{video_id}", headers=auth).json()["status"] == "READY"

        async def expire() -> None:
            async with open_services(live.settings) as services, services.db.session() as s:
                row = await s.get(Upload, url.rsplit("/", 1)[1])
                assert row is not None
                row.expires_at = utcnow() - timedelta(minutes=1)
                s.add(row)

        asyncio.run(expire())
        assert client.head(url, headers={**TUS, **auth}).status_code == 404
        assert client.get(f"/api/videos/{video_id}", headers=auth).status_code == 200
