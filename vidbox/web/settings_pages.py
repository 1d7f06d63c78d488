"""/settings: display name, password, sign out everywhere, personal API tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidbox.auth import accounts
from vidbox.auth.sessions import (
    EVERY_KIND,
    create_personal_token,
    list_personal_tokens,
    revoke_session,
    revoke_user_sessions,
)
from vidbox.errors import NotFound, TooManyRequests, VidboxError
from vidbox.models import User
from vidbox.web.api_auth import UNKNOWN_ID
from vidbox.web.auth import clear_session_cookie, require_user
from vidbox.web.deps import services_of
from vidbox.web.inputs import form_body
from vidbox.web.render import redirect, render


async def _page(
    request: Request, user: User, *, error: str = "", new_token: str = "", status: int = 200
) -> Response:
    tokens = await list_personal_tokens(services_of(request).db, user)
    context = {"tokens": tokens, "error": error, "new_token": new_token}
    return await render(request, "settings.html", context, status=status)


async def settings_page(request: Request) -> Response:
    return await _page(request, await require_user(request))


async def save_profile(request: Request) -> Response:
    user = await require_user(request)
    form = await form_body(request)
    try:
        await accounts.rename_account(services_of(request).db, user.id, form.get("name", ""))
    except VidboxError as exc:
        return await _page(request, user, error=exc.detail, status=exc.status)
    return redirect("/settings", flash="Your name is saved.")


async def change_password(request: Request) -> Response:
    user = await require_user(request)
    form = await form_body(request)
    try:
        # Ends every sign-in of the account, this one and the API tokens included.
        await accounts.change_own_password(
            services_of(request).db,
            user,
            current=form.get("current_password", ""),
            new=form.get("new_password", ""),
        )
    except TooManyRequests:
        raise  # the error page, with its Retry-After
    except VidboxError as exc:
        return await _page(request, user, error=exc.detail, status=exc.status)
    response = redirect(
        "/login",
        flash="Password changed, and your API tokens are revoked. Sign in with the new one.",
    )
    clear_session_cookie(response)
    return response


async def sign_out_everywhere(request: Request) -> Response:
    user = await require_user(request)
    await revoke_user_sessions(services_of(request).db, user.id, kinds=EVERY_KIND)
    response = redirect(
        "/login", flash="You are signed out on every device, and your API tokens are revoked."
    )
    clear_session_cookie(response)
    return response


async def create_token(request: Request) -> Response:
    user = await require_user(request)
    form = await form_body(request)
    name = " ".join(form.get("name", "").split())[:100]
    if not name:
        return await _page(request, user, error="Give the token a name.", status=400)
    _, token = await create_personal_token(services_of(request).db, user, name)
    return await _page(request, user, new_token=token)


async def revoke_token(request: Request) -> Response:
    user = await require_user(request)
    token_id = request.path_params["token_id"]
    # As in the API: someone else's token and a made-up id get the same 404.
    if not await revoke_session(
        services_of(request).db, token_id, user_id=user.id, kind="personal"
    ):
        raise NotFound(UNKNOWN_ID)
    return redirect("/settings", flash="Token revoked.")


routes = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/profile", save_profile, methods=["POST"]),
    Route("/settings/password", change_password, methods=["POST"]),
    Route("/settings/signout-everywhere", sign_out_everywhere, methods=["POST"]),
    Route("/settings/tokens", create_token, methods=["POST"]),
    Route("/settings/tokens/{token_id}/revoke", revoke_token, methods=["POST"]),
]
