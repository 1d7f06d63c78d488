"""What a crashed process of this data dir leaves behind, found and cleared on the next start.

- Its claims: every runner holds an exclusive ``flock`` on ``<data dir>/run/<runner id>.lock``
  while it lives. The kernel drops the lock when the process dies, however it dies, so a lock
  that can be taken belongs to a dead runner, and its running jobs are put back at once without
  counting the attempt (it was not the job's fault), instead of waiting out their lease. A PID
  alone could not tell: in a container the new server often has the old one's PID.
- Its FFmpeg processes: their PIDs (with the kernel's start time, so a reused PID is never
  mistaken for them) are in the job row. PR_SET_PDEATHSIG normally killed them already.
- Its work folders, ``<data dir>/tmp/<video>-<job>-<attempt>``: each holds a hard link to the
  whole upload, so one left behind keeps gigabytes alive. A folder is kept only while its
  exact attempt is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import case, update
from sqlmodel import col, select

from vidbox.db import Database
from vidbox.logs import log_fields
from vidbox.models import Job, JobState, utcnow

log = logging.getLogger("vidbox.jobs")

RUN_DIR = "run"
TMP_DIR = "tmp"
CRASHED_MESSAGE = "The server stopped while this job ran; it was started again."
_WORK_DIR = re.compile(r"^(?P<video>.+)-(?P<job>\d+)-(?P<attempt>\d+)$")


def work_dir_name(video_id: str, job_id: int, attempt: int) -> str:
    return f"{video_id}-{job_id}-{attempt}"


def runner_id_of(worker: str | None) -> str | None:
    """The runner part of a worker name ``host:pid:runner/lane0``."""
    if not worker:
        return None
    head = worker.split("/", 1)[0]
    runner_id = head.rsplit(":", 1)[-1]
    return runner_id if re.fullmatch(r"[0-9a-f]{8,32}", runner_id) else None


# -- the runner's life lock ------------------------------------------------------------------


class RunnerLock:
    """Held as long as the runner's process lives (see the module docstring)."""

    def __init__(self, data_dir: Path, runner_id: str) -> None:
        self.path = data_dir / RUN_DIR / f"{runner_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the lock
        self._fd = None


def _dead_lock(path: Path) -> int | None:
    """An open, locked descriptor of ``path`` when its runner is dead; None when it lives (or
    the file is gone: a runner of another data dir or host, left to its lease)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


# -- FFmpeg processes ----------------------------------------------------------------------


def process_tag(pid: int) -> str | None:
    """``pid:start time``; the start time (in clock ticks since boot) tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; the fields after it are plain.
    fields = stat.rsplit(")", 1)[-1].split()
    return f"{pid}:{fields[19]}" if len(fields) > 19 else None


