"""The notifications API: the newest notifications with the unread count, and marking read."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidbox import sharing
from vidbox.web.auth import require_user
from vidbox.web.deps import services_of


async def list_notifications(request: Request) -> Response:
    user = await require_user(request)
    return JSONResponse(await sharing.list_notifications(services_of(request), user))


async def mark_all_read(request: Request) -> Response:
    user = await require_user(request)
    marked = await sharing.mark_all_read(services_of(request), user)
    return JSONResponse({"marked": marked, "unread": 0})


routes = [
    Route("/api/notifications", list_notifications, methods=["GET"]),
    Route("/api/notifications/read", mark_all_read, methods=["POST"]),
]
