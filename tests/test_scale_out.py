"""One box as four real processes: two `vidbox serve --role web` and two `--role worker`, each
with a data folder of its own, on one PostgreSQL database, one S3 store (moto), one secret key
and one upload spool for the web processes (uploads.spool_dir), as on separate hosts behind a
load balancer. Nothing else connects them: a worker finds an upload's original in the store."""

from __future__ import annotations

import base64
import re
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.postgres import database_env, only_postgres, run_sql, settings_for
from tests.support import (
    Serve,
    add_user,
    api_login,
    bearer,
    browser_login,
    clean_env,
    make_test_clip,
    s3_environ,
    wait_until,
)
from tests.web.test_events import read_events_from
from vidbox.config import Settings
from vidbox.models import JobState

pytestmark = only_postgres

UPLOADS = 20
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
# The bound for a change made on one process to hold on the others; the caches it
# beats live 2 s.
CROSS_PROCESS_SECONDS = 1.0


@dataclass
class Box:
    settings: Settings  # the box as seen from outside (add_user, run_sql)
    web_a: Serve
    web_b: Serve
    workers: list[Serve]

    def client(self, web: Serve) -> httpx.Client:
        return httpx.Client(base_url=web.url, timeout=30)


def _wait_started(worker: Serve) -> None:
    wait_until(
        lambda: "job runner started" in worker.log() or worker.proc.poll() is not None,
        timeout=30,
        what="the worker to start",
    )
    assert worker.proc.poll() is None, worker.log()


@pytest.fixture(scope="module")
def box(
    tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, postgres_databases: object
) -> Iterator[Box]:
    root = tmp_path_factory.mktemp("scale-out")
    # One database (and the suite's key) for the box; every process gets its URL explicitly,
    # or clean_env would give each data folder a database of its own.
    shared = {
        **database_env(root / "box"),
        **s3_environ(moto_endpoint),
        "VIDBOX_UPLOADS__RESERVE_BYTES": "0",
    }
    settings = settings_for(data_dir=root / "box", environ=shared)
    spool = root / "spool"
    spool.mkdir()

    def start(name: str, role: str, **extra: str) -> Serve:
        data_dir = root / name
        data_dir.mkdir()
        env = clean_env(
            **shared, **extra, VIDBOX_DATA_DIR=str(data_dir), TEST_LOG=str(root / f"{name}.log")
        )
        return Serve("--role", role, env=env)

    # The web processes share one spool folder (as an NFS mount would be); the workers have
    # none of it: they find each upload's original in the store.
    web = {"VIDBOX_UPLOADS__SPOOL_DIR": str(spool)}
    processes = [start("web-a", "web", **web), start("web-b", "web", **web)]
    try:
        # A dead worker's jobs are retaken once their lease runs out: 5 s, not 60, here.
        processes += [
            start(f"worker-{n}", "worker", VIDBOX_PROCESSING__LEASE_SECONDS="5") for n in (1, 2)
        ]
        web_a, web_b, *workers = processes
        web_a.wait_ready()
        web_b.wait_ready()
        for worker in workers:
            _wait_started(worker)
        yield Box(settings, web_a, web_b, workers)
    finally:
        for process in processes:
            if process.proc.poll() is None:
                process.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 1 s 320x240 MP4."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=1).read_bytes()


def _distinct(clip: bytes, n: int) -> bytes:
    """``clip`` with a ``free`` box of its own at the end (MP4 readers skip those): the same
    video, other bytes, so a download mixed up with another's shows."""
    payload = f"upload {n}".encode()
    return clip + struct.pack(">I", 8 + len(payload)) + b"free" + payload


