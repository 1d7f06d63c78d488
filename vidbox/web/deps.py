"""Small accessors route handlers share, so no handler digs through app.state itself."""

from __future__ import annotations

from starlette.requests import Request

from vidbox.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def public_base(request: Request) -> str:
    """The box's public URL: server.base_url when set, else the URL this request came to."""
    base = services_of(request).settings.server.base_url
    return (base or str(request.base_url)).rstrip("/")
