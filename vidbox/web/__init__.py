"""HTTP routes. Handlers stay thin: parse the request, call the domain, render or answer JSON."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from vidbox.web import account_pages, admin_pages, api_auth, health, settings_pages


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", health.healthz, methods=["GET", "HEAD"]),
        Route("/readyz", health.readyz, methods=["GET", "HEAD"]),
        *api_auth.routes,
        *account_pages.routes,
        *settings_pages.routes,
        *admin_pages.routes,
        Mount("/static", StaticFiles(packages=[("vidbox", "static")]), name="static"),
    ]