def _is_ffmpeg(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"ffmpeg" in os.path.basename(argv0).lower()


def kill_leftover(tags: Iterable[str]) -> int:
    """SIGKILL the FFmpeg processes named by ``tags`` that still run; returns how many."""
    killed = 0
    for tag in tags:
        pid_text, _, _ = tag.partition(":")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if process_tag(pid) != tag or not _is_ffmpeg(pid):
            continue  # gone, or the PID now belongs to another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _tags(pids: str | None) -> list[str]:
    try:
        value = json.loads(pids or "[]")
    except ValueError:
        return []
    return [str(tag) for tag in value] if isinstance(value, list) else []


@dataclass
class ProcessRecorder:
    """Keeps the job row's ``pids`` equal to the FFmpeg processes its attempt runs."""

    db: Database
    job_id: int
    tags: dict[int, str] = field(default_factory=dict)

    async def spawned(self, pid: int) -> None:
        tag = await asyncio.to_thread(process_tag, pid)
        self.tags[pid] = tag or f"{pid}:?"
        await self._write()

    async def exited(self, pid: int) -> None:
        if self.tags.pop(pid, None) is not None:
            await self._write()

    async def _write(self) -> None:
        async with self.db.session() as session:
            await session.exec(
                update(Job)
                .where(col(Job.id) == self.job_id, col(Job.state) == JobState.RUNNING)
                .values(pids=json.dumps(sorted(self.tags.values())))
            )


# -- recovery on start ---------------------------------------------------------------------


async def recover_dead_runners(db: Database, data_dir: Path) -> int:
    """Put back the running jobs of dead runners of this data dir (attempt not counted) after
    killing their leftover FFmpeg; remove dead runners' lock files. Returns jobs put back."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Job.id, Job.worker, Job.pids).where(col(Job.state) == JobState.RUNNING)
            )
        ).all()
    run_dir = data_dir / RUN_DIR
    by_runner: dict[str, list[tuple[int, str, str | None]]] = {}
    for job_id, worker, pids in rows:
        runner_id = runner_id_of(worker)
        if runner_id is not None and job_id is not None and worker is not None:
            by_runner.setdefault(runner_id, []).append((job_id, worker, pids))
    names = {p.stem for p in run_dir.glob("*.lock")} if run_dir.is_dir() else set()
    recovered = 0
    for runner_id in sorted(names | set(by_runner)):
        lock_path = run_dir / f"{runner_id}.lock"
        fd = _dead_lock(lock_path)
        if fd is None:
            continue
        try:
            for job_id, worker, pids in by_runner.get(runner_id, []):
                killed = await asyncio.to_thread(kill_leftover, _tags(pids))
                if await _put_back(db, job_id, worker):
                    recovered += 1
                    log.info(
                        "job of a stopped server put back",
                        extra=log_fields(job_id=job_id, worker=worker, ffmpeg_killed=killed),
                    )
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        finally:
            os.close(fd)
    return recovered


async def _put_back(db: Database, job_id: int, worker: str) -> bool:
    now = utcnow()
    async with db.session() as session:
        result = await session.exec(
            update(Job)
            .where(
                col(Job.id) == job_id,
                col(Job.state) == JobState.RUNNING,
                col(Job.worker) == worker,
            )
            .values(
                state=JobState.QUEUED,
                # Not counted, unless the run before ended the same way: a job that brings
                # the server down every time must still end up dead, not loop forever.
                attempts=case(
                    (col(Job.last_error) == CRASHED_MESSAGE, col(Job.attempts)),
                    (col(Job.attempts) > 0, col(Job.attempts) - 1),
                    else_=0,
                ),
                run_at=now,
                lease_until=None,
                worker=None,
                pids=None,
                last_error=CRASHED_MESSAGE,
                updated_at=now,
            )
        )
        return bool(result.rowcount)


# -- work folders ----------------------------------------------------------------------------


async def sweep_work_dirs(db: Database, data_dir: Path, *, video_id: str | None = None) -> int:
    """Remove work folders (of ``video_id``, or all) whose attempt is not running now.

    The folders are listed before the database is asked: a job is claimed (committed as
    running) before it makes its folder, so a folder seen here whose attempt is running is
    always seen as running."""
    root = data_dir / TMP_DIR
    found = await asyncio.to_thread(_work_dirs, root, video_id)
    if not found:
        return 0
    job_ids = sorted({job_id for _, job_id, _ in found})
    running: set[tuple[int, int]] = set()
    async with db.read() as session:
        for start in range(0, len(job_ids), 500):
            rows = await session.exec(
                select(Job.id, Job.attempts).where(
                    col(Job.id).in_(job_ids[start : start + 500]),
                    col(Job.state) == JobState.RUNNING,
                )
            )
            running.update((job_id, attempts) for job_id, attempts in rows.all() if job_id)
    stale = [path for path, job_id, attempt in found if (job_id, attempt) not in running]
    for path in stale:
        await asyncio.to_thread(shutil.rmtree, path, True)
    if stale:
        log.info("removed work folders of stopped attempts", extra=log_fields(folders=len(stale)))
    return len(stale)


def is_work_dir(entry: Path) -> bool:
    return _WORK_DIR.match(entry.name) is not None and entry.is_dir() and not entry.is_symlink()


def _work_dirs(root: Path, video_id: str | None) -> list[tuple[Path, int, int]]:
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _WORK_DIR.match(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if video_id is not None and match.group("video") != video_id:
            continue
        found.append((entry, int(match.group("job")), int(match.group("attempt"))))
    return found
