"""Uploads survive the server going away: a clean stop, a SIGKILL, a stalled client."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.postgres import settings_for
from tests.support import (
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    make_test_clip,
    start_server,
    wait_for_status,
    wait_until,
)
from vidbox.config import Settings

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


def _start_upload(url: str, auth: dict[str, str], data: bytes) -> str:
    response = httpx.post(
        url + "/api/uploads",
        headers={
            **TUS,
            **auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename Y2xpcC5tcDQ=",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


def _finish_and_check(base: str, auth: dict[str, str], location: str, data: bytes) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        head = client.head(location, headers={**TUS, **auth})
        assert head.status_code == 200
        offset = int(head.headers["upload-offset"])
        assert 0 < offset < len(data)
        done = client.patch(
            location, content=data[offset:], headers={**PATCH, **auth, "Upload-Offset": str(offset)}
        )
        assert done.status_code == 204
        video_id = client.get("/api/videos", headers=auth).json()["items"][0]["id"]
        wait_for_status(client, video_id, {"READY"}, headers=auth)
        original = client.get(f"/api/videos/{video_id}/download", headers=auth)
    assert original.content == data


def test_resume_after_clean_restart(settings: Settings, clip: Path) -> None:
    data = clip.read_bytes()
    add_user(settings, "ann@example.org")
    first = start_server(settings)
    auth = bearer(api_login(first.client(), "ann@example.org")["access"])
    location = _start_upload(first.url, auth, data)
    half = len(data) // 2
    sent = httpx.patch(
        first.url + location, content=data[:half], headers={**PATCH, **auth, "Upload-Offset": "0"}
    )
    assert sent.status_code == 204
    first.stop()

    second = start_server(settings)
    try:
        _finish_and_check(second.url, auth, location, data)
    finally:
        second.stop()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 4 MB: several spool writes happen before the server is killed."""
    return make_test_clip(
        tmp_path_factory.mktemp("big") / "big.mp4", size="640x360", seconds=8, lossless=True
    )


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_resume_after_the_process_dies(tmp_path: Path, big_clip: Path, how: str) -> None:
    data = big_clip.read_bytes()
    assert len(data) > 3 * 1024 * 1024
    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path / "data"), TEST_LOG=str(tmp_path / "a.log"))
    add_user(settings_for(environ=env), "bob@example.org")
    server = Serve(env=env)
    server.wait_ready()
    auth = bearer(api_login(httpx.Client(base_url=server.url), "bob@example.org")["access"])
    location = _start_upload(server.url, auth, data)

    spool = tmp_path / "data" / "spool" / (location.rsplit("/", 1)[1] + ".part")

    # A body that stops half way: the client is still sending when the server dies.
    def body():  # type: ignore[no-untyped-def]
        sent = 0
        while sent < 3 * 1024 * 1024:
            yield data[sent : sent + 65536]
            sent += 65536
        wait_until(lambda: spool.stat().st_size > 0, what="bytes to reach the spool")
        server.proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        server.proc.wait(timeout=30)
        yield data[sent:]

    # SIGKILL cuts the connection; after SIGTERM the server may still answer the cut request.
    # The length is declared, as tus clients do: the server moves such a body into the spool
    # inside the kernel, and stopping must not lose what it moved.
    with contextlib.suppress(httpx.HTTPError):
        httpx.patch(
            server.url + location,
            content=body(),
            headers={**PATCH, **auth, "Upload-Offset": "0", "Content-Length": str(len(data))},
            timeout=30,
        )
    restarted = Serve(env={**env, "TEST_LOG": str(tmp_path / "b.log")})
    restarted.wait_ready()
    try:
        _finish_and_check(restarted.url, auth, location, data)
    finally:
        restarted.stop()


def test_a_full_disk_keeps_what_arrived_and_the_upload_resumes(
    settings: Settings, small_spool: Path, big_clip: Path
) -> None:
    data = big_clip.read_bytes()
    assert len(data) > 3 * 1024 * 1024
    add_user(settings, "full@example.org")
    live = start_server(settings)
    try:
        with live.client() as client:
            auth = bearer(api_login(client, "full@example.org")["access"])
            location = _start_upload(live.url, auth, data)
            # The server moves this body into the spool itself (its length is declared).
            full = client.patch(
                location, content=data, headers={**PATCH, **auth, "Upload-Offset": "0"}
            )
            assert full.status_code == 507
            assert "disk is full" in full.json()["detail"]
            offset = int(client.head(location, headers={**TUS, **auth}).headers["upload-offset"])
            assert 0 < offset < len(data)
            assert (small_spool / (location.rsplit("/", 1)[1] + ".part")).read_bytes() == data[
                :offset
            ]
            # A one-shot upload cannot be kept: it is refused and leaves nothing behind.
            one_shot = client.post(
                "/api/videos", headers=auth, files={"file": ("b.mp4", data, "video/mp4")}
            )
            assert one_shot.status_code == 507
            assert "send the video again" in one_shot.json()["detail"]
            assert len(list(small_spool.glob("*.part"))) == 1
            # Once there is room, the upload goes on from where it stopped.
            subprocess.run(["mount", "-o", "remount,size=64m", str(small_spool)], check=True)
        _finish_and_check(live.url, auth, location, data)
    finally:
        live.stop()
