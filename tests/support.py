"""Test helpers: the real app over real HTTP on a free port, polling with a deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from vidbox.app import create_app
from vidbox.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0, what: str = "") -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@dataclass
class LiveServer:
    app: Starlette
    settings: Settings
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(settings: Settings, app: Starlette | None = None) -> LiveServer:
    """uvicorn serving create_app(settings) on a free loopback port, in a thread."""
    app = app or create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), what="uvicorn to start")
    if not server.started:
        raise RuntimeError("server did not start")
    return LiveServer(app, settings, f"http://127.0.0.1:{port}", server, thread)


PASSWORD = "correct horse battery"


def add_user(
    settings: Settings, email: str, *, admin: bool = False, name: str = "", password: str = PASSWORD
) -> str:
    """Create an account straight in the database (as `vidbox user create` does); returns id."""
    import asyncio

    from vidbox.auth.users import create_user
    from vidbox.services import open_services

    async def go() -> str:
        async with open_services(settings) as services, services.db.session() as session:
            user = await create_user(
                session, email=email, password=password, name=name, is_admin=admin
            )
            return user.id

    return asyncio.run(go())


def api_login(client: httpx.Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_from(html: str) -> str:
    import re

    match = re.search(r'name="_csrf" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert match, "page has no CSRF token"
    return match.group(1)


def browser_login(client: httpx.Client, email: str, password: str = PASSWORD) -> str:
    """Sign in through the login form like a browser; returns a CSRF token for later posts."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "_csrf": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/settings").text)
