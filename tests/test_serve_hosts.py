"""One box as several real `vidbox serve` processes, each with a data folder of its own as on
separate hosts: two web processes sharing a spool folder (uploads.spool_dir) and the
database, a worker that sees neither spool, all on one S3 store. A tus upload's PATCHes may
reach either web process; a process killed while completing an upload leaves it to the other.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres import DATABASES, TEST_SECRET_KEY, database_env, run_sql, settings_for
from tests.proxy import BodyLimitProxy
from tests.support import (
    LiveServer,
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    make_test_clip,
    s3_environ,
    start_server,
    wait_for_status,
    wait_until,
)
from tests.web.test_uploads import PATCH, TUS, meta
from vidbox.config import load_settings


class StallingProxy(BodyLimitProxy):
    """In front of the S3 store: while ``stall`` is set, uploads of media objects wait until
    ``resume`` is set (``stalled`` tells that one is waiting)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, max_body=1 << 40)
        self.stall = False
        self.stalled = threading.Event()
        self.resume = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        media = scope["type"] == "http" and "/videos/" in scope["path"]
        if media and self.stall and scope["method"] in ("PUT", "POST"):
            self.stalled.set()
            await asyncio.to_thread(self.resume.wait)
        await super().__call__(scope, receive, send)


@dataclass
class Box:
    tmp_path: Path
    env: dict[str, str]  # what every process of the box shares
    processes: list[Serve]

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Serve:
        environ = clean_env(
            **{**self.env, **(env or {})},
            VIDBOX_DATA_DIR=str(self.tmp_path / name),
            TEST_LOG=str(self.tmp_path / f"{name}.log"),
        )
        serve = Serve(*args, env=environ)
        self.processes.append(serve)
        return serve

    def web(self, name: str, **env: str) -> Serve:
        serve = self.start(name, "--role", "web", env=env)
        serve.wait_ready()
        return serve

    def worker(self, name: str) -> Serve:
        serve = self.start(name, "--role", "worker")
        wait_until(
            lambda: "job runner started" in serve.log() or serve.proc.poll() is not None,
            timeout=30,
            what="the worker to start",
        )
        assert serve.proc.poll() is None, serve.log()
        return serve


@pytest.fixture
def box(tmp_path: Path, moto_endpoint: str) -> Iterator[Box]:
    # One database for the whole box: a SQLite file on this host, or a PostgreSQL database.
    database = (
        database_env(tmp_path / "box")
        if DATABASES is not None
        else {"VIDBOX_DATABASE__PATH": str(tmp_path / "box.db")}
    )
    env = {
        **database,
        **s3_environ(moto_endpoint),
        "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY,
        "VIDBOX_UPLOADS__SPOOL_DIR": str(tmp_path / "shared-spool"),
        "VIDBOX_UPLOADS__RESERVE_BYTES": "0",
    }
    add_user(settings_for(data_dir=tmp_path / "box", environ=env), "ann@example.org")
    made = Box(tmp_path, env, [])
    yield made
    for serve in made.processes:
        if serve.proc.poll() is None:
            serve.stop()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("clip")
    return make_test_clip(folder / "clip.mp4", seconds=2, lossless=True).read_bytes()


