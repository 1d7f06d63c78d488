"""`vidbox serve --role web|worker`: web processes run no jobs, workers run them and the
cleanup without listening on any port; both share one box through its database."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.postgres import run_sql, settings_for
from tests.support import (
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    wait_for_status,
    wait_until,
)
from vidbox.models import JobState


def _listening_sockets(pid: int) -> set[str]:
    """Inodes of the TCP sockets in LISTEN state that process ``pid`` holds open."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(target[len("socket:[") : -1])
    listening = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    return held & listening


def test_a_web_process_queues_and_a_worker_processes(tmp_path: Path, clip: Path) -> None:
    data_dir = tmp_path / "data"
    settings = settings_for(data_dir=data_dir, environ={})
    add_user(settings, "ann@example.org")
    base = {"VIDBOX_DATA_DIR": str(data_dir)}
    web = Serve("--role", "web", env=clean_env(**base, TEST_LOG=str(tmp_path / "web.log")))
    worker: Serve | None = None
    try:
        web.wait_ready()
        with httpx.Client(base_url=web.url, timeout=30) as client:
            auth = bearer(api_login(client, "ann@example.org")["access"])
            files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
            created = client.post("/api/videos", headers=auth, files=files)
            assert created.status_code == 201, created.text
            video_id = str(created.json()["id"])
            assert client.get(f"/api/videos/{video_id}", headers=auth).json()["status"] != "READY"
            jobs = run_sql(settings, "SELECT state FROM jobs WHERE video_id = ?", video_id)
            assert jobs == [(JobState.QUEUED,)]
            assert "job runner started" not in web.log()
            cleanups = "SELECT count(*) FROM jobs WHERE kind = 'cleanup'"
            assert run_sql(settings, cleanups) == [(0,)]

            worker = Serve(
                "--role", "worker", env=clean_env(**base, TEST_LOG=str(tmp_path / "worker.log"))
            )
            wait_until(
                lambda: "job runner started" in worker.log() or worker.proc.poll() is not None,
                timeout=30,
                what="the worker to start",
            )
            assert worker.proc.poll() is None, worker.log()
            ready = wait_for_status(client, video_id, {"READY"}, timeout=120, headers=auth)
            assert ready["status"] == "READY"
            # The worker serves nothing: no listening socket, its --port is free.
            assert _listening_sockets(worker.proc.pid) == set()
            try:
                httpx.get(worker.url + "/healthz", timeout=2)
                answered = True
            except httpx.ConnectError:
                answered = False
            assert not answered
            # The worker also runs the periodic cleanup the web process left alone.
            assert run_sql(settings, cleanups)[0][0] >= 1
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=30) in (0, -signal.SIGTERM), worker.log()
        assert "job runner stopped" in worker.log()
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.stop()
        if web.proc.poll() is None:
            web.stop()
