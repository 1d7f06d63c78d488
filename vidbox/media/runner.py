"""Run the bundled FFmpeg as an asyncio subprocess: progress, bounded stderr, clean stops."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import cache

from vidbox.media.errors import MediaError, diagnose_failure
from vidbox.media.progress import ProgressTracker

__all__ = ["MediaError", "ProgressCallback", "ffmpeg_exe", "run_ffmpeg"]

logger = logging.getLogger("vidbox.media")

ProgressCallback = Callable[[float], Awaitable[None] | None]

STDERR_TAIL_LINES = 200
# A line longer than this is cut: FFmpeg never needs more to explain itself, and an endless
# line (binary garbage in metadata) must not grow memory.
MAX_LINE_BYTES = 4096
# How long FFmpeg gets to act on "q", then on SIGTERM, before the next, harder step.
STOP_GRACE_SECONDS = 3.0

_LINE_BREAK = re.compile(rb"[\r\n]")


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


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
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Own session: a Ctrl-C on the server's terminal reaches vidbox, which then stops
            # FFmpeg itself, instead of FFmpeg dying half-way through writing.
            start_new_session=True,
        )
    except OSError as exc:
        raise MediaError(f"FFmpeg cannot be started ({exc.strerror}).", permanent=False) from exc

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
