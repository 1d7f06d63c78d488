"""HTTP routes. Handlers stay thin: parse the request, call the domain, render or answer JSON."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from vidbox.web import (
    account_pages,
    admin_pages,
    api_auth,
    api_videos,
    events,
    health,
    links_page,
    notifications,
    pages,
    settings_pages,
    share,
    site_files,
    uploads,
)


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", health.readyz, methods=["GET", "HEAD"]),
        *api_auth.routes,
        *uploads.routes,
        *api_videos.routes,
        Route("/api/events", events.user_events, methods=["GET"]),
        *pages.routes,
        *account_pages.routes,
        *settings_pages.routes,
        *admin_pages.routes,
        *share.routes,
        *links_page.routes,
        *notifications.routes,
        *site_files.routes,
        Mount("/static", StaticFiles(packages=[("vidbox", "static")]), name="static"),
    ]
