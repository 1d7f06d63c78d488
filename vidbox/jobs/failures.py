"""How processing failures reach the video's owner: one sentence on the video row, never a
server path, and "waiting for disk space" while the disk is full."""

from __future__ import annotations

import errno
import re

from sqlmodel import select

from vidbox.db import Database
from vidbox.jobs import JobContext
from vidbox.models import Rendition, Video, VideoStatus

MAX_ERROR_CHARS = 400
WAITING_FOR_DISK = (
    "Waiting for disk space: the server's disk is full. Processing goes on by itself once "
    "space is freed."
)
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded", "the disk is full")
# An absolute path, quoted or not, optionally behind FFmpeg's "file:" (not the path part of a
# URL: a word character, ":" or "/" before the slash rules that out).
_PATH = re.compile(
    r"""'(?:file:)?/[^']*'|"(?:file:)?/[^"]*"|(?:\bfile:|(?<![\w:/.]))/[^\s'",;)]+"""
)


def scrub_paths(text: str) -> str:
    """``text`` with server paths replaced by "a file on the server"."""
    return _PATH.sub("a file on the server", text)


def is_disk_full(exc: BaseException) -> bool:
    """Out of space anywhere in ``exc``'s chain (storage layers re-raise OSErrors as their own
    errors, keeping the original as context)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if any(word in str(current).lower() for word in _DISK_FULL_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


def what_plays(rungs: list[Rendition]) -> str:
    """What a READY video whose processing stopped early still offers, in a sentence."""
    if not rungs or all(r.copied for r in rungs):
        return "Only the original quality is available."
    names = [r.name for r in sorted(rungs, key=lambda r: r.height)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Only {listed} {'is' if len(names) == 1 else 'are'} available."


async def record_failure(db: Database, video_id: str, reason: str) -> None:
    """FAILED with the sentence, unless the video already plays from its copied rung: then it
    stays READY at its own quality and the sentence says what is missing."""
    async with db.session() as session:
        video = await session.get(Video, video_id)
        if video is None:
            return
        reason = scrub_paths(reason)
        if video.status == VideoStatus.READY:
            rungs = await session.exec(select(Rendition).where(Rendition.video_id == video_id))
            video.progress = 100
            video.error = f"{what_plays(list(rungs))} {reason}"
        else:
            video.status, video.error = VideoStatus.FAILED, reason
        session.add(video)


async def on_gave_up(ctx: JobContext, message: str) -> None:
    """The runner stopped retrying: say why on the video."""
    video_id = str(ctx.payload.get("video_id", ""))
    async with ctx.services.db.read() as session:
        video = await session.get(Video, video_id)
    if video is None or (video.status == VideoStatus.FAILED and video.error):
        return  # gone, or a permanent failure whose sentence the job already wrote
    if video.status == VideoStatus.READY and video.error and video.error != WAITING_FOR_DISK:
        return
    await record_failure(ctx.services.db, video_id, gave_up_sentence(message))


async def show_waiting_for_disk(db: Database, video_id: str) -> None:
    """Say on the video why nothing moves; the status stays what it was."""
    async with db.session() as session:
        video = await session.get(Video, video_id)
        if video is None or video.error == WAITING_FOR_DISK:
            return
        video.error = WAITING_FOR_DISK
        session.add(video)


def gave_up_sentence(message: str) -> str:
    """The FAILED sentence for retries used up: the last error's first line only, so an FFmpeg
    log that slipped into an error message never reaches the page."""
    lines = scrub_paths(message).strip().splitlines()
    reason = " ".join(lines[0].split()) if lines else ""
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[: MAX_ERROR_CHARS - 1].rstrip() + "…"
    return f"Processing kept failing: {reason}" if reason else "Processing kept failing."
