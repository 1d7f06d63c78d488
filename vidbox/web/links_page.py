"""The signed-in pages of sharing: /links (every link of the user) and /notifications."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from vidbox import sharing
from vidbox.web.auth import require_user
from vidbox.web.deps import public_base, services_of
from vidbox.web.render import redirect, render


async def links_page(request: Request) -> Response:
    user = await require_user(request)
    services = services_of(request)
    wanted = request.query_params.get("status", "")
    status = wanted if wanted in sharing.STATUSES else None
    links = await sharing.list_links(services, user, base_url=public_base(request), status=status)
    context = {
        "links": links,
        "status": status or "",
        "statuses": sharing.STATUSES,
        "email_enabled": services.mailer.enabled,
    }
    return await render(request, "links.html", context)


async def notifications_page(request: Request) -> Response:
    user = await require_user(request)
    found = await sharing.list_notifications(services_of(request), user)
    context = {"notifications": found["items"], "unread": found["unread"]}
    return await render(request, "notifications.html", context)


async def mark_read(request: Request) -> Response:
    user = await require_user(request)  # a cookie session's POST is CSRF-checked in there
    await sharing.mark_all_read(services_of(request), user)
    return redirect("/notifications")


async def open_shared(request: Request) -> Response:
    """Where notifications lead: the share page of a link listing the signed-in user."""
    user = await require_user(request)
    path = await sharing.shared_path_for(services_of(request), user, request.path_params["link_id"])
    return RedirectResponse(path, status_code=303)


routes = [
    Route("/links", links_page, methods=["GET"]),
    Route("/notifications", notifications_page, methods=["GET"]),
    Route("/notifications/read", mark_read, methods=["POST"]),
    Route("/shared/{link_id}", open_shared, methods=["GET"]),
]
