"""Server-Sent Events: live status and progress for open pages.

The database row is the truth (the job writes progress there), so a stream polls it and sends
what changed. That keeps working unchanged when several vidbox processes share one database,
which an in-process notifier would not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlmodel import and_, col, or_, select
from starlette.requests import Request
from starlette.responses import StreamingResponse

from vidbox.models import Video, VideoStatus
from vidbox.videos import renditions_of, video_json
from vidbox.web.auth import require_user
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


async def _stream(
    request: Request, video_ids: list[str] | None, owner_id: str
) -> AsyncIterator[bytes]:
    """Changes of the given videos, or (``video_ids`` None) of every video of the owner that
    is still uploading or processing; a video leaves that watch list once its final state has
    been sent."""
    db = services_of(request).db
    seen: dict[str, dict[str, Any]] = {}
    last_sent = time.monotonic()
    yield b"retry: 3000\n\n"
    while True:
        async with db.read() as session:
            query = select(Video).where(Video.owner_id == owner_id)
            if video_ids is not None:
                query = query.where(col(Video.id).in_(video_ids))
            else:
                query = query.where(
                    or_(
                        col(Video.status).in_([VideoStatus.UPLOADING, VideoStatus.PROCESSING]),
                        and_(Video.status == VideoStatus.READY, Video.progress < 100),
                        col(Video.id).in_(list(seen)),
                    )
                )
            rows = list((await session.exec(query)).all())
            renditions = await renditions_of(session, [v.id for v in rows])
        for video in rows:
            data = video_json(video, renditions[video.id])
            if seen.get(video.id) != data:
                seen[video.id] = data
                last_sent = time.monotonic()
                yield _sse("video", data)
        for gone in set(seen) - {v.id for v in rows}:
            del seen[gone]
            yield _sse("deleted", {"id": gone})
        if video_ids is not None:
            if all(_settled(v) for v in rows):
                yield _sse("end", {})
                return
        else:
            for video in rows:
                if _settled(video):
                    seen.pop(video.id, None)
        if time.monotonic() - last_sent > HEARTBEAT_SECONDS:
            last_sent = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


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
