"""The whole box on the S3 backend (moto on loopback, through the minio SDK)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import imageio_ffmpeg
import pytest

from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    s3_environ,
    start_server,
    wait_for_status,
)
from vidbox.config import Settings
from vidbox.storage import load


@pytest.fixture
def s3_live(make_settings: Callable[..., Settings], moto_endpoint: str) -> Iterator[LiveServer]:
    live = start_server(make_settings(s3_environ(moto_endpoint)))
    yield live
    live.stop()


def stored_keys(settings: Settings, prefix: str) -> list[str]:
    from tests.support import run_async

    async def keys() -> list[str]:
        storage = load(settings)
        try:
            return [o.key for o in await storage.list_prefix(prefix)]
        finally:
            await storage.close()

    return run_async(keys())


def test_upload_play_download_delete_on_s3(s3_live: LiveServer, clip: Path) -> None:
    settings = s3_live.settings
    user_id = add_user(settings, "ann@example.org")
    with s3_live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        created = client.post(
            "/api/videos", headers=auth, files={"file": ("c.mp4", clip.read_bytes())}
        )
        video_id = created.json()["id"]
        video = wait_for_status(client, video_id, {"READY"}, headers=auth)
        assert video["renditions"]

        keys = stored_keys(settings, f"videos/{user_id}/{video_id}/")
        assert f"videos/{user_id}/{video_id}/original.mp4" in keys
        assert f"videos/{user_id}/{video_id}/thumbnail.jpg" in keys
        assert any(k.endswith("/index.m3u8") for k in keys)
        assert stored_keys(settings, "videos/") == keys
        # No media stays on local disk: only the (now empty) spool and FFmpeg's temp dir.
        local_media = [
            p for p in settings.data_dir.rglob("*") if p.suffix in {".mp4", ".m4s", ".jpg"}
        ]
        assert local_media == []

        data = clip.read_bytes()
        ranged = client.get(
            f"/api/videos/{video_id}/download", headers={**auth, "Range": "bytes=100-1099"}
        )
        assert ranged.status_code == 206
        assert ranged.content == data[100:1100]
        assert ranged.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == data

        # FFmpeg itself plays the master playlist over HTTP, rights in the path only... except
        # the owner's bearer header, which FFmpeg sends with every playlist and segment request.
        header = f"Authorization: {auth['Authorization']}\r\n"
        decoded = subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-hide_banner",
                "-headers",
                header,
                "-i",
                f"{s3_live.url}/api/videos/{video_id}/hls/master.m3u8",
                "-f",
                "null",
                "-",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert decoded.returncode == 0, decoded.stderr[-2000:]
        assert "time=00:00:02" in decoded.stderr or "time=00:00:01.9" in decoded.stderr

        segment = next(k for k in keys if k.endswith(".m4s")).split("/hls/")[1]
        segment_url = f"/api/videos/{video_id}/hls/{segment}"
        assert client.get(segment_url, headers=auth).status_code == 200
        assert client.delete(f"/api/videos/{video_id}", headers=auth).status_code == 204
        # Gone at once, although media lookups are cached for a moment.
        assert client.get(segment_url, headers=auth).status_code == 404
    assert stored_keys(settings, "videos/") == []


def test_readyz_reports_an_unreachable_store(make_settings: Callable[..., Settings]) -> None:
    from tests.support import free_port

    settings = make_settings(s3_environ(f"127.0.0.1:{free_port()}"))
    add_user(settings, "root@example.org", admin=True)
    live = start_server(settings)
    try:
        with live.client() as client:
            # The details are for admins; anyone else learns only that the box is not ready.
            assert client.get("/readyz").json() == {"status": "unavailable", "detail": "Not ready."}
            admin = bearer(api_login(client, "root@example.org")["access"])
            ready = client.get("/readyz", headers=admin)
    finally:
        live.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"]["storage"]["ok"] is False
    assert "unreachable" in ready.json()["detail"]
    assert settings.storage.secret_key not in ready.text
