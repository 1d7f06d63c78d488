"""A web-only process (server.role = "web") stores a finished upload's original in the media
store before queueing its job, so a worker with a data folder of its own finds the source;
and an upload whose completion broke off (bytes all in, nothing stored or queued) is
completed by the next HEAD or PATCH."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.postgres import run_sql
from tests.proxy import BodyLimitProxy
from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    run_async,
    s3_environ,
    start_server,
    wait_for_status,
)
from tests.web.test_upload_content import send_in_parts
from tests.web.test_uploads import PATCH, TUS, create
from vidbox.config import Settings
from vidbox.storage import load


def same_box(settings: Settings) -> dict[str, str]:
    """The environment that points another process at ``settings``' database (its own
    data folder otherwise): the SQLite file, or the PostgreSQL URL and the shared key."""
    if settings.database.url:
        return {
            "VIDBOX_DATABASE__URL": settings.database.url,
            "VIDBOX_SERVER__SECRET_KEY": settings.server.secret_key,
        }
    return {"VIDBOX_DATABASE__PATH": str(settings.database_path)}


def stored_bytes(settings: Settings, key: str) -> bytes:
    async def read() -> bytes:
        storage = load(settings)
        try:
            return b"".join([chunk async for chunk in storage.open_range(key)])
        finally:
            await storage.close()

    return run_async(read())


@pytest.fixture(params=["local", "s3"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The media store every process of the box uses."""
    if request.param == "s3":
        return s3_environ(request.getfixturevalue("moto_endpoint"))
    return {"VIDBOX_STORAGE__PATH": str(tmp_path / "media")}


@pytest.fixture
def web(make_settings: Callable[..., Settings], store_env: dict[str, str]) -> Iterator[LiveServer]:
    live = start_server(make_settings({**store_env, "VIDBOX_SERVER__ROLE": "web"}))
    yield live
    live.stop()


def worker_for(
    make_settings: Callable[..., Settings], tmp_path: Path, box: Settings, store: dict[str, str]
) -> LiveServer:
    """A process with a data folder (and spool) of its own that runs the box's jobs."""
    env = {**store, **same_box(box), "VIDBOX_SERVER__ROLE": "all"}
    return start_server(make_settings(env, data_dir=tmp_path / "worker"))


