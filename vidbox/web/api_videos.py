"""The videos API: list, details, rename, delete, and the owner's media routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidbox import videos
from vidbox.errors import ValidationFailed
from vidbox.models import Video
from vidbox.web import media_routes
from vidbox.web.auth import require_user
from vidbox.web.deps import services_of
from vidbox.web.events import video_events
from vidbox.web.inputs import json_body, text
from vidbox.web.uploads import create_one_shot

MAX_LIMIT = 100


def _page_args(request: Request) -> tuple[int, int]:
    def number(name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name, str(default))
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValidationFailed.field(
                name, f"{name} must be a whole number from {low} to {high}."
            )
        return int(raw)

    return number("page", 1, 1, 1_000_000), number("limit", 20, 1, MAX_LIMIT)


async def collection(request: Request) -> Response:
    if request.method == "POST":
        return await create_one_shot(request)
    user = await require_user(request)
    page, limit = _page_args(request)
    items, total = await videos.list_videos(services_of(request), user, page=page, limit=limit)
    return JSONResponse(
        {
            "items": items,
            "meta": {
                "page": page,
                "limit": limit,
                "total": total,
                "totalPages": (total + limit - 1) // limit,
            },
        }
    )


async def item(request: Request) -> Response:
    services = services_of(request)
    user = await require_user(request)
    video_id = request.path_params["video_id"]
    if request.method == "PATCH":
        body = await json_body(request)
        return JSONResponse(await videos.rename(services, user, video_id, text(body, "title")))
    if request.method == "DELETE":
        await videos.delete_video(services, user, video_id)
        return Response(status_code=204)
    return JSONResponse(await videos.video_details(services, user, video_id))


async def _owned(request: Request) -> Video:
    user = await require_user(request)
    async with services_of(request).db.read() as session:
        return await videos.get_owned(session, user, request.path_params["video_id"])


async def _owned_media(request: Request) -> Video:
    user = await require_user(request)
    return await videos.owned_for_media(services_of(request), user, request.path_params["video_id"])


async def thumbnail(request: Request) -> Response:
    return await media_routes.thumbnail(request, await _owned(request))


async def download(request: Request) -> Response:
    return await media_routes.download(request, await _owned(request))


async def master(request: Request) -> Response:
    return await media_routes.master(request, await _owned(request))


async def hls_file(request: Request) -> Response:
    video = await _owned_media(request)
    params = request.path_params
    return await media_routes.hls_file(request, video, params["rendition"], params["filename"])


async def events(request: Request) -> Response:
    return await video_events(request, await _owned(request))


routes = [
    Route("/api/videos", collection, methods=["GET", "POST"]),
    Route("/api/videos/{video_id}", item, methods=["GET", "PATCH", "DELETE"]),
    Route("/api/videos/{video_id}/thumbnail.jpg", thumbnail, methods=["GET", "HEAD"]),
    Route("/api/videos/{video_id}/download", download, methods=["GET", "HEAD"]),
    Route("/api/videos/{video_id}/hls/master.m3u8", master, methods=["GET", "HEAD"]),
    Route("/api/videos/{video_id}/hls/{rendition}/{filename}", hls_file, methods=["GET", "HEAD"]),
    Route("/api/videos/{video_id}/events", events, methods=["GET"]),
]
