"""Who is asking: the one place routes get the current user from, plus CSRF and cookies.

API clients send ``Authorization: Bearer <token>`` (an access or personal token). Browsers send
the session cookie, and every state-changing request they make must also carry the CSRF token
(form field ``_csrf`` or header ``X-CSRF-Token``): a signed double-submit token, the HMAC of a
random cookie value and the browser sign-in under the box's secret key, so another site can
neither read nor forge it, and a token from one sign-in does not work in another. Signing in
renews the cookie value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from vidbox.auth.sessions import Principal, authenticate
from vidbox.errors import Forbidden, NotFound, Unauthorized
from vidbox.models import User
from vidbox.web.deps import services_of
from vidbox.web.errors import LoginRequired, wants_html

SESSION_COOKIE = "vidbox_session"
CSRF_COOKIE = "vidbox_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services_of(request).secret_key, salt="vidbox.session")


def secure_cookies(request: Request) -> bool:
    base = services_of(request).settings.server.base_url
    return base.startswith("https://") or request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    days = services_of(request).settings.auth.session_days
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(request).dumps(token),
        max_age=days * 86400,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def _session_token(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    max_age = services_of(request).settings.auth.session_days * 86400
    try:
        return str(_serializer(request).loads(raw, max_age=max_age))
    except BadSignature:
        return None


# --- CSRF -------------------------------------------------------------------------------


def _csrf_for(request: Request, seed: str, session_id: str) -> str:
    # Bound to the sign-in as well as to the seed cookie: someone who can plant a cookie (a
    # sibling subdomain can) plants the seed of a token they hold, but that token was made
    # for their own sign-in, not the victim's.
    key = services_of(request).secret_key
    message = f"csrf:{session_id}:{seed}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _cookie_session_id(principal: Principal | None) -> str:
    """The browser sign-in a CSRF token belongs to; "" before signing in."""
    return principal.session.id if principal is not None and principal.via == "cookie" else ""


def csrf_token(request: Request) -> str:
    """The CSRF token for forms and fetches on this page (rendered after the principal is
    known); remembers to set the seed cookie."""
    seed = getattr(request.state, "csrf_seed", None) or request.cookies.get(CSRF_COOKIE)
    if not seed:
        seed = secrets.token_urlsafe(24)
        request.state.csrf_seed = seed
    return _csrf_for(request, seed, _cookie_session_id(request.scope.get(PRINCIPAL_KEY)))


def set_csrf_cookie(request: Request, response: Response) -> None:
    seed = getattr(request.state, "csrf_seed", None)
    if seed:
        response.set_cookie(
            CSRF_COOKIE,
            seed,
            max_age=365 * 86400,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request),
            path="/",
        )


def renew_csrf(request: Request, response: Response) -> None:
    """A fresh seed cookie at sign-in: nothing from before it (a seed someone planted
    included) carries over into the signed-in session."""
    request.state.csrf_seed = secrets.token_urlsafe(24)
    set_csrf_cookie(request, response)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    allowed = {request.url.netloc}
    base = services_of(request).settings.server.base_url
    if base:
        allowed.add(urlsplit(base).netloc)
    return urlsplit(origin).netloc in allowed


async def check_csrf(request: Request, principal: Principal | None = None) -> None:
    """Refuse a browser's state-changing request that did not come from our own pages of
    this sign-in. ``principal`` is the request's cookie sign-in when the caller has it;
    otherwise it is looked up."""
    submitted = request.headers.get("x-csrf-token")
    if submitted is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("_csrf")
        submitted = value if isinstance(value, str) else None
    if principal is None:
        principal = await _cookie_principal(request)
    seed = request.cookies.get(CSRF_COOKIE)
    if (
        not submitted
        or not seed
        or not hmac.compare_digest(
            submitted, _csrf_for(request, seed, _cookie_session_id(principal))
        )
        or not _same_origin(request)
    ):
        raise Forbidden(
            "This form has expired or did not come from this site. Reload the page and try again."
        )


# --- the current user -------------------------------------------------------------------


# Where the principal is kept for the rest of the request. A scope key rather than
# request.state: a miss on State raises and formats an AttributeError, which on the media path
# (one lookup per segment) was a measurable share of the request's cost.
PRINCIPAL_KEY = "vidbox.principal"


async def current_principal(request: Request) -> Principal | None:
    if PRINCIPAL_KEY in request.scope:
        principal: Principal | None = request.scope[PRINCIPAL_KEY]
        return principal
    db = services_of(request).db
    principal = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("Use an 'Authorization: Bearer <token>' header.")
        principal = await authenticate(db, token.strip(), ("access", "personal"))
        if principal is None:
            raise Unauthorized(
                "This access token is not valid or has expired.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
    else:
        principal = await _cookie_principal(request)
        if principal is not None and request.method not in SAFE_METHODS:
            await check_csrf(request, principal)
    request.scope[PRINCIPAL_KEY] = principal
    return principal


async def _cookie_principal(request: Request) -> Principal | None:
    """Who the session cookie signs in, if anyone (the Authorization header aside)."""
    known: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if known is not None and known.via == "cookie":
        return known
    token = _session_token(request)
    return await authenticate(services_of(request).db, token, ("cookie",)) if token else None


async def still_signed_in(request: Request) -> bool:
    """Whether the credential this request came with is valid now. A response that goes on
    for long (an event stream) asks again as it goes: the sign-in may have ended since."""
    header = request.headers.get("authorization")
    kinds: tuple[str, ...]
    if header:
        token, kinds = header.partition(" ")[2].strip(), ("access", "personal")
    else:
        token, kinds = _session_token(request) or "", ("cookie",)
    return await authenticate(services_of(request).db, token, kinds) is not None


async def optional_user(request: Request) -> User | None:
    principal = await current_principal(request)
    return principal.user if principal else None


async def require_user(request: Request) -> User:
    """The signed-in user; API callers get 401, browsers are sent to the sign-in page."""
    principal = await current_principal(request)
    if principal is None:
        if wants_html(request):
            raise LoginRequired()
        raise Unauthorized(headers={"WWW-Authenticate": "Bearer"})
    return principal.user


async def require_admin(request: Request) -> User:
    user = await require_user(request)
    if not user.is_admin:
        # Non-admins learn nothing about admin routes.
        raise NotFound()
    return user


def safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would be a phishing tool."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
