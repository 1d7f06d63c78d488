"""/admin: accounts and invites (jobs and storage status join as those parts land)."""

from __future__ import annotations

from typing import TypedDict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidbox.auth.accounts import add_account, set_flags
from vidbox.auth.invites import create_invite, list_open_invites
from vidbox.auth.users import list_users
from vidbox.errors import VidboxError
from vidbox.jobs.admin import queue_overview, retry, storage_status
from vidbox.web.auth import require_admin
from vidbox.web.deps import public_base, services_of
from vidbox.web.inputs import flag, form_body
from vidbox.web.render import redirect, render


async def _page(
    request: Request, *, error: str = "", invite_url: str = "", status: int = 200
) -> Response:
    services = services_of(request)
    async with services.db.read() as session:
        users = await list_users(session)
    storage_ok, storage_detail = await storage_status(services)
    context = {
        **await queue_overview(services),
        "storage_ok": storage_ok,
        "storage_detail": storage_detail,
        "email_enabled": services.mailer.enabled,
        "users": users,
        "invites": await list_open_invites(services.db),
        "registration": services.settings.auth.registration,
        "error": error,
        "invite_url": invite_url,
    }
    return await render(request, "admin.html", context, status=status)


async def admin_page(request: Request) -> Response:
    await require_admin(request)
    return await _page(request)


async def add_user(request: Request) -> Response:
    await require_admin(request)
    form = await form_body(request)
    try:
        user = await add_account(
            services_of(request).db,
            email=form.get("email", ""),
            password=form.get("password", ""),
            name=form.get("name", ""),
            is_admin=flag(form, "is_admin"),
        )
    except VidboxError as exc:
        return await _page(request, error=exc.detail, status=exc.status)
    return redirect("/admin", flash=f"Account {user.email} created.")


class Flags(TypedDict, total=False):
    disabled: bool
    is_admin: bool
    email_verified: bool


ACTIONS: dict[str, Flags] = {
    "disable": {"disabled": True},
    "enable": {"disabled": False},
    "make-admin": {"is_admin": True},
    "remove-admin": {"is_admin": False},
    # For a box without mail, where the owner of a self-registered address cannot confirm it.
    "verify-email": {"email_verified": True},
}


async def user_action(request: Request) -> Response:
    actor = await require_admin(request)
    action = ACTIONS.get(request.path_params["action"])
    if action is None:
        return await _page(request, error="Unknown action.", status=400)
    try:
        user = await set_flags(
            services_of(request).db, actor, user_id=request.path_params["user_id"], **action
        )
    except VidboxError as exc:
        return await _page(request, error=exc.detail, status=exc.status)
    return redirect("/admin", flash=f"{user.email} updated.")


async def add_invite(request: Request) -> Response:
    admin = await require_admin(request)
    services = services_of(request)
    form = await form_body(request)
    if services.settings.auth.registration != "invite":
        return await _page(
            request, error='Set auth.registration = "invite" to use invites.', status=409
        )
    try:
        _, token = await create_invite(services.db, admin, email=form.get("email", ""))
    except VidboxError as exc:
        return await _page(request, error=exc.detail, status=exc.status)
    return await _page(request, invite_url=f"{public_base(request)}/invite/{token}")


async def retry_job(request: Request) -> Response:
    await require_admin(request)
    raw = request.path_params["job_id"]
    try:
        await retry(services_of(request), raw)
    except VidboxError as exc:
        return await _page(request, error=exc.detail, status=exc.status)
    return redirect("/admin#jobs", flash=f"Job {raw} is queued again.")


routes = [
    Route("/admin", admin_page, methods=["GET"]),
    Route("/admin/users", add_user, methods=["POST"]),
    Route("/admin/users/{user_id}/{action}", user_action, methods=["POST"]),
    Route("/admin/invites", add_invite, methods=["POST"]),
    Route("/admin/jobs/{job_id:int}/retry", retry_job, methods=["POST"]),
]
