"""The signed-in pages: dashboard and the player page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidbox import sharing, videos
from vidbox.web.auth import require_user
from vidbox.web.deps import public_base, services_of
from vidbox.web.render import render

PAGE_SIZE = 20

BLANK_VIDEO: dict[str, Any] = {
    "id": "",
    "title": "",
    "status": "UPLOADING",
    "progress": 0,
    "size_bytes": 0,
    "duration_seconds": None,
    "created_at": "",
    "thumbnail_url": None,
    "download_url": None,
    "error": None,
}


async def dashboard(request: Request) -> Response:
    user = await require_user(request)
    services = services_of(request)
    raw = request.query_params.get("page", "1")
    page = int(raw) if raw.isdigit() and 0 < int(raw) < 1_000_000 else 1
    items, total = await videos.list_videos(services, user, page=page, limit=PAGE_SIZE)
    uploads = services.settings.uploads
    context = {
        "videos": items,
        "total": total,
        "page": page,
        "total_pages": max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE),
        "blank": BLANK_VIDEO,
        "allowed_formats": uploads.allowed_formats,
        "max_bytes": uploads.max_bytes,
        "part_bytes": uploads.part_bytes,
    }
    return await render(request, "dashboard.html", context)


async def video_page(request: Request) -> Response:
    user = await require_user(request)
    services = services_of(request)
    video = await videos.video_details(services, user, request.path_params["video_id"])
    links = await sharing.links_for_video(services, user, video["id"], public_base(request))
    context = {"video": video, "links": links, "email_enabled": services.mailer.enabled}
    return await render(request, "video.html", context)


routes = [
    Route("/", dashboard, methods=["GET"]),
    Route("/videos/{video_id}", video_page, methods=["GET"]),
]
