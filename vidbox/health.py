"""Readiness checks shared by ``/readyz`` and ``vidbox check``."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from vidbox.db import Database


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


async def _run(name: str, check: Callable[[], Awaitable[str]]) -> CheckResult:
    try:
        return CheckResult(name, True, await check())
    except Exception as exc:  # a check reports any failure as text, never raises
        return CheckResult(name, False, str(exc) or exc.__class__.__name__)


async def check_database(db: Database) -> str:
    # Pooled connections keep working on a deleted file, silently losing every write.
    if not db.postgres and not await asyncio.to_thread(db.path.is_file):
        raise RuntimeError(f"{db.path} is missing")
    try:
        await db.check_writable()
    except Exception as exc:
        # SQLAlchemy wraps the driver's error with a long help link; the driver's is enough.
        raise RuntimeError(f"{db.describe()}: {getattr(exc, 'orig', None) or exc}") from None
    return f"{db.describe()} writable"


def _probe_writable(folder: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=".vidbox-check-", dir=folder)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        os.unlink(name)


async def check_data_dir(folder: Path) -> str:
    try:
        await asyncio.to_thread(_probe_writable, folder)
    except OSError as exc:
        raise RuntimeError(f"{folder} is not writable: {exc.strerror or exc}") from None
    return f"{folder} writable"


class FFmpegCheck:
    """Runs the bundled ``ffmpeg -version``; a success is remembered for a minute so a busy
    health checker does not spawn a process per probe."""

    ttl = 60.0

    def __init__(self) -> None:
        self._ok_until = 0.0
        self._detail = ""

    async def __call__(self) -> str:
        if time.monotonic() < self._ok_until:
            return self._detail
        try:
            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError as exc:
            raise RuntimeError(f"bundled FFmpeg not found: {exc}") from None
        proc = await asyncio.create_subprocess_exec(
            exe,
            "-hide_banner",
            "-version",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{exe} did not answer within 10 s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} exited with status {proc.returncode}")
        first = out.decode(errors="replace").splitlines()[0] if out else "ffmpeg"
        self._detail = first.split(" Copyright")[0]
        self._ok_until = time.monotonic() + self.ttl
        return self._detail


async def run_checks(checks: dict[str, Callable[[], Awaitable[str]]]) -> list[CheckResult]:
    return list(await asyncio.gather(*(_run(name, fn) for name, fn in checks.items())))


class DataDirWatch:
    """Watches that the data folder and the database file are still the ones the server
    started with. Deleted (or replaced) while the server runs, the open database keeps
    taking writes into a file no one will ever see again: every upload, sign-in and share
    made afterwards is silently lost. ``on_lost`` is told once, with a sentence."""

    interval = 2.0

    def __init__(self, folder: Path, database: Path, on_lost: Callable[[str], None]) -> None:
        self.paths = (folder, database)
        self.on_lost = on_lost
        self.identity = [self._identity(path) for path in self.paths]

    @staticmethod
    def _identity(path: Path) -> tuple[int, int] | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return found.st_dev, found.st_ino

    def problem(self) -> str | None:
        for path, started in zip(self.paths, self.identity, strict=True):
            now = self._identity(path)
            if started is not None and now != started:
                return f"{path} is gone" if now is None else f"{path} was replaced"
        return None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            problem = await asyncio.to_thread(self.problem)
            if problem is not None:
                self.on_lost(problem)
                return
