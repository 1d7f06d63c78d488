"""Shared pieces of the HTTP benchmarks: a real ``vidbox serve`` process on a temporary data
folder, an account made with ``vidbox user create``, sign-in over the API or the login form,
the server's peak memory, percentiles and polling with a deadline.

The benchmarks import this as ``_common`` (Python puts a script's own folder on ``sys.path``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

EMAIL = "bench@example.org"
PASSWORD = "quiet lantern over 4711 hills"
VIDBOX = [sys.executable, "-m", "vidbox"]
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is truthy; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without VIDBOX_* settings, plus ``extra``: a benchmark must
    not pick up whatever the person running it has configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDBOX_")}
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **(extra or {})}


def read_status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmHWM (peak resident set) or VmRSS."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    if not match:
        raise LookupError(f"/proc/{pid}/status has no {field_name}")
    return int(match.group(1))


def cpu_seconds(pid: int) -> float:
    """CPU seconds another process has used so far (all its threads, not its children), to
    the nanosecond: /proc/<pid>/stat counts 10 ms ticks, too coarse for a 40 ms upload.

    Linux names a process's CPU clock ``(~pid << 3) | 2`` (MAKE_PROCESS_CPUCLOCK with
    CPUCLOCK_SCHED, what glibc's clock_getcpuclockid returns); Python has no wrapper for it.
    """
    return time.clock_gettime(((~pid) << 3) | 2)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 30 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class VidboxServer:
    """``python -m vidbox serve`` as a child process on a free loopback port."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-serve.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def start(self, *, timeout: float = 60, log_level: str = "info") -> VidboxServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *VIDBOX,
            "serve",
            *("--port", str(self.port), "--data-dir", str(self.data_dir)),
            *("--log-level", log_level),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO
            )

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"vidbox serve exited; its log:\n{self.log()[-3000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(answers, timeout=timeout, what="vidbox serve to answer /healthz")
        except BaseException:
            self.stop()
            raise
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def peak_rss_mb(self) -> float:
        """The server process's peak resident set so far (VmHWM), in MB (10^6 bytes).
        FFmpeg children are other processes and are not included."""
        return read_status_kib(self.pid, "VmHWM") * 1024 / 1e6

    def rss_mb(self) -> float:
        return read_status_kib(self.pid, "VmRSS") * 1024 / 1e6

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def __enter__(self) -> VidboxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RssSampler:
    """The highest VmRSS of a process seen while the block runs, read every ``interval``
    seconds. Unlike VmHWM it covers only this block, so a spike before it (start-up, a
    password hash at sign-in) does not hide what the block itself needs."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval = pid, interval
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.max_kib = max(self.max_kib, read_status_kib(self.pid, "VmRSS"))
            if self._stop.wait(self.interval):
                return

    @property
    def max_mb(self) -> float:
        return self.max_kib * 1024 / 1e6

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def create_user(data_dir: Path, env: Mapping[str, str], email: str = EMAIL) -> None:
    """``vidbox user create EMAIL --password-stdin`` on the data folder, as an admin would."""
    result = subprocess.run(
        [*VIDBOX, "user", "create", email, "--password-stdin", "--data-dir", str(data_dir)],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"vidbox user create failed: {result.stderr.strip()}")


def api_login(client: httpx.Client, email: str = EMAIL) -> dict[str, str]:
    """``POST /api/auth/login``; returns the ``Authorization`` header for the access token."""
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access']}"}


def csrf_from(html: str) -> str:
    match = re.search(r'name="_csrf" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    if not match:
        raise LookupError("the page has no CSRF token")
    return match.group(1)


def browser_login(client: httpx.Client, email: str = EMAIL) -> None:
    """Sign in through the login form like a browser; the client keeps the session cookie."""
    page = client.get("/login")
    response = client.post(
        "/login", data={"email": email, "password": PASSWORD, "_csrf": csrf_from(page.text)}
    )
    if response.status_code != 303:
        raise RuntimeError(f"sign-in form answered {response.status_code}: {response.text[:200]}")


def video_json(client: httpx.Client, video_id: str, headers: Mapping[str, str]) -> dict[str, Any]:
    response = client.get(f"/api/videos/{video_id}", headers=dict(headers))
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def wait_for_video(
    client: httpx.Client,
    video_id: str,
    headers: Mapping[str, str],
    *,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """Poll GET /api/videos/{id} until ``done(video)``; returns the video JSON."""
    found: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal found
        found = video_json(client, video_id, headers)
        return done(found)

    wait_until(reached, timeout=timeout, what=f"video {video_id} {what}")
    return found


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by the nearest-rank method: a value that was measured."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_ffmpeg(*args: str, timeout: float = 600) -> None:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(command, check=True, timeout=timeout)


def ensure_debian_tool(command: str, package: str) -> str | None:
    """The path of ``command``; when missing and running as root, ``apt-get install -y`` the
    Debian ``package`` first. None (after saying how to get it) when it cannot be had."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{command} is missing: apt-get install -y {package} ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", package]
        if subprocess.run(install, env=env, check=False, timeout=600).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
            subprocess.run(install, env=env, check=False, timeout=600)
        found = shutil.which(command)
    if not found:
        print(f"{command} is not installed; as root run: apt-get install -y {package}")
    return found


def load_note() -> str:
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    note = f"{cores} cores, load average {load:.2f} at start"
    if load > 0.5:
        note += " (other work is running: wall-clock figures are skewed)"
    return note
