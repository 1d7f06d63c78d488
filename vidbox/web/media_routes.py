"""Serving one video's media: thumbnail, original download, HLS playlists and segments.

Used by the owner's routes (/api/videos/{id}/...) and the share routes (/s/{token}/...): the
caller has already decided that the request may see ``video``. Rights travel in the path, never
in a query string, because relative URIs in a playlist drop the query (segments would leak or
break)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from vidbox.errors import NotFound
from vidbox.jobs.process_video import master_playlist_for
from vidbox.media.names import is_rendition_name
from vidbox.models import Video, VideoStatus
from vidbox.videos import hls_key, renditions_of
from vidbox.web.deps import services_of
from vidbox.web.serving import media_response

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# Matched whole (fullmatch): "$" also matches before a final line break, which let
# "index.m3u8\n" through to the storage layer and a 500.
_HLS_FILE = re.compile(r"index\.m3u8|init\.mp4|seg_\d{5,9}\.m4s")
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


async def thumbnail(request: Request, video: Video) -> Response:
    if not video.thumbnail_key:
        raise NotFound("This video has no thumbnail yet.")
    services = services_of(request)
    return await media_response(
        request,
        services.settings,
        services.storage,
        video.thumbnail_key,
        content_type="image/jpeg",
        cache=REVALIDATE,
    )


async def download(request: Request, video: Video) -> Response:
    if not video.original_key:
        raise NotFound("The original file is not stored yet.")
    services = services_of(request)
    return await media_response(
        request,
        services.settings,
        services.storage,
        video.original_key,
        content_type=video.content_type or "application/octet-stream",
        cache=REVALIDATE,
        download_name=video.filename or "video",
    )


async def master(request: Request, video: Video) -> Response:
    """Built from the rendition rows, so rungs finished after READY appear as they land."""
    if video.status != VideoStatus.READY:
        raise NotFound("This video is not ready to play yet.")
    async with services_of(request).db.read() as session:
        rows = (await renditions_of(session, [video.id]))[video.id]
    # Rows from before rendition names had one definition ("16000p") would be variants
    # that 404; the others still play.
    rows = [row for row in rows if is_rendition_name(row.name)]
    if not rows:
        raise NotFound("This video is not ready to play yet.")
    body = master_playlist_for(rows)
    headers = {"Cache-Control": REVALIDATE}
    if request.method == "HEAD":
        return Response(status_code=200, media_type=PLAYLIST_TYPE, headers=headers)
    return Response(body, media_type=PLAYLIST_TYPE, headers=headers)


async def hls_file(request: Request, video: Video, rendition: str, filename: str) -> Response:
    if not is_rendition_name(rendition) or not _HLS_FILE.fullmatch(filename):
        raise NotFound()
    services = services_of(request)
    playlist = filename.endswith(".m3u8")
    return await media_response(
        request,
        services.settings,
        services.storage,
        hls_key(video, f"{rendition}/{filename}"),
        content_type=PLAYLIST_TYPE if playlist else "video/mp4",
        cache=REVALIDATE if playlist else IMMUTABLE,
    )
