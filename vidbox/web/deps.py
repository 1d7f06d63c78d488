"""Small accessors route handlers share, so no handler digs through app.state itself."""

from __future__ import annotations

from starlette.requests import Request

from vidbox.mail import origin
from vidbox.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def public_base(request: Request) -> str:
    """The box's public URL: server.base_url when set, else the URL this request came to.
    For pages and API answers to this client only; mail uses ``mail_origin``."""
    base = services_of(request).settings.server.base_url
    return (base or str(request.base_url)).rstrip("/")


async def mail_origin(request: Request) -> str:
    """The origin for links that go out by mail: never taken from the request's headers
    (see vidbox.mail.origin); only the port of the socket it arrived on."""
    services = services_of(request)
    return await origin.mail_origin(services.settings, services.db, request.scope.get("server"))
