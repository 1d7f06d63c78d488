"""Server-Sent Events: live status and progress for open pages.

The database row is the truth (the job writes progress there), so a stream polls it and sends
what changed. That keeps working unchanged when several vidbox processes share one database,
which an in-process notifier would not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from vidbox.http.server import SERVER_STOPPING
from vidbox.models import Video, VideoStatus, utcnow
from vidbox.sharing import unread_count
from vidbox.videos import videos_changed
from vidbox.web.auth import require_user, still_signed_in
from vidbox.web.deps import services_of

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _settled(video: Video) -> bool:
    return video.status == VideoStatus.FAILED or (
        video.status == VideoStatus.READY and video.progress >= 100
    )


def _server_stopping(request: Request) -> asyncio.Event | None:
    extension = request.scope.get("extensions", {}).get(SERVER_STOPPING)
    return extension["event"] if extension else None


async def _stopping_within(seconds: float, stopping: asyncio.Event | None) -> bool:
    """Wait ``seconds``; True as soon as the server begins to shut down."""
    if stopping is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _stream(
    request: Request, video_ids: list[str] | None, owner_id: str
) -> AsyncIterator[bytes]:
    """``_changes`` for as long as the request's sign-in lasts: checked before anything is
    sent and every ``auth.stream_recheck_seconds`` in between, so a page left open after a
    logout, a password change or a revoked token stops hearing anything (its EventSource
    then gets a 401 when it reconnects, and stops)."""
    recheck = services_of(request).settings.auth.stream_recheck_seconds
    checked = time.monotonic()
    async with aclosing(_changes(request, video_ids, owner_id)) as changes:
        async for chunk in changes:
            due = time.monotonic() - checked >= recheck
            if (chunk or due) and not await still_signed_in(request):
                return
            if due:
                checked = time.monotonic()
            if chunk:
                yield chunk


# What ``_changes`` yields after a poll with nothing to send, so its caller can run its
# periodic checks without a timer of its own.
_IDLE = b""


async def _changes(
    request: Request, video_ids: list[str] | None, owner_id: str
) -> AsyncGenerator[bytes, None]:
    """Changes of the given videos, or (``video_ids`` None) of every video of the owner that
    changed since the last look or is still being worked on, plus the unread notification
    count. Rows carry ``updated_at``, so a video that goes from upload to ready between two
    polls is still seen.

    When the server shuts down the stream ends, and the browser's EventSource reconnects
    (``retry``) once vidbox is back."""
    db = services_of(request).db
    stopping = _server_stopping(request)
    seen: dict[str, dict[str, Any]] = {}
    watching: set[str] = set()  # videos still changing: if one vanishes, it was deleted
    unread: int | None = None
    since = utcnow() - timedelta(seconds=5)
    last_sent = time.monotonic()
    yield b"retry: 3000\n\n"
    while True:
        started = utcnow()
        rows = await videos_changed(
            db, owner_id, video_ids=video_ids, since=since, watching=watching
        )
        # Overlap the windows a little: a duplicate is filtered below, a gap would lose one.
        since = started - timedelta(seconds=1)
        for video, data in rows:
            if seen.get(video.id) != data:
                seen[video.id] = data
                last_sent = time.monotonic()
                yield _sse("video", data)
        returned = {v.id for v, _ in rows}
        vanished = (set(seen) if video_ids is not None else watching) - returned
        for gone in vanished:
            seen.pop(gone, None)
            yield _sse("deleted", {"id": gone})
        watching = {v.id for v, _ in rows if not _settled(v)}
        if video_ids is not None and not watching:
            yield _sse("end", {})
            return
        if video_ids is None:
            count = await unread_count(db, owner_id)
            if count != unread:
                unread = count
                yield _sse("notifications", {"unread": count})
        if time.monotonic() - last_sent > HEARTBEAT_SECONDS:
            last_sent = time.monotonic()
            yield b": keep-alive\n\n"
        yield _IDLE
        if await _stopping_within(POLL_SECONDS, stopping):
            return


async def video_events(request: Request, video: Video) -> StreamingResponse:
    return StreamingResponse(
        _stream(request, [video.id], video.owner_id),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def user_events(request: Request) -> StreamingResponse:
    """One stream per page for everything of the signed-in user that is still changing."""
    user = await require_user(request)
    return StreamingResponse(
        _stream(request, None, user.id), media_type="text/event-stream", headers=SSE_HEADERS
    )
