"""Pages for getting in: first-admin setup, sign in, sign out, sign up (open or invited)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vidbox.auth import verify
from vidbox.auth.firstrun import claim_first_admin, count_users, find_setup_token
from vidbox.auth.invites import find_invite, register
from vidbox.auth.login import sign_in
from vidbox.auth.sessions import revoke_session, start_browser_session
from vidbox.errors import NotFound, VidboxError
from vidbox.mail.origin import clean_origin
from vidbox.models import User
from vidbox.web.auth import (
    check_csrf,
    clear_session_cookie,
    current_principal,
    optional_user,
    renew_csrf,
    require_user,
    safe_next,
    set_session_cookie,
)
from vidbox.web.deps import mail_origin, services_of
from vidbox.web.inputs import client_ip, form_body
from vidbox.web.render import redirect, render


async def _signed_in_redirect(request: Request, user: User, target: str = "/") -> Response:
    services = services_of(request)
    token = await start_browser_session(
        services.db,
        user,
        days=services.settings.auth.session_days,
        agent=request.headers.get("user-agent", ""),
    )
    response = redirect(safe_next(target))
    set_session_cookie(request, response, token)
    renew_csrf(request, response)
    return response


def _form_error(exc: VidboxError) -> str:
    return exc.detail


async def setup(request: Request) -> Response:
    db = services_of(request).db
    token = request.query_params.get("token", "")
    async with db.read() as session:
        valid = token and await find_setup_token(session, token)
    if not valid:
        raise NotFound("This setup link is not valid any more.")
    if request.method == "GET":
        return await render(request, "setup.html", {"token": token, "form": {}, "error": ""})
    await check_csrf(request)
    form = await form_body(request)
    # Only the person at the console has the setup token, so the Host this form came to is
    # the admin's own: with server.base_url unset it is where mailed links point when the box
    # listens on every address (vidbox.mail.origin).
    try:
        user = await claim_first_admin(
            db,
            token,
            email=form.get("email", ""),
            password=form.get("password", ""),
            name=form.get("name", ""),
            origin=clean_origin(request.url.scheme, request.url.netloc),
        )
    except VidboxError as exc:
        if exc.status == 404:
            raise
        context = {"token": token, "form": form, "error": _form_error(exc)}
        return await render(request, "setup.html", context, status=exc.status)
    return await _signed_in_redirect(request, user)


async def login(request: Request) -> Response:
    target = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if await optional_user(request):
            return redirect(target)
        async with services_of(request).db.read() as session:
            # A fresh box: say how to get in, rather than offer a form nobody can pass.
            no_accounts = await count_users(session) == 0
        context = {"next": target, "email": "", "error": "", "no_accounts": no_accounts}
        return await render(request, "login.html", context)
    await check_csrf(request)
    form = await form_body(request)
    email = form.get("email", "")
    try:
        user = await sign_in(
            services_of(request).db,
            email=email,
            password=form.get("password", ""),
            ip=client_ip(request),
        )
    except VidboxError as exc:
        context = {"next": target, "email": email, "error": exc.detail}
        response = await render(request, "login.html", context, status=exc.status)
        response.headers.update(exc.headers)
        return response
    return await _signed_in_redirect(request, user, target)


async def logout(request: Request) -> Response:
    if request.method == "GET":
        if not await optional_user(request):
            return redirect("/login")
        return await render(request, "logout.html")
    principal = await current_principal(request)  # checks CSRF for the cookie session
    if principal is not None:
        await revoke_session(services_of(request).db, principal.session.id)
    response = redirect("/login", flash="You are signed out.")
    clear_session_cookie(response)
    return response


async def signup(request: Request) -> Response:
    """/register (open registration) and /invite/{token} (invited)."""
    services = services_of(request)
    mode = services.settings.auth.registration
    invite_token = request.path_params.get("token")
    if invite_token is None and mode != "open":
        raise NotFound("Registration is closed here. Ask an admin of this box for an account.")
    if invite_token is not None:
        async with services.db.read() as session:
            invite = await find_invite(session, invite_token)
        if invite is None or mode == "closed":
            raise NotFound("This invite link has expired or was already used.")
        fixed_email = invite.email
    else:
        fixed_email = ""
    context = {"form": {"email": fixed_email}, "fixed_email": fixed_email, "error": ""}
    if request.method == "GET":
        if await optional_user(request):
            return redirect("/")
        return await render(request, "register.html", context)
    await check_csrf(request)
    form = await form_body(request)
    try:
        user = await register(
            services.db,
            "invite" if invite_token else mode,
            email=fixed_email or form.get("email", ""),
            password=form.get("password", ""),
            name=form.get("name", ""),
            invite_token=invite_token,
        )
    except VidboxError as exc:
        context |= {"form": form | {"email": fixed_email or form.get("email", "")}}
        context["error"] = exc.detail
        return await render(request, "register.html", context, status=exc.status)
    await verify.queue_verification(services, user, origin=await mail_origin(request))
    return await _signed_in_redirect(request, user)


async def verify_email(request: Request) -> Response:
    """The confirmation link from the mail. GET only shows a Confirm button: mail scanners
    fetch links to inspect them, and must not confirm an address for whoever registered it."""
    services = services_of(request)
    signed = request.path_params["signed"]
    if request.method != "POST":
        user = await verify.check_link(services, signed)
        context = {"email": user.email, "action": request.url.path}
        return await render(request, "verify_email.html", context)
    await check_csrf(request)
    user = await verify.confirm(services, signed)
    return redirect("/", flash=f"Thank you: {user.email} is confirmed.")


async def resend_verification(request: Request) -> Response:
    """The banner's "send the link again" form."""
    services = services_of(request)
    user = await require_user(request)
    try:
        await verify.resend_verification(services, user, origin=await mail_origin(request))
    except VidboxError as exc:
        return redirect("/settings", flash=exc.detail)
    return redirect("/settings", flash=f"A new confirmation link is on its way to {user.email}.")


routes = [
    Route("/setup", setup, methods=["GET", "POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["GET", "POST"]),
    Route("/register", signup, methods=["GET", "POST"]),
    Route("/invite/{token}", signup, methods=["GET", "POST"]),
    Route("/verify-email", resend_verification, methods=["POST"]),
    Route("/verify-email/{signed}", verify_email, methods=["GET", "POST"]),
]
