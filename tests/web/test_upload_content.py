"""What an upload's bytes are decides, not its name: a video under another container's name
goes through, content that is no video is refused and leaves nothing stuck behind."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import imageio_ffmpeg
import pytest

from tests.support import LiveServer, add_user, api_login, bearer, start_server, wait_for_status
from tests.web.test_uploads import PATCH, TUS, create
from vidbox.config import Settings


@pytest.fixture
def owner(live: LiveServer) -> dict[str, str]:
    add_user(live.settings, "owner@example.org")
    with live.client() as client:
        return bearer(api_login(client, "owner@example.org")["access"])


@pytest.fixture(scope="module")
def mkv_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test clip's streams copied into Matroska."""
    out = tmp_path_factory.mktemp("mkv") / "clip.mkv"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(clip),
         "-c", "copy", "-y", str(out)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return out


def send_in_parts(
    client: httpx.Client, auth: dict[str, str], url: str, data: bytes, part: int
) -> httpx.Response:
    """PATCH ``data`` in parts of ``part`` bytes; returns the last answer (or the first
    refusal)."""
    answer = None
    for start in range(0, len(data), part):
        headers = {**PATCH, **auth, "Upload-Offset": str(start)}
        answer = client.patch(url, content=data[start : start + part], headers=headers)
        if answer.status_code != 204:
            break
    assert answer is not None
    return answer


@pytest.mark.parametrize(
    ("source", "filename", "filetype"),
    [("mkv", "holiday.mp4", "video/mp4"), ("mp4", "holiday.webm", "video/webm")],
)
def test_a_video_named_after_another_container_is_taken(
    live: LiveServer,
    owner: dict[str, str],
    clip: Path,
    mkv_clip: Path,
    source: str,
    filename: str,
    filetype: str,
) -> None:
    data = (mkv_clip if source == "mkv" else clip).read_bytes()
    with live.client() as client:
        created = create(client, owner, len(data), filename=filename, filetype=filetype)
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        last = send_in_parts(client, owner, url, data, 40_000)
        assert last.status_code == 204, last.text
        ready = wait_for_status(client, video_id, {"READY", "FAILED"}, headers=owner)
        assert ready["status"] == "READY", ready["error"]
        download = client.get(f"/api/videos/{video_id}/download", headers=owner)
        assert download.content == data
        one_shot = client.post(
            "/api/videos", headers=owner, files={"file": (filename, data, filetype)}
        )
        assert one_shot.status_code == 201, one_shot.text


def test_no_video_refused_on_the_last_byte_leaves_no_stuck_upload(
    live: LiveServer, owner: dict[str, str]
) -> None:
    # Under 4 KiB and in two parts: the content is first looked at on the last byte.
    text = b"just some text, not a video at all\n" * 80
    assert len(text) < 4096
    with live.client() as client:
        created = create(client, owner, len(text), filename="notes.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        refused = send_in_parts(client, owner, url, text, 1500)
        assert refused.status_code == 415
        assert refused.headers["tus-resumable"] == "1.0.0"
        assert refused.json()["detail"] == (
            "This file does not look like a video: its content is not MP4, MOV, AVI, WebM or MKV."
        )
        # Gone at once, not UPLOADING until the upload expires.
        assert client.get(f"/api/videos/{video_id}", headers=owner).status_code == 404
        assert client.head(url, headers={**TUS, **owner}).status_code == 404
        listed = client.get("/api/videos", headers=owner).json()
        assert listed["meta"]["total"] == 0
    assert list(live.settings.spool_dir.glob("*.part")) == []


def test_a_video_in_a_format_the_box_does_not_take_is_refused_and_removed(
    make_settings: Callable[..., Settings], mkv_clip: Path
) -> None:
    live = start_server(make_settings({"VIDBOX_UPLOADS__ALLOWED_FORMATS": "mp4"}))
    try:
        add_user(live.settings, "w@example.org")
        data = mkv_clip.read_bytes()
        with live.client() as client:
            auth = bearer(api_login(client, "w@example.org")["access"])
            created = create(client, auth, len(data), filename="holiday.mp4")
            url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
            refused = send_in_parts(client, auth, url, data, 40_000)
            assert refused.status_code == 415
            assert refused.json()["detail"] == (
                "This file does not look like a video: its content is not MP4."
            )
            assert client.get(f"/api/videos/{video_id}", headers=auth).status_code == 404
    finally:
        live.stop()