def tus_upload(
    clients: list[httpx.Client],
    auth: dict[str, str],
    data: bytes,
    *,
    parts: int = 4,
    last: bool = True,
) -> tuple[str, str]:
    """A tus upload created on ``clients[0]`` in ``parts`` PATCHes that go round the
    clients (all but the last part unless ``last``); returns its video id and location."""
    name = base64.b64encode(b"clip.mp4").decode()
    created = clients[0].post(
        "/api/uploads",
        headers={
            **TUS,
            **auth,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": f"filename {name}",
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    step = -(-len(data) // parts)
    offsets = list(range(0, len(data), step))
    if not last:
        offsets = offsets[:-1]
    for n, offset in enumerate(offsets):
        client = clients[n % len(clients)]
        sent = client.patch(
            location,
            content=data[offset : offset + step],
            headers={**PATCH, **auth, "Upload-Offset": str(offset)},
        )
        assert sent.status_code == 204, f"PATCH {n} to {client.base_url}: {sent.text}"
    return str(created.headers["vidbox-video-id"]), str(location)


def _ready(client: httpx.Client, auth: dict[str, str], video_id: str) -> bool:
    video = client.get(f"/api/videos/{video_id}", headers=auth).json()
    assert video["status"] != "FAILED", video
    return bool(video["status"] == "READY" and video["progress"] == 100)


def _job_starts(box: Box) -> Counter[str]:
    """How often each video's process_video job was started, from both workers' logs: the
    runner logs every attempt before it runs the handler (and its FFmpeg)."""
    started = Counter[str]()
    pattern = re.compile(r'msg="job started" kind=process_video .*video_id=(\w+)')
    for worker in box.workers:
        started.update(pattern.findall(worker.log()))
    return started


def test_uploads_whose_parts_alternate_between_web_processes_are_processed_once_each(
    box: Box, clip: bytes
) -> None:
    add_user(box.settings, "ann@example.org")
    with box.client(box.web_a) as a, box.client(box.web_b) as b:
        auth = bearer(api_login(a, "ann@example.org")["access"])
        sent: dict[str, bytes] = {}
        for n in range(UPLOADS):
            data = _distinct(clip, n)
            clients = [a, b] if n % 2 == 0 else [b, a]  # created on either, parts alternate
            video_id, _ = tus_upload(clients, auth, data)
            sent[video_id] = data
        for video_id in sent:
            wait_until(lambda v=video_id: _ready(b, auth, v), timeout=60, what=f"{video_id} READY")
        for n, (video_id, data) in enumerate(sent.items()):
            client = (a, b)[n % 2]
            download = client.get(f"/api/videos/{video_id}/download", headers=auth)
            assert download.status_code == 200
            assert download.content == data
    rows = run_sql(
        box.settings,
        "SELECT video_id, state, attempts FROM jobs WHERE kind = 'process_video'",
    )
    ours = {video_id: (state, attempts) for video_id, state, attempts in rows if video_id in sent}
    assert ours == {video_id: (JobState.SUCCEEDED, 1) for video_id in sent}
    starts = _job_starts(box)
    assert {video_id: starts[video_id] for video_id in sent} == dict.fromkeys(sent, 1)
    # Both workers took jobs: the queue spreads over processes, not one taking all.
    for worker in box.workers:
        assert "kind=process_video" in worker.log(), worker.log()


def test_an_event_stream_on_one_web_process_sees_a_video_finished_by_a_worker(
    box: Box, clip: bytes
) -> None:
    add_user(box.settings, "bea@example.org")
    timeout = httpx.Timeout(30, read=20)
    with box.client(box.web_a) as a, httpx.Client(base_url=box.web_b.url, timeout=timeout) as b:
        auth = bearer(api_login(a, "bea@example.org")["access"])
        data = clip
        video_id, location = tus_upload([a], auth, data, parts=2, last=False)
        with b.stream("GET", f"/api/videos/{video_id}/events", headers=auth) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            first = read_events_from(lines, until="video")
            assert first[-1][1]["status"] == "UPLOADING"
            offset = -(-len(data) // 2)
            done = a.patch(
                location,
                content=data[offset:],
                headers={**PATCH, **auth, "Upload-Offset": str(offset)},
            )
            assert done.status_code == 204, done.text
            events = read_events_from(lines, until="end")
    statuses = [e["status"] for name, e in events if name == "video"]
    assert statuses[-1] == "READY"
    assert [e for name, e in events if name == "video"][-1]["progress"] == 100


def test_a_sign_in_ended_on_one_web_process_is_refused_by_the_other_within_a_second(
    box: Box,
) -> None:
    add_user(box.settings, "cy@example.org")
    with box.client(box.web_a) as a, box.client(box.web_b) as b:
        # An API sign-out on A.
        access = api_login(a, "cy@example.org")["access"]
        assert b.get("/api/me", headers=bearer(access)).status_code == 200  # B has it cached
        assert a.post("/api/auth/logout", headers=bearer(access)).status_code == 204
        wait_until(
            lambda: b.get("/api/me", headers=bearer(access)).status_code == 401,
            timeout=CROSS_PROCESS_SECONDS,
            what="web B to refuse the signed-out token",
        )
        # "Sign out everywhere" in the browser on A ends the cookie sign-in on B.
        csrf = browser_login(a, "cy@example.org")
        b.cookies = a.cookies
        assert b.get("/settings").status_code == 200
        done = a.post("/settings/signout-everywhere", data={"_csrf": csrf})
        assert done.status_code == 303, done.text
        wait_until(
            lambda: b.get("/settings").status_code != 200,
            timeout=CROSS_PROCESS_SECONDS,
            what="web B to refuse the signed-out browser",
        )


def test_a_video_deleted_on_one_web_process_is_gone_from_the_other_within_a_second(
    box: Box, clip: bytes
) -> None:
    add_user(box.settings, "dee@example.org")
    with box.client(box.web_a) as a, box.client(box.web_b) as b:
        auth = bearer(api_login(a, "dee@example.org")["access"])
        video_id, _ = tus_upload([a, b], auth, clip)
        wait_until(lambda: _ready(a, auth, video_id), timeout=60, what="READY")
        media = [f"/api/videos/{video_id}/download", f"/api/videos/{video_id}/hls/master.m3u8"]
        for path in media:  # B has the video's media lookups cached
            assert b.get(path, headers=auth).status_code == 200
        assert a.delete(f"/api/videos/{video_id}", headers=auth).status_code == 204
        wait_until(
            lambda: all(b.get(path, headers=auth).status_code == 404 for path in media),
            timeout=CROSS_PROCESS_SECONDS,
            what="web B to answer 404",
        )


def _running_job(box: Box, video_id: str) -> tuple[str, str] | None:
    rows = run_sql(
        box.settings,
        "SELECT state, worker, pids FROM jobs WHERE kind = 'process_video' AND video_id = ?",
        video_id,
    )
    if rows and rows[0][0] == JobState.RUNNING and rows[0][2]:  # FFmpeg has started
        return str(rows[0][1]), str(rows[0][2])
    return None


def test_a_worker_killed_mid_job_leaves_its_job_to_the_other(box: Box, tmp_path: Path) -> None:
    add_user(box.settings, "eli@example.org")
    # Long enough to be killed while FFmpeg runs: lossless, so it is encoded, not copied.
    data = make_test_clip(tmp_path / "long.mp4", size="640x480", seconds=8, lossless=True)
    data_bytes = data.read_bytes()
    with box.client(box.web_a) as a:
        auth = bearer(api_login(a, "eli@example.org")["access"])
        video_id, _ = tus_upload([a], auth, data_bytes, parts=2)
        claimed: tuple[str, str] | None = None

        def running() -> bool:
            nonlocal claimed
            claimed = _running_job(box, video_id)
            return claimed is not None

        wait_until(running, timeout=30, what="a worker to be running the job's FFmpeg")
        assert claimed is not None
        pid = int(claimed[0].split(":")[1])
        (victim,) = [w for w in box.workers if w.proc.pid == pid]
        (survivor,) = [w for w in box.workers if w is not victim]
        victim.proc.kill()  # SIGKILL: no chance to put the job back
        assert victim.proc.wait(timeout=10) < 0
        state = run_sql(box.settings, "SELECT state FROM jobs WHERE video_id = ?", video_id)
        assert state == [(JobState.RUNNING,)], "the job ended before its worker was killed"
        wait_until(lambda: _ready(a, auth, video_id), timeout=60, what="the survivor to finish")
        assert a.get(f"/api/videos/{video_id}/download", headers=auth).content == data_bytes
    ((attempts, worker),) = run_sql(
        box.settings,
        "SELECT attempts, worker FROM jobs WHERE kind = 'process_video' AND video_id = ?",
        video_id,
    )
    assert attempts == 2
    assert worker is None or f":{survivor.proc.pid}:" in worker
    assert f"video_id={video_id}" in survivor.log()
