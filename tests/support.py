"""Test helpers: the real app over real HTTP on a free port, polling with a deadline."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette

from vidbox.app import create_app
from vidbox.config import Settings
from vidbox.http.server import Server, uvicorn_config

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@dataclass
class LiveServer:
    app: Starlette
    settings: Settings
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(
    settings: Settings, app: Starlette | None = None, **server_options: Any
) -> LiveServer:
    """uvicorn configured as `vidbox serve` configures it (``server_options`` override),
    serving create_app(settings) on a free loopback port, in a thread."""
    app = app or create_app(settings)
    port = free_port()
    config = uvicorn_config(
        app, settings, host="127.0.0.1", port=port, lifespan="on", **server_options
    )
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
    if not server.started:
        raise RuntimeError("server did not start")
    return LiveServer(app, settings, f"http://127.0.0.1:{port}", server, thread)


PASSWORD = "correct horse battery"


def logged_setup_token(records: Iterable[logging.LogRecord]) -> str:
    """The token of the one-time setup link an empty box logs at start, read from the log as
    the person at the console reads it (``caplog.records``, or ``caplog.get_records("setup")``
    for a server started by a fixture)."""
    for record in records:
        url = str(getattr(record, "fields", {}).get("url", ""))
        if "/setup?token=" in url:
            return url.rpartition("token=")[2]
    raise AssertionError("the server logged no setup link")


def add_user(
    settings: Settings, email: str, *, admin: bool = False, name: str = "", password: str = PASSWORD
) -> str:
    """Create an account straight in the database (as `vidbox user create` does); returns id."""

    from vidbox.auth.users import create_user
    from vidbox.services import open_services

    async def go() -> str:
        async with open_services(settings) as services, services.db.session() as session:
            user = await create_user(
                session,
                email=email,
                password=password,
                name=name,
                is_admin=admin,
                email_verified=True,
            )
            return user.id

    return run_async(go())


def run_async(coroutine: Coroutine[object, object, T]) -> T:
    """Run a coroutine to completion from test code, even where an event loop is already
    running in this thread (Playwright's sync API keeps one)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def api_login(client: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="_csrf" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def browser_login(client: httpx.Client, email: str, password: str = PASSWORD) -> str:
    """Sign in through the login form like a browser; returns a CSRF token for later posts."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "_csrf": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/settings").text)


def make_test_clip(
    path: Path, *, size: str = "320x240", seconds: int = 2, lossless: bool = False
) -> Path:
    """A tiny H.264/AAC MP4 with a keyframe every second, made by the bundled FFmpeg.
    ``lossless`` makes it about 0.5 MB a second, for tests that need several megabytes."""
    import subprocess

    import imageio_ffmpeg

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
        *(["-qp", "0"] if lossless else []),
        "-c:a", "aac", "-shortest", str(path),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, check=True, timeout=120)
    return path


def wait_for_status(
    client: httpx.Client, video_id: str, statuses: set[str], *, timeout: float = 60, **kw: object
) -> dict[str, object]:
    """Poll the video until its status is one of ``statuses`` (and, for READY, processing is
    finished); returns the video JSON."""
    found: dict[str, object] = {}

    def reached() -> bool:
        nonlocal found
        found = client.get(f"/api/videos/{video_id}", **kw).json()  # type: ignore[arg-type]
        if found.get("status") == "READY" and "READY" in statuses:
            return found.get("progress") == 100
        return found.get("status") in statuses

    wait_until(reached, timeout=timeout, what=f"video {video_id} to reach {statuses}")
    return found


VIDBOX = [sys.executable, "-m", "vidbox"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without VIDBOX_ settings, plus ``extra``; a box given by
    VIDBOX_DATA_DIR gets its database and storage (on PostgreSQL and S3 runs, see
    tests.postgres)."""
    from tests.postgres import box_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDBOX_")}
    if "VIDBOX_DATA_DIR" in extra and "VIDBOX_DATABASE__URL" not in extra:
        env |= box_env(Path(extra["VIDBOX_DATA_DIR"]), extra)
    return {**env, **extra}


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIDBOX, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or clean_env(),
        input=stdin,
        check=False,
    )


class Serve:
    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(env["TEST_LOG"])
        self.proc = subprocess.Popen(
            [*VIDBOX, "serve", "--port", str(self.port), *args],
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, self.log()
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30, what="vidbox serve to answer")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=30)


S3_ACCESS_KEY = "vidbox-test-access"
S3_SECRET_KEY = "vidbox-test-secret-do-not-print"


def s3_environ(endpoint: str, bucket: str | None = None) -> dict[str, str]:
    return {
        "VIDBOX_STORAGE__BACKEND": "s3",
        "VIDBOX_STORAGE__ENDPOINT": endpoint,
        "VIDBOX_STORAGE__BUCKET": bucket or f"vidbox-test-{uuid.uuid4().hex[:12]}",
        "VIDBOX_STORAGE__ACCESS_KEY": S3_ACCESS_KEY,
        "VIDBOX_STORAGE__SECRET_KEY": S3_SECRET_KEY,
        "VIDBOX_STORAGE__SECURE": "false",
    }


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """``path`` on a tmpfs of ``size`` (e.g. "2m") of its own, for tests that fill a disk.
    Mounting needs root: elsewhere the test is skipped."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(path: Path) -> None:
    """Write ``path`` until its file system is full; removing it frees the space."""
    # Unbuffered: a write the disk took only part of left its rest in the buffer, and closing
    # the file raised ENOSPC again when the free space did not end on a 64 KiB boundary.
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * 65536)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return
                raise
