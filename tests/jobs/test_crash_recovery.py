"""A `vidbox serve` killed with SIGKILL mid-encode: what it leaves behind, and the next start.

Real processes throughout: the server is a subprocess, the encode is the bundled FFmpeg on a
30 s 720p clip made slow (veryslow, three rungs) so it is still running when the server dies.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.postgres import run_sql, settings_for
from tests.support import (
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    make_test_clip,
    start_server,
    wait_until,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

EMAIL = "crash@example.org"
SLOW = {
    "VIDBOX_PROCESSING__PRESET": "veryslow",
    "VIDBOX_PROCESSING__RENDITIONS": "240p,360p,480p,720p",
}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("long") / "long.mp4", size="1280x720", seconds=30)


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def encoders_of(parent: int) -> list[int]:
    """PIDs of the x264 FFmpeg processes ``parent`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or fields[1] != str(parent):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ffmpeg" in os.path.basename(argv[0]) and b"libx264" in argv:
            found.append(int(entry.name))
    return found


@dataclass
class Crash:
    data_dir: Path
    env: dict[str, str]
    video_id: str
    encoders: list[int]
    servers: list[Serve] = field(default_factory=list)

    def serve(self, log_name: str) -> Serve:
        server = Serve(env={**self.env, "TEST_LOG": str(self.data_dir.parent / log_name)})
        self.servers.append(server)
        server.wait_ready()
        return server

    def token(self, server: Serve) -> str:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            return api_login(client, EMAIL)["access"]

    def job(self) -> tuple[str, int, str | None]:
        [row] = run_sql(
            settings_for(data_dir=self.data_dir, environ={}),
            "SELECT state, attempts, worker FROM jobs WHERE kind = 'process_video'",
        )
        return row[0], row[1], row[2]


@pytest.fixture
def crash(tmp_path: Path, long_clip: Path) -> Iterator[Crash]:
    """Start `vidbox serve`, upload the long clip, SIGKILL the server once x264 runs."""
    data_dir = tmp_path / "data"
    add_user(settings_for(data_dir=data_dir, environ={}), EMAIL)
    env = clean_env(VIDBOX_DATA_DIR=str(data_dir), **SLOW)
    state = Crash(data_dir, env, "", [])
    try:
        first = state.serve("first.log")
        with httpx.Client(base_url=first.url, timeout=60) as client:
            response = client.post(
                "/api/videos",
                headers=bearer(state.token(first)),
                files={"file": ("long.mp4", long_clip.read_bytes(), "video/mp4")},
            )
            assert response.status_code == 201, response.text
            state.video_id = response.json()["id"]
        wait_until(lambda: encoders_of(first.proc.pid), timeout=60, what="x264 to run")
        state.encoders = encoders_of(first.proc.pid)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
        yield state
    finally:
        for server in state.servers:
            if server.proc.poll() is None:
                server.stop()
        # Encoders that outlived their server are this test's to end.
        for pid in state.encoders:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ffmpeg_dies_with_a_killed_server(crash: Crash) -> None:
    assert crash.encoders
    wait_until(
        lambda: not any(alive(pid) for pid in crash.encoders),
        timeout=5,
        what="FFmpeg to stop with its server",
    )


def test_restart_takes_the_crashed_job_back_at_once(crash: Crash) -> None:
    state, attempts, _ = crash.job()
    assert (state, attempts) == ("running", 1)  # the dead server's claim, lease still valid
    second = crash.serve("second.log")
    # The 60 s lease is not waited out, and the attempt the crash cut short is not counted.
    wait_until(
        lambda: f":{second.proc.pid}:" in (crash.job()[2] or ""),
        timeout=30,
        what="the new server to run the job",
    )
    assert crash.job()[:2] == ("running", 1)


def test_deleting_a_video_removes_folders_of_crashed_attempts(crash: Crash) -> None:
    tmp = crash.data_dir / "tmp"
    assert [p.name for p in tmp.iterdir() if p.name.startswith(crash.video_id)]
    second = crash.serve("second.log")
    with httpx.Client(base_url=second.url, timeout=60) as client:
        headers = bearer(crash.token(second))
        assert client.delete(f"/api/videos/{crash.video_id}", headers=headers).status_code == 204
    assert [p.name for p in tmp.iterdir() if p.name.startswith(crash.video_id)] == []


def test_start_removes_folders_of_attempts_not_running(tmp_path: Path) -> None:
    settings = settings_for(data_dir=tmp_path / "data", environ={})
    tmp = settings.data_dir / "tmp"
    # What a dead attempt leaves: its folder, with a second name for a whole upload.
    upload = tmp_path / "upload.mp4"
    upload.write_bytes(b"\0" * 1024 * 1024)
    leftover = tmp / "0123abcd-7-3"
    leftover.mkdir(parents=True)
    os.link(upload, leftover / "source.mp4")
    unrelated = tmp / "someone-elses-file"
    unrelated.write_text("not a work folder")
    live = start_server(settings)
    try:
        assert not leftover.exists()
        assert upload.stat().st_nlink == 1
        assert unrelated.exists()  # left to the daily sweep
    finally:
        live.stop()
