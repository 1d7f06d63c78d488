"""Turning errors into responses: JSON ``{"detail": ...}`` for API clients, a friendly page for
browsers. Every error response in the app goes through ``render_error``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from vidbox.errors import VidboxError
from vidbox.storage import ObjectNotFound, StorageError

log = logging.getLogger("vidbox.web")

TITLES = {
    400: "That did not work",
    401: "Please sign in",
    403: "Not allowed",
    404: "Page not found",
    410: "This link has expired",
    413: "That file is too large",
    429: "Slow down",
    500: "Something went wrong",
    503: "Not ready yet",
}

MESSAGES = {
    404: "There is nothing here. It may have been deleted, or the address is mistyped.",
    410: "The link you followed has expired or was revoked. Ask the person who shared it for "
    "a new one.",
    500: "The server ran into a problem. It has been logged; if it happens again, tell the "
    "person who runs this box and mention the request id below.",
}


class LoginRequired(VidboxError):
    """A browser asked for a page that needs sign-in: answered with a redirect to /login."""

    status = 401
    default_detail = "Sign in to see this page."


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)


def wants_html(request: Request) -> bool:
    if request.url.path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "")


def render_error(
    request: Request,
    status: int,
    detail: str | None,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if not wants_html(request):
        body = body or {"detail": detail or f"{phrase}."}
        return JSONResponse(body, status_code=status, headers=headers)
    detail = detail or MESSAGES.get(status) or phrase
    templates = request.app.state.templates
    context = {
        "status": status,
        "title": TITLES.get(status, phrase),
        "message": detail if status < 500 else MESSAGES[500],
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    page: Response = templates.TemplateResponse(
        request, "error.html", context, status_code=status, headers=headers
    )
    return page


async def vidbox_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VidboxError)
    if isinstance(exc, LoginRequired):
        return login_redirect(request)
    return render_error(request, exc.status, exc.detail, body=exc.body(), headers=exc.headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    if exc.status_code == 404:
        detail = None
    headers = dict(exc.headers) if exc.headers else None
    return render_error(request, exc.status_code, detail, headers=headers)


async def object_not_found_handler(request: Request, exc: Exception) -> Response:
    return render_error(request, 404, None)


async def storage_error_handler(request: Request, exc: Exception) -> Response:
    log.error("storage failed: %s", exc)
    return render_error(request, 503, "The media store is not reachable right now. Try again soon.")


EXCEPTION_HANDLERS = {
    VidboxError: vidbox_error_handler,
    HTTPException: http_error_handler,
    # ObjectNotFound is a StorageError: the more specific handler wins.
    ObjectNotFound: object_not_found_handler,
    StorageError: storage_error_handler,
}
