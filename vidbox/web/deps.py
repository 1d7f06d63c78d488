"""Small accessors route handlers share, so no handler digs through app.state itself."""

from __future__ import annotations

from starlette.requests import Request

from vidbox.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