def _create(url: str, auth: dict[str, str], length: int) -> tuple[str, str]:
    headers = {
        **TUS,
        **auth,
        "Upload-Length": str(length),
        "Upload-Metadata": meta(filename="a.mp4"),
    }
    created = httpx.post(f"{url}/api/uploads", headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    return created.headers["location"], created.headers["vidbox-video-id"]


def _patch(url: str, auth: dict[str, str], offset: int, body: bytes) -> httpx.Response:
    headers = {**PATCH, **auth, "Upload-Offset": str(offset)}
    return httpx.patch(url, content=body, headers=headers, timeout=60)


def test_patches_alternate_between_web_processes_and_a_worker_elsewhere_processes(
    box: Box, video: bytes
) -> None:
    webs = [box.web("web-a"), box.web("web-b")]
    with httpx.Client(base_url=webs[0].url, timeout=30) as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
    location, video_id = _create(webs[0].url, auth, len(video))

    # A body arriving at one process holds the upload: the other refuses a second writer.
    part = len(video) // 6
    with socket.create_connection(("127.0.0.1", webs[0].port), timeout=20) as sock:
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: 0\r\nContent-Length: {2 * part}\r\n\r\n"
        ).encode()
        sock.sendall(head + video[:part])

        def offset_on(web: Serve) -> int:
            answer = httpx.head(web.url + location, headers={**TUS, **auth}, timeout=30)
            return int(answer.headers["upload-offset"])

        wait_until(lambda: offset_on(webs[1]) == part, what="the first bytes in the spool")
        second = _patch(webs[1].url + location, auth, part, video[part : 2 * part])
        assert second.status_code == 423, second.text
    # The cut-off body kept what arrived; the other process goes on from there.
    wait_until(lambda: offset_on(webs[1]) == part, what="the cut body to be let go")

    offset, turn = part, 1
    while offset < len(video):
        web = webs[turn % 2]
        assert offset_on(web) == offset
        answer = _patch(web.url + location, auth, offset, video[offset : offset + part])
        assert answer.status_code == 204, answer.text
        offset, turn = int(answer.headers["upload-offset"]), turn + 1

    box.worker("worker")
    with httpx.Client(base_url=webs[1].url, timeout=30) as client:
        wait_for_status(client, video_id, {"READY"}, timeout=90, headers=auth)
        assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == video
    assert list((box.tmp_path / "shared-spool").glob("*.part")) == []


def test_a_web_process_killed_while_completing_leaves_the_upload_to_another(
    box: Box, video: bytes, moto_endpoint: str
) -> None:
    proxy = StallingProxy(f"http://{moto_endpoint}")
    front: LiveServer = start_server(
        load_settings(data_dir=box.tmp_path / "proxy", environ={}),
        app=proxy,  # type: ignore[arg-type]
    )
    try:
        through_proxy = {"VIDBOX_STORAGE__ENDPOINT": front.url.removeprefix("http://")}
        doomed = box.web("web-a", **through_proxy)
        other = box.web("web-b", **through_proxy)
        with httpx.Client(base_url=other.url, timeout=30) as client:
            auth = bearer(api_login(client, "ann@example.org")["access"])
        location, video_id = _create(doomed.url, auth, len(video))

        # Every byte reaches the spool; storing the original hangs; the process is killed.
        proxy.stall = True
        outcome: list[BaseException | httpx.Response] = []

        def send_all() -> None:
            try:
                outcome.append(_patch(doomed.url + location, auth, 0, video))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        final = threading.Thread(target=send_all, daemon=True)
        final.start()
        assert proxy.stalled.wait(timeout=30), doomed.log()
        doomed.proc.kill()
        doomed.proc.wait(timeout=30)
        final.join(timeout=30)
        assert [type(x) for x in outcome] == [httpx.RemoteProtocolError]  # no answer came
        completed = "SELECT completed_at FROM uploads WHERE video_id = ?"
        settings = settings_for(data_dir=box.tmp_path / "box", environ=box.env)
        assert run_sql(settings, completed, video_id) == [(None,)]

        # The client's retry asks the other process, which completes the upload itself.
        proxy.stall = False
        proxy.resume.set()
        head = httpx.head(other.url + location, headers={**TUS, **auth}, timeout=60)
        assert head.status_code == 200, head.text
        assert head.headers["upload-offset"] == str(len(video))
        assert "completing an upload left unfinished" in other.log()

        box.worker("worker")
        with httpx.Client(base_url=other.url, timeout=30) as client:
            wait_for_status(client, video_id, {"READY"}, timeout=90, headers=auth)
            assert client.get(f"/api/videos/{video_id}/download", headers=auth).content == video
        jobs = "SELECT count(*) FROM jobs WHERE video_id = ?"
        assert run_sql(settings, jobs, video_id) == [(1,)]
    finally:
        front.stop()