def test_the_original_is_stored_before_the_job_is_queued(
    web: LiveServer,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    store_env: dict[str, str],
    clip: Path,
) -> None:
    add_user(web.settings, "ann@example.org")
    data = clip.read_bytes()
    with web.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        created = create(client, auth, len(data), filename="holiday.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        assert send_in_parts(client, auth, url, data, 40_000).status_code == 204

        # When the last PATCH is answered the original is in the store, the job names no
        # spool file and the spool holds nothing more of it.
        (key,) = run_sql(web.settings, "SELECT original_key FROM videos WHERE id = ?", video_id)
        assert key[0] and stored_bytes(web.settings, key[0]) == data
        (payload,) = run_sql(web.settings, "SELECT payload FROM jobs WHERE video_id = ?", video_id)
        assert "spool_id" not in payload[0]
        assert list(web.settings.spool_dir.glob("*.part")) == []

        # A worker that never saw the spool processes it from the store.
        worker = worker_for(make_settings, tmp_path, web.settings, store_env)
        try:
            wait_for_status(client, video_id, {"READY"}, headers=auth)
        finally:
            worker.stop()
        assert not list(worker.settings.spool_dir.glob("*.part"))
        assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == data


def test_a_one_shot_upload_on_a_web_process_is_stored_before_queueing(
    web: LiveServer, clip: Path
) -> None:
    add_user(web.settings, "ann@example.org")
    data = clip.read_bytes()
    with web.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        answer = client.post("/api/videos", headers=auth, files={"file": ("c.mp4", data)})
        assert answer.status_code == 201, answer.text
        video_id = answer.json()["id"]
    (key,) = run_sql(web.settings, "SELECT original_key FROM videos WHERE id = ?", video_id)
    assert key[0] and stored_bytes(web.settings, key[0]) == data
    (payload,) = run_sql(web.settings, "SELECT payload FROM jobs WHERE video_id = ?", video_id)
    assert "spool_id" not in payload[0]
    assert list(web.settings.spool_dir.glob("*.part")) == []


@dataclass
class BrokenCompletion:
    """A web process whose upload got every byte but could not store its original."""

    web: LiveServer
    store: dict[str, str]
    client: httpx.Client
    auth: dict[str, str]
    url: str
    video_id: str
    data: bytes


@contextlib.contextmanager
def broken_completion(
    make_settings: Callable[..., Settings], moto_endpoint: str, clip: Path, part_bytes: int
) -> Iterator[BrokenCompletion]:
    # The store behind a proxy that can refuse uploads: the final PATCH receives every byte,
    # then cannot store the original, as if its process had died there. Yields with the
    # store back.
    proxy = BodyLimitProxy(f"http://{moto_endpoint}", max_body=1 << 40)
    front = start_server(make_settings(), app=proxy)  # type: ignore[arg-type]
    store = s3_environ(front.url.removeprefix("http://"))
    web = start_server(make_settings({**store, "VIDBOX_SERVER__ROLE": "web"}))
    try:
        add_user(web.settings, "ann@example.org")
        data = clip.read_bytes()
        with web.client() as client:
            auth = bearer(api_login(client, "ann@example.org")["access"])
            created = create(client, auth, len(data), filename="holiday.mp4")
            url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
            proxy.max_body = 0
            last = send_in_parts(client, auth, url, data, part_bytes)
            assert last.status_code >= 500, last.text
            proxy.max_body = 1 << 40
            yield BrokenCompletion(web, store, client, auth, url, video_id, data)
    finally:
        web.stop()
        front.stop()


def test_the_next_head_completes_an_upload_whose_completion_broke_off(
    make_settings: Callable[..., Settings], tmp_path: Path, moto_endpoint: str, clip: Path
) -> None:
    worker: LiveServer | None = None
    with broken_completion(make_settings, moto_endpoint, clip, 40_000) as box:
        web, client, auth, url, video_id, data = (
            box.web,
            box.client,
            box.auth,
            box.url,
            box.video_id,
            box.data,
        )
        try:
            completed = "SELECT completed_at FROM uploads WHERE video_id = ?"
            assert run_sql(web.settings, completed, video_id) == [(None,)]
            assert run_sql(web.settings, "SELECT 1 FROM jobs WHERE video_id = ?", video_id) == []

            # The store is back; the client's retry asks HEAD, which completes the upload.
            head = client.head(url, headers={**TUS, **auth})
            assert head.status_code == 200
            assert head.headers["upload-offset"] == str(len(data))
            assert run_sql(web.settings, completed, video_id) != [(None,)]
            # Sent again, the last part meets a complete upload.
            again = client.patch(
                url, content=b"", headers={**PATCH, **auth, "Upload-Offset": str(len(data))}
            )
            assert again.status_code == 409
            assert again.headers["upload-offset"] == str(len(data))

            worker = worker_for(make_settings, tmp_path, web.settings, box.store)
            wait_for_status(client, video_id, {"READY"}, headers=auth)
            assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == data
            jobs = "SELECT count(*) FROM jobs WHERE video_id = ?"
            assert run_sql(web.settings, jobs, video_id) == [(1,)]
        finally:
            if worker is not None:
                worker.stop()


def test_a_patch_completes_an_upload_whose_completion_broke_off(
    make_settings: Callable[..., Settings], moto_endpoint: str, clip: Path
) -> None:
    with broken_completion(make_settings, moto_endpoint, clip, len(clip.read_bytes())) as box:
        # A client that resends the whole body without asking HEAD first.
        again = box.client.patch(
            box.url, content=box.data, headers={**PATCH, **box.auth, "Upload-Offset": "0"}
        )
        assert again.status_code == 409
        assert again.headers["upload-offset"] == str(len(box.data))
        original = "SELECT original_key FROM videos WHERE id = ?"
        (key,) = run_sql(box.web.settings, original, box.video_id)
        assert key[0] and stored_bytes(box.web.settings, key[0]) == box.data
        jobs = "SELECT state FROM jobs WHERE video_id = ?"
        assert run_sql(box.web.settings, jobs, box.video_id) == [("queued",)]


def test_one_process_on_sqlite_hands_the_spool_file_to_its_own_job(
    live: LiveServer, clip: Path
) -> None:
    # role=all: on SQLite every process is on this host and this one runs the job, which
    # links the spool file (no copy before the 204); on PostgreSQL a worker of another host
    # may claim it, so the original is stored first there too.
    add_user(live.settings, "ann@example.org")
    data = clip.read_bytes()
    with live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        created = create(client, auth, len(data), filename="holiday.mp4")
        url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
        assert send_in_parts(client, auth, url, data, len(data)).status_code == 204
        (payload,) = run_sql(live.settings, "SELECT payload FROM jobs WHERE video_id = ?", video_id)
        assert ("spool_id" in payload[0]) == (not live.settings.database.url)
        wait_for_status(client, video_id, {"READY"}, headers=auth)
        assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == data
