"""The JSON API for accounts: login, token refresh and rotation, logout, registration, me,
personal API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidbox.auth import verify
from vidbox.auth.invites import register
from vidbox.auth.login import sign_in
from vidbox.auth.ratelimit import RateLimiter
from vidbox.auth.sessions import (
    TokenPair,
    create_personal_token,
    list_personal_tokens,
    revoke_session,
    rotate_refresh,
    start_api_session,
)
from vidbox.auth.users import user_json
from vidbox.errors import NotFound
from vidbox.models import AuthSession
from vidbox.timefmt import iso_z
from vidbox.web.auth import current_principal, require_user
from vidbox.web.deps import mail_origin, services_of
from vidbox.web.inputs import client_ip, json_body, text

UNKNOWN_ID = "No such token."
# Per client address: account creation is rare (and each one hashes a password); a client
# refreshes every access_token_minutes, and a few scripts behind one address may share it.
REGISTRATIONS_PER_CLIENT = 10  # an hour
REFRESHES_PER_CLIENT = 60  # in 5 minutes


def _tokens_json(pair: TokenPair) -> dict[str, Any]:
    return {
        "access": pair.access,
        "refresh": pair.refresh,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
    }


async def login(request: Request) -> JSONResponse:
    services = services_of(request)
    body = await json_body(request)
    user = await sign_in(
        services.db,
        email=text(body, "email", max_length=320),
        password=text(body, "password", max_length=1024),
        ip=client_ip(request),
    )
    auth = services.settings.auth
    pair = await start_api_session(
        services.db,
        user,
        access_minutes=auth.access_token_minutes,
        refresh_days=auth.refresh_token_days,
    )
    return JSONResponse({**_tokens_json(pair), "user": user_json(user)})


async def refresh(request: Request) -> JSONResponse:
    services = services_of(request)
    body = await json_body(request)
    await RateLimiter(services.db).hit(
        f"refresh-ip:{client_ip(request)}", limit=REFRESHES_PER_CLIENT, window=timedelta(minutes=5)
    )
    auth = services.settings.auth
    pair = await rotate_refresh(
        services.db,
        text(body, "refresh", max_length=200),
        access_minutes=auth.access_token_minutes,
        refresh_days=auth.refresh_token_days,
    )
    return JSONResponse(_tokens_json(pair))


async def logout(request: Request) -> Response:
    await require_user(request)
    principal = await current_principal(request)
    assert principal is not None
    await revoke_session(services_of(request).db, principal.session.id)
    return Response(status_code=204)


async def register_user(request: Request) -> JSONResponse:
    services = services_of(request)
    body = await json_body(request)
    await RateLimiter(services.db).hit(
        f"register-ip:{client_ip(request)}",
        limit=REGISTRATIONS_PER_CLIENT,
        window=timedelta(hours=1),
    )
    user = await register(
        services.db,
        services.settings.auth.registration,
        email=text(body, "email", max_length=320),
        password=text(body, "password", max_length=1024),
        name=text(body, "name", required=False, max_length=200),
        invite_token=text(body, "invite", required=False, max_length=200) or None,
    )
    await verify.queue_verification(services, user, origin=await mail_origin(request))
    return JSONResponse(user_json(user), status_code=201)


async def resend_verification(request: Request) -> JSONResponse:
    """Mail the signed-in user a new confirmation link for their address (202)."""
    services = services_of(request)
    user = await require_user(request)
    await verify.resend_verification(services, user, origin=await mail_origin(request))
    return JSONResponse({"detail": f"A confirmation link is on its way to {user.email}."}, 202)


async def me(request: Request) -> JSONResponse:
    return JSONResponse(user_json(await require_user(request)))


def _token_json(auth: AuthSession) -> dict[str, Any]:
    return {
        "id": auth.id,
        "name": auth.name,
        "created_at": iso_z(auth.created_at),
    }


async def tokens(request: Request) -> JSONResponse:
    user = await require_user(request)
    services = services_of(request)
    if request.method == "POST":
        body = await json_body(request)
        name = text(body, "name", max_length=100).strip()
        auth, token = await create_personal_token(services.db, user, name)
        return JSONResponse({**_token_json(auth), "token": token}, status_code=201)
    rows = await list_personal_tokens(services.db, user)
    return JSONResponse({"items": [_token_json(t) for t in rows]})


async def revoke_token(request: Request) -> Response:
    user = await require_user(request)
    token_id = request.path_params["token_id"]
    # Another user's token is "not found" like one that never existed: no 403 that would
    # confirm the id is real.
    db = services_of(request).db
    if not await revoke_session(db, token_id, user_id=user.id, kind="personal"):
        raise NotFound(UNKNOWN_ID)
    return Response(status_code=204)


routes = [
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/refresh", refresh, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/auth/register", register_user, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/api/me/verify-email", resend_verification, methods=["POST"]),
    Route("/api/tokens", tokens, methods=["GET", "POST"]),
    Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
