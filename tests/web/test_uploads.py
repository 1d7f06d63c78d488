"""Uploads over real HTTP: tus 1.0 with a real client (tuspy), its error cases, multipart."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from tusclient import client as tus_client

from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    start_server,
    wait_for_status,
)
from vidbox.config import Settings
from vidbox.jobs.cleanup import run_cleanup
from vidbox.models import Upload
from vidbox.services import open_services

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.fixture
def owner(live: LiveServer) -> dict[str, str]:
    add_user(live.settings, "owner@example.org")
    with live.client() as client:
        return bearer(api_login(client, "owner@example.org")["access"])


@pytest.fixture
def stranger(live: LiveServer) -> dict[str, str]:
    add_user(live.settings, "stranger@example.org")
    with live.client() as client:
        return bearer(api_login(client, "stranger@example.org")["access"])


def create(
    client: httpx.Client, auth: dict[str, str], length: int, **metadata: str
) -> httpx.Response:
    headers = {**TUS, **auth, "Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = meta(**metadata)
    return client.post("/api/uploads", headers=headers)


def test_options_advertises_the_server(live: LiveServer) -> None:
    with live.client() as client:
        response = client.options("/api/uploads")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    extensions = response.headers["tus-extension"].split(",")
    assert {"creation", "creation-with-upload", "termination", "expiration", "checksum"} <= set(
        extensions
    )
    assert int(response.headers["tus-max-size"]) == live.settings.uploads.max_bytes
    assert "sha1" in response.headers["tus-checksum-algorithm"]


def test_tuspy_uploads_in_chunks_and_the_video_gets_processed(
    live: LiveServer, owner: dict[str, str], clip: Path
) -> None:
    tus = tus_client.TusClient(live.url + "/api/uploads", headers=owner)
    uploader = tus.uploader(
        str(clip), chunk_size=16 * 1024, metadata={"filename": "holiday.mp4", "title": "Holiday"}
    )
    uploader.upload()
    assert uploader.offset == clip.stat().st_size
    with live.client() as client:
        head = client.head(uploader.url, headers={**TUS, **owner})
        assert head.status_code == 200
        assert head.headers["upload-offset"] == str(clip.stat().st_size)
        assert head.headers["cache-control"] == "no-store"
        listed = client.get("/api/videos", headers=owner).json()
        assert listed["meta"]["total"] == 1
        video = listed["items"][0]
        assert video["title"] == "Holiday"
        assert video["filename"] == "holiday.mp4"
        assert video["status"] in {"PROCESSING", "READY"}
        ready = wait_for_status(client, video["id"], {"READY"}, headers=owner)
        original = client.get(f"/api/videos/{video['id']}/download", headers=owner)
    assert ready["status"] == "READY"
    assert original.content == clip.read_bytes()


def test_creation_answers_location_video_id_and_uploading_row(
    live: LiveServer, owner: dict[str, str]
) -> None:
    with live.client() as client:
        created = create(client, owner, 1000, filename="a.mp4")
        assert created.status_code == 201
        assert created.headers["tus-resumable"] == "1.0.0"
        assert created.headers["location"].startswith("/api/uploads/")
        assert created.headers["upload-expires"].endswith("GMT")
        video_id = created.headers["vidbox-video-id"]
        video = client.get(f"/api/videos/{video_id}", headers=owner).json()
    assert video["status"] == "UPLOADING"
    assert video["size_bytes"] == 1000


def test_protocol_errors(live: LiveServer, owner: dict[str, str], clip: Path) -> None:
    data = clip.read_bytes()
    with live.client() as client:
        old = client.post(
            "/api/uploads", headers={**owner, "Tus-Resumable": "0.2.2", "Upload-Length": "10"}
        )
        assert old.status_code == 412
        assert old.headers["tus-version"] == "1.0.0"
        huge = create(client, owner, live.settings.uploads.max_bytes + 1, filename="big.mp4")
        assert huge.status_code == 413
        assert "limit" in huge.json()["detail"]
        wrong_type = create(client, owner, 100, filename="notes.txt")
        assert wrong_type.status_code == 415
        assert wrong_type.json()["detail"] == (
            "Only MP4, MOV, AVI, WebM and MKV videos are accepted."
        )
        empty = create(client, owner, 0, filename="a.mp4")
        assert empty.status_code == 400
        no_length = client.post("/api/uploads", headers={**TUS, **owner})
        assert no_length.status_code == 400

        url = create(client, owner, len(data), filename="clip.mp4").headers["location"]
        plain = client.patch(
            url, content=data[:100], headers={**TUS, **owner, "Upload-Offset": "0"}
        )
        assert plain.status_code == 415
        ok = client.patch(
            url, content=data[:5000], headers={**PATCH, **owner, "Upload-Offset": "0"}
        )
        assert ok.status_code == 204
        assert ok.headers["upload-offset"] == "5000"
        stale = client.patch(
            url, content=data[:100], headers={**PATCH, **owner, "Upload-Offset": "0"}
        )
        assert stale.status_code == 409
        assert stale.headers["tus-resumable"] == "1.0.0"

        bad_sum = base64.b64encode(hashlib.sha1(b"other", usedforsecurity=False).digest()).decode()
        corrupt = client.patch(
            url,
            content=data[5000:6000],
            headers={
                **PATCH,
                **owner,
                "Upload-Offset": "5000",
                "Upload-Checksum": f"sha1 {bad_sum}",
            },
        )
        assert corrupt.status_code == 460
        assert client.head(url, headers={**TUS, **owner}).headers["upload-offset"] == "5000"
        good_sum = base64.b64encode(
            hashlib.sha1(data[5000:6000], usedforsecurity=False).digest()
        ).decode()
        checked = client.patch(
            url,
            content=data[5000:6000],
            headers={
                **PATCH,
                **owner,
                "Upload-Offset": "5000",
                "Upload-Checksum": f"sha1 {good_sum}",
            },
        )
        assert checked.status_code == 204
        assert checked.headers["upload-offset"] == "6000"
        unknown_algo = client.patch(
            url,
            content=b"x",
            headers={**PATCH, **owner, "Upload-Offset": "6000", "Upload-Checksum": "crc99 AAAA"},
        )
        assert unknown_algo.status_code == 400
        too_far = client.patch(
            url, content=b"x" * (len(data)), headers={**PATCH, **owner, "Upload-Offset": "6000"}
        )
        assert too_far.status_code == 413


def test_method_override_and_termination(live: LiveServer, owner: dict[str, str]) -> None:
    with live.client() as client:
        created = create(client, owner, 5000, filename="x.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        overridden = client.post(url, headers={**TUS, **owner, "X-HTTP-Method-Override": "HEAD"})
        assert overridden.status_code == 200
        assert overridden.headers["upload-offset"] == "0"
        gone = client.delete(url, headers={**TUS, **owner})
        assert gone.status_code == 204
        assert client.head(url, headers={**TUS, **owner}).status_code == 404
        assert client.get(f"/api/videos/{video_id}", headers=owner).status_code == 404


def test_someone_elses_upload_is_not_found(
    live: LiveServer, owner: dict[str, str], stranger: dict[str, str]
) -> None:
    with live.client() as client:
        url = create(client, owner, 5000, filename="x.mp4").headers["location"]
        assert client.head(url, headers={**TUS, **stranger}).status_code == 404
        patch = client.patch(
            url, content=b"abc", headers={**PATCH, **stranger, "Upload-Offset": "0"}
        )
        assert patch.status_code == 404
        assert client.delete(url, headers={**TUS, **stranger}).status_code == 404
        assert client.head(url, headers={**TUS, **owner}).headers["upload-offset"] == "0"
        assert client.head(url, headers=TUS).status_code == 401


def test_content_that_is_not_a_video_is_refused_early(
    live: LiveServer, owner: dict[str, str]
) -> None:
    text = b"just some text, not a video at all\n" * 200
    with live.client() as client:
        created = create(client, owner, len(text), filename="fake.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        refused = client.patch(url, content=text, headers={**PATCH, **owner, "Upload-Offset": "0"})
        assert refused.status_code == 415
        assert "does not look like a video" in refused.json()["detail"]
        assert client.get(f"/api/videos/{video_id}", headers=owner).status_code == 404


def test_multipart_upload(live: LiveServer, owner: dict[str, str], clip: Path) -> None:
    with live.client() as client:
        response = client.post(
            "/api/videos",
            headers=owner,
            files={"video_file": ("../../etc/passwd\u202e4pm.mp4", clip.read_bytes(), "video/mp4")},
            data={"title": "From curl"},
        )
        assert response.status_code == 201, response.text
        video = response.json()
        assert video["title"] == "From curl"
        assert video["filename"] == "passwd4pm.mp4"
        assert video["size_bytes"] == clip.stat().st_size
        assert video["status"] in {"PROCESSING", "READY"}
        ready = wait_for_status(client, video["id"], {"READY"}, headers=owner)
        download = client.get(f"/api/videos/{video['id']}/download", headers=owner)
        assert download.content == clip.read_bytes()
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert ".." not in disposition
        assert "\u202e" not in disposition
        assert ready["width"] == 320


@pytest.mark.parametrize(
    ("name", "body", "status", "detail"),
    [
        (
            "notes.mp4",
            b"hello world, definitely not a video" * 100,
            415,
            "does not look like a video",
        ),
        ("empty.mp4", b"", 400, "empty"),
        ("virus.exe", b"MZ" + b"\0" * 100, 415, "Only MP4, MOV, AVI, WebM and MKV"),
    ],
)
def test_multipart_refusals(
    live: LiveServer, owner: dict[str, str], name: str, body: bytes, status: int, detail: str
) -> None:
    with live.client() as client:
        response = client.post("/api/videos", headers=owner, files={"file": (name, body)})
        assert response.status_code == status
        assert detail in response.json()["detail"]
        assert client.get("/api/videos", headers=owner).json()["meta"]["total"] == 0
    assert not any(p.suffix == ".part" for p in live.settings.spool_dir.iterdir())


def test_multipart_without_a_file_field(live: LiveServer, owner: dict[str, str]) -> None:
    with live.client() as client:
        response = client.post("/api/videos", headers=owner, files={"other": ("a.mp4", b"x")})
        assert response.status_code == 400
        assert "field named 'file'" in response.json()["detail"]
        not_multipart = client.post("/api/videos", headers=owner, json={"file": "x"})
        assert not_multipart.status_code == 415


def test_quota(make_settings: object, clip: Path) -> None:
    size = clip.stat().st_size
    settings = make_settings({"VIDBOX_UPLOADS__QUOTA_BYTES": str(size + size // 2)})  # type: ignore[operator]
    add_user(settings, "q@example.org")
    live = start_server(settings)
    try:
        with live.client() as client:
            auth = bearer(api_login(client, "q@example.org")["access"])
            first = client.post(
                "/api/videos", headers=auth, files={"file": ("a.mp4", clip.read_bytes())}
            )
            assert first.status_code == 201
            second = client.post(
                "/api/videos", headers=auth, files={"file": ("b.mp4", clip.read_bytes())}
            )
            assert second.status_code == 413
            assert "quota" in second.json()["detail"]
            tus = create(client, auth, size, filename="c.mp4")
            assert tus.status_code == 413
            assert client.get("/api/videos", headers=auth).json()["meta"]["total"] == 1
    finally:
        live.stop()


def test_abandoned_uploads_are_cleaned_up(
    live: LiveServer, owner: dict[str, str], clip: Path
) -> None:
    data = clip.read_bytes()
    with live.client() as client:
        created = create(client, owner, len(data), filename="x.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        client.patch(url, content=data[:5000], headers={**PATCH, **owner, "Upload-Offset": "0"})
        later = datetime.now(UTC) + timedelta(hours=live.settings.uploads.expire_hours + 1)

        async def sweep() -> None:
            async with open_services(live.settings) as services:
                await run_cleanup(services, now=later)

        asyncio.run(sweep())
        assert client.head(url, headers={**TUS, **owner}).status_code == 404
        assert client.get(f"/api/videos/{video_id}", headers=owner).status_code == 404
    assert list(live.settings.spool_dir.glob("*.part")) == []


def test_parts_push_the_expiry_forward_once_it_falls_behind(
    live: LiveServer, owner: dict[str, str], clip: Path
) -> None:
    data = clip.read_bytes()
    hours = live.settings.uploads.expire_hours
    with live.client() as client:
        url = create(client, owner, len(data), filename="x.mp4").headers["location"]

        def age(seconds: int) -> datetime:
            """Set the upload's expiry as if it had been set ``seconds`` ago."""
            expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(
                hours=hours, seconds=-seconds
            )

            async def update() -> None:
                async with open_services(live.settings) as services, services.db.session() as s:
                    row = await s.get(Upload, url.rsplit("/", 1)[1])
                    assert row is not None
                    row.expires_at = expiry
                    s.add(row)

            asyncio.run(update())
            return expiry

        def patch(start: int, end: int) -> datetime:
            headers = {**PATCH, **owner, "Upload-Offset": str(start)}
            answer = client.patch(url, content=data[start:end], headers=headers)
            assert answer.status_code == 204, answer.text
            return parsedate_to_datetime(answer.headers["upload-expires"])

        # Parts back to back: an expiry set 30 s ago is as good as current and stays.
        recent = age(30)
        assert patch(0, 5000) == recent
        # An upload idle for five minutes: the next part moves its expiry forward.
        age(300)
        moved = patch(5000, 10000)
        assert moved >= datetime.now(UTC) + timedelta(hours=hours, seconds=-5)
        head = client.head(url, headers={**TUS, **owner})
        assert parsedate_to_datetime(head.headers["upload-expires"]) == moved


