"""Run the bundled FFmpeg as an asyncio subprocess: progress, bounded stderr, clean stops.

Every FFmpeg is tied to the server's life: on Linux it gets SIGKILL the moment the process
that started it dies (PR_SET_PDEATHSIG), so a crashed or kill -9'd server leaves no encoder
burning CPU and disk behind. The job that runs it can cap its memory and learn its PID
(``ffmpeg_limits``), without every caller passing them down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import logging
import os
import re
import resource
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache

from vidbox.media.errors import MediaError, diagnose_failure
from vidbox.media.progress import ProgressTracker

__all__ = [
    "MediaError",
    "ProcessLimits",
    "ProgressCallback",
    "ffmpeg_exe",
    "ffmpeg_limits",
    "run_ffmpeg",
]

logger = logging.getLogger("vidbox.media")

ProgressCallback = Callable[[float], Awaitable[None] | None]

STDERR_TAIL_LINES = 200
# A line longer than this is cut: FFmpeg never needs more to explain itself, and an endless
# line (binary garbage in metadata) must not grow memory.
MAX_LINE_BYTES = 4096
# How long FFmpeg gets to act on "q", then on SIGTERM, before the next, harder step.
STOP_GRACE_SECONDS = 3.0

_LINE_BREAK = re.compile(rb"[\r\n]")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once, in the parent: the child between fork and exec should do as little as can be.
_PRCTL = _load_prctl()

SpawnHook = Callable[[int], Awaitable[None]]


# Measured: a 4K source into four x264 rungs peaks at 2.1 GB of address space with 4 threads
# per encoder, 3.3 GB with 16 and 6.3 GB with 48 (the default on 32 CPUs).
MEMORY_BASE_BYTES = 4 * 1024**3
MEMORY_PER_CPU_BYTES = 128 * 1024**2


def memory_limit(setting: int) -> int:
    """The address-space cap for FFmpeg: ``setting``, or when it is 0 one sized to the CPUs
    (x264 and the decoders start threads by the number of CPUs online)."""
    if setting > 0:
        return setting
    return MEMORY_BASE_BYTES + MEMORY_PER_CPU_BYTES * (os.cpu_count() or 1)


@dataclass(frozen=True)
class ProcessLimits:
    """What the running job asks of each FFmpeg it starts."""

    memory_bytes: int = 0  # address-space cap (RLIMIT_AS); 0: none
    on_spawn: SpawnHook | None = None  # called with the PID once it runs
    on_exit: SpawnHook | None = None  # called with the PID once it is reaped


_NO_LIMITS = ProcessLimits()
_LIMITS: ContextVar[ProcessLimits | None] = ContextVar("ffmpeg_limits", default=None)


@contextlib.contextmanager
def ffmpeg_limits(limits: ProcessLimits) -> Iterator[None]:
    """Apply ``limits`` to every FFmpeg started in this context (and tasks created in it)."""
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


def _child_setup(parent_pid: int, memory_bytes: int) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec, where another thread's lock may be held
        # forever: no imports, no logging, nothing but the two system calls.
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before the line above
                os._exit(1)
        if memory_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    return setup


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def run_ffmpeg(
    args: Sequence[str],
    *,
    duration: float | None = None,
    on_progress: ProgressCallback | None = None,
    # A limit that ends in a MediaError (retryable) rather than a bare TimeoutError.
    timeout: float | None = None,  # noqa: ASYNC109
    stderr_lines: int = STDERR_TAIL_LINES,
) -> str:
    """Run ``ffmpeg ARGS`` and return the last ``stderr_lines`` lines of its stderr.

    ``on_progress`` receives the percent done (0-100, increasing) and is only called when
    ``duration`` is known and ``args`` ask for ``-progress pipe:1``. It may be a coroutine
    function. Raises MediaError when FFmpeg fails or runs past ``timeout`` seconds. On
    cancellation FFmpeg is stopped (``q``, then SIGTERM, then SIGKILL), reaped, and the
    CancelledError propagates.
    """
    try:
        command = [ffmpeg_exe(), *args]
    except RuntimeError as exc:  # imageio-ffmpeg found no binary for this platform
        raise MediaError("FFmpeg is missing on this server.", permanent=False) from exc
    limits = _LIMITS.get() or _NO_LIMITS
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Own session: a Ctrl-C on the server's terminal reaches vidbox, which then stops
            # FFmpeg itself, instead of FFmpeg dying half-way through writing.
            start_new_session=True,
            preexec_fn=_child_setup(os.getpid(), limits.memory_bytes),
        )
    except OSError as exc:
        raise MediaError(f"FFmpeg cannot be started ({exc.strerror}).", permanent=False) from exc
    try:
        return await _supervise(
            process, command, limits, duration, on_progress, timeout, stderr_lines
        )
    finally:
        if limits.on_exit is not None and process.returncode is not None:
            with contextlib.suppress(Exception):
                await limits.on_exit(process.pid)


async def _supervise(
    process: asyncio.subprocess.Process,
    command: list[str],
    limits: ProcessLimits,
    duration: float | None,
    on_progress: ProgressCallback | None,
    timeout: float | None,  # noqa: ASYNC109
    stderr_lines: int,
) -> str:
    tail: deque[str] = deque(maxlen=stderr_lines)
    tracker = ProgressTracker(duration)

    async def report(line: str) -> None:
        if not tracker.feed(line) or on_progress is None or tracker.percent is None:
            return
        result = on_progress(tracker.percent)
        if inspect.isawaitable(result):
            await result

    assert process.stdout is not None and process.stderr is not None
    readers = [
        asyncio.ensure_future(_pump_lines(process.stdout, report)),
        asyncio.ensure_future(_pump_lines(process.stderr, _appender(tail))),
    ]
    try:
        async with asyncio.timeout(timeout):
            if limits.on_spawn is not None:
                await limits.on_spawn(process.pid)
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # re-raises an exception from the progress callback
            returncode = await process.wait()
    except TimeoutError:
        await _stop(process)
        _log_failure(command, tail, "timed out")
        raise MediaError(
            f"Processing took longer than {_duration_words(timeout or 0)} and was stopped.",
            permanent=False,
        ) from None
    except BaseException:
        await _stop(process)
        raise
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        _close_stdin(process)

    stderr = "\n".join(tail)
    if returncode != 0:
        diagnosis = diagnose_failure(stderr, tracker.seconds_done, returncode)
        _log_failure(command, tail, f"exit status {returncode}: {diagnosis.reason}")
        raise MediaError(diagnosis.reason, permanent=diagnosis.permanent)
    return stderr


def _duration_words(seconds: float) -> str:
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute" + ("" if minutes == 1 else "s")
    return f"{seconds:g} second" + ("" if seconds == 1 else "s")


def _appender(tail: deque[str]) -> Callable[[str], Awaitable[None]]:
    async def append(line: str) -> None:
        tail.append(line)

    return append


async def _pump_lines(stream: asyncio.StreamReader, sink: Callable[[str], Awaitable[None]]) -> None:
    """Feed ``sink`` every non-empty line of ``stream`` until EOF, in bounded memory."""
    pending = b""
    while chunk := await stream.read(65536):
        *lines, pending = _LINE_BREAK.split(pending + chunk)
        if len(pending) > MAX_LINE_BYTES:
            lines.append(pending)
            pending = b""
        for line in lines:
            if line.strip():
                await sink(line[:MAX_LINE_BYTES].decode("utf-8", "replace"))
    if pending.strip():
        await sink(pending[:MAX_LINE_BYTES].decode("utf-8", "replace"))


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ask FFmpeg to finish, then insist; always reap it."""
    try:
        if process.returncode is None and process.stdin is not None:
            # "q" makes FFmpeg close its outputs properly, like a user pressing q.
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.write(b"q")
                await process.stdin.drain()
        for escalate in (process.terminate, process.kill):
            if await _exited_within(process, STOP_GRACE_SECONDS):
                return
            with contextlib.suppress(ProcessLookupError):
                escalate()
        await process.wait()
    finally:
        # Reached with the process still running only if this coroutine is itself cancelled.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()


async def _exited_within(process: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), seconds)
    except TimeoutError:
        return False
    return True


def _close_stdin(process: asyncio.subprocess.Process) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            process.stdin.close()


def _log_failure(command: list[str], tail: deque[str], what: str) -> None:
    logger.warning(
        "FFmpeg %s\ncommand: %s\nstderr (last %d lines):\n%s",
        what,
        " ".join(command),
        len(tail),
        "\n".join(tail),
    )
