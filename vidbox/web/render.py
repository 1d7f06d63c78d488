"""Rendering pages with what every page needs: the user, the CSRF token, flash messages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vidbox.sharing import unread_count
from vidbox.web.auth import csrf_token, optional_user, set_csrf_cookie
from vidbox.web.deps import services_of

FLASH_COOKIE = "vidbox_flash"


async def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> Response:
    flash = request.cookies.get(FLASH_COOKIE, "")
    user = await optional_user(request)
    unread = await unread_count(services_of(request).db, user.id) if user else 0
    full = {
        "user": user,
        "unread": unread,
        "csrf_token": csrf_token(request),
        "flash": flash,
        **(context or {}),
    }
    templates = request.app.state.templates
    response: Response = templates.TemplateResponse(request, template, full, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    set_csrf_cookie(request, response)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(url: str, *, flash: str = "") -> RedirectResponse:
    """A 303 after a form post, optionally carrying a one-time message to the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, flash[:300], max_age=60, httponly=True, samesite="lax")
    return response
