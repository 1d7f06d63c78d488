"""Where the links in mail point: an origin the box trusts, never a request header.

A request's Host header is whatever the client wrote. Building mailed links from it let anyone
make the box send a real person a real one-time sign-in link on the sender's own host
(``Host: evil.example``). So mail links come, in order, from:

1. ``server.base_url``, when set: the admin said what the box's URL is;
2. when the box listens on one address and no reverse proxy is in front, that address: the
   host it was started on and the port of the socket the request came in on (taken from the
   socket, not from a header);
3. when it listens on every address (0.0.0.0, ::) or sits behind a trusted proxy, the origin
   the admin's browser used to complete /setup (only the person at the console has the setup
   token, so that Host header is the admin's own), kept in ``box_meta``;
4. failing that, this machine's host name and the configured port.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from vidbox.config import Settings
from vidbox.db import Database
from vidbox.models import BoxMeta, utcnow

SETUP_ORIGIN = "setup_origin"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104  (naming the wildcard, not binding it)
# A host name, IPv4 or bracketed IPv6 address, and an optional port; nothing else (no user
# info, path or spaces) can get into a stored origin.
_NETLOC = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")


def host_origin(host: str, port: int, scheme: str = "http") -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def clean_origin(scheme: str, netloc: str) -> str | None:
    """``scheme://netloc`` when both are well formed, else None."""
    if scheme not in ("http", "https") or not _NETLOC.match(netloc):
        return None
    return f"{scheme}://{netloc.lower()}"


def needs_stored_origin(settings: Settings) -> bool:
    """True when the listening address is not what people type: a wildcard, or a proxy."""
    server = settings.server
    return server.host in WILDCARD_HOSTS or bool(server.trusted_proxies)


async def stored_origin(db: Database) -> str | None:
    async with db.read() as session:
        row = await session.get(BoxMeta, SETUP_ORIGIN)
    return row.value if row is not None and row.value else None


async def remember_setup_origin(session: AsyncSession, origin: str) -> None:
    """Keep the origin /setup was completed on (inside the setup's own transaction)."""
    row = await session.get(BoxMeta, SETUP_ORIGIN)
    if row is None:
        row = BoxMeta(key=SETUP_ORIGIN)
    row.value, row.updated_at = origin, utcnow()
    session.add(row)


def resolve_origin(
    settings: Settings, stored: str | None, listening: Sequence[object] | None = None
) -> str:
    """The origin for mailed links. ``listening``: the (host, port) of the socket a request
    came in on (ASGI's ``scope["server"]``), when there is a request."""
    server = settings.server
    if server.base_url:
        return server.base_url.rstrip("/")
    port = server.port
    if listening and len(listening) == 2 and isinstance(listening[1], int):
        port = listening[1]
    if not needs_stored_origin(settings):
        return host_origin(server.host, port)
    if stored:
        return stored
    if listening and isinstance(listening[0], str) and listening[0] not in WILDCARD_HOSTS:
        return host_origin(listening[0], port)
    return host_origin(socket.gethostname(), port)


async def mail_origin(
    settings: Settings, db: Database, listening: Sequence[object] | None = None
) -> str:
    stored = await stored_origin(db) if not settings.server.base_url else None
    return resolve_origin(settings, stored, listening)


def unset_base_url_warning(origin: str) -> str:
    """What start-up and ``vidbox check`` say when mail is on and server.base_url is not."""
    return (
        f"server.base_url is not set: links in mail will point at {origin}. Set "
        "server.base_url to the address people use to reach this box."
    )