def test_uploads_on_a_server_without_vidbox_extensions(settings: Settings, clip: Path) -> None:
    # Plain uvicorn on uvloop offers neither readinto nor zero-copy: bodies then come through
    # Starlette's stream, as they would under any other ASGI server.
    server = start_server(settings, http="httptools", loop="uvloop")
    try:
        add_user(settings, "plain@example.org")
        data = clip.read_bytes()
        with server.client() as client:
            auth = bearer(api_login(client, "plain@example.org")["access"])
            created = create(client, auth, len(data), filename="tus.mp4")
            url = created.headers["location"]
            for start in range(0, len(data), 40_000):
                headers = {**PATCH, **auth, "Upload-Offset": str(start)}
                patched = client.patch(url, content=data[start : start + 40_000], headers=headers)
                assert patched.status_code == 204, patched.text
            posted = client.post(
                "/api/videos", headers=auth, files={"file": ("one.mp4", data, "video/mp4")}
            )
            assert posted.status_code == 201, posted.text
            for video_id in (created.headers["vidbox-video-id"], posted.json()["id"]):
                wait_for_status(client, video_id, {"READY"}, headers=auth)
                download = client.get(f"/api/videos/{video_id}/download", headers=auth)
                assert download.content == data
    finally:
        server.stop()
