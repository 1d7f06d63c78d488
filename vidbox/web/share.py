"""Share links over HTTP: the owner's link API, and the /s/{token} pages and media.

Everything under /s/{token} first opens the link (404 unknown, 410 expired or revoked, for the
page and every path below it alike), then checks that the request may watch: anyone for a
public link; for a private one the owner, a signed-in listed account, or a browser holding the
link's access cookie. Private media refused to anyone else is a 403, not a 404: whoever holds
the URL already knows the link exists, so hiding it protects nothing, while a 403 tells a
player or script what is missing (signing in on the page).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from vidbox import sharing
from vidbox.errors import Forbidden, Gone, ServiceUnavailable, ValidationFailed
from vidbox.models import VideoStatus
from vidbox.videos import renditions_of
from vidbox.web import media_routes
from vidbox.web.auth import check_csrf, optional_user, require_user, secure_cookies
from vidbox.web.deps import mail_origin, public_base, services_of
from vidbox.web.errors import wants_html
from vidbox.web.inputs import client_ip, form_body, json_body, text
from vidbox.web.render import render

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
PRIVATE_MEDIA = "This video is shared privately. Open the link's page and sign in there first."
NO_DOWNLOAD = "The person who shared this video did not allow downloading it."
LINK_GONE = "This link no longer works"

Handler = Callable[[Request], Awaitable[Response]]


# -- the owner's API -----------------------------------------------------------------------


async def video_links(request: Request) -> Response:
    services = services_of(request)
    user = await require_user(request)
    video_id = request.path_params["video_id"]
    if request.method == "POST":
        body = await json_body(request)
        link = await sharing.create_link(
            services,
            user,
            video_id,
            body,
            base_url=public_base(request),
            mail_origin=await mail_origin(request),
        )
        return JSONResponse(link, status_code=201)
    items = await sharing.links_for_video(services, user, video_id, public_base(request))
    return JSONResponse({"items": items})


async def all_links(request: Request) -> Response:
    user = await require_user(request)
    status = request.query_params.get("status") or None
    items = await sharing.list_links(
        services_of(request), user, base_url=public_base(request), status=status
    )
    return JSONResponse({"items": items})


async def revoke(request: Request) -> Response:
    user = await require_user(request)
    await sharing.revoke_link(services_of(request), user, request.path_params["link_id"])
    return Response(status_code=204)


# -- /s/{token} ------------------------------------------------------------------------------


async def _notice(
    request: Request, heading: str, message: str, *, status: int, back_url: str = ""
) -> Response:
    context = {"state": "notice", "heading": heading, "message": message, "back_url": back_url}
    return await render(request, "share_enter.html", context, status=status)


def friendly_gone(handler: Handler) -> Handler:
    """Browsers get a page saying the link expired or was revoked; players and scripts get the
    JSON 410 like every other error."""

    @wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Gone as exc:
            if request.method == "HEAD" or not wants_html(request):
                raise
            return await _notice(request, LINK_GONE, exc.detail, status=410)

    return wrapped


async def _open(request: Request) -> sharing.SharedVideo:
    return await sharing.open_link(services_of(request), request.path_params["token"])


async def _may_watch(request: Request, shared: sharing.SharedVideo) -> bool:
    user = await optional_user(request)
    cookie = request.cookies.get(sharing.ACCESS_COOKIE)
    return sharing.may_watch(services_of(request), shared, user, cookie)


async def _access_form(
    request: Request,
    shared: sharing.SharedVideo,
    *,
    status: int = 200,
    error: str = "",
    email: str = "",
    sent: bool = False,
) -> Response:
    context = {
        "path": shared.path,
        "email_enabled": services_of(request).mailer.enabled,
        "error": error,
        "email": email,
        "sent": sent,
        "sent_message": sharing.ACCESS_REQUESTED,
    }
    return await render(request, "share_access.html", context, status=status)


def _player_context(
    request: Request, shared: sharing.SharedVideo, renditions: list[Any]
) -> dict[str, Any]:
    video, link, path = shared.video, shared.link, shared.path
    playable = video.status == VideoStatus.READY and bool(renditions)
    base = public_base(request)
    thumbnail_url = f"{path}/thumbnail.jpg" if video.thumbnail_key else None
    context: dict[str, Any] = {
        "title": video.title,
        "status": video.status,
        "duration_seconds": video.duration_seconds,
        "path": path,
        "master_url": f"{path}/hls/master.m3u8" if playable else None,
        "thumbnail_url": thumbnail_url,
        "download_url": f"{path}/download" if link.allow_download and video.original_key else None,
        "renditions": [
            {
                "name": r.name,
                "width": r.width,
                "height": r.height,
                "url": f"{path}/hls/{r.name}/index.m3u8",
            }
            for r in sorted(renditions, key=lambda r: r.height, reverse=True)
        ],
        "expires_at": link.expires_at,
        # Open Graph only for public links: a private link's title is not for chat previews.
        "og": None,
    }
    if shared.is_public:
        context["og"] = {
            "title": video.title,
            "url": base + path,
            "image": base + thumbnail_url if thumbnail_url else None,
            "duration": round(video.duration_seconds) if video.duration_seconds else None,
        }
    return context


@friendly_gone
async def share_page(request: Request) -> Response:
    services = services_of(request)
    shared = await _open(request)
    if not await _may_watch(request, shared):
        return await _access_form(request, shared)
    if request.method == "GET":
        await sharing.record_view(services, shared.link.id, page_view=True)
    async with services.db.read() as session:
        renditions = (await renditions_of(session, [shared.video.id]))[shared.video.id]
    return await render(request, "share.html", _player_context(request, shared, renditions))


@friendly_gone
async def ask_access(request: Request) -> Response:
    """Always 202 with the same body, listed or not; the form gets the same page either way."""
    services = services_of(request)
    shared = await _open(request)
    is_form = request.headers.get("content-type", "").startswith(FORM_TYPES)
    if is_form:
        await check_csrf(request)
        email = (await form_body(request)).get("email", "")[:320]
    else:
        email = text(await json_body(request), "email", max_length=320)
    try:
        await sharing.request_access(
            services, shared, email, ip=client_ip(request), origin=await mail_origin(request)
        )
    except (ValidationFailed, ServiceUnavailable) as exc:
        if not is_form:
            raise
        return await _access_form(request, shared, status=exc.status, error=exc.detail, email=email)
    if is_form:
        return await _access_form(request, shared, status=202, sent=True)
    return JSONResponse({"detail": sharing.ACCESS_REQUESTED}, status_code=202)


@friendly_gone
async def enter(request: Request) -> Response:
    """The one-time sign-in link from the mail. GET only shows a Continue button: mail
    scanners fetch links to inspect them, and must not use the link up."""
    services = services_of(request)
    shared = await _open(request)
    signed = request.path_params["signed"]
    try:
        if request.method != "POST":
            await sharing.check_grant(services, shared, signed)
            context = {
                "state": "continue",
                "title": shared.video.title,
                "action": request.url.path,
            }
            return await render(request, "share_enter.html", context)
        await check_csrf(request)
        grant = await sharing.check_grant(services, shared, signed, use=True)
    except Gone as exc:
        if not wants_html(request):
            raise
        heading = "This sign-in link cannot be used again"
        return await _notice(request, heading, exc.detail, status=410, back_url=shared.path)
    value, max_age = sharing.access_cookie(services, shared, grant.email)
    response = RedirectResponse(shared.path, status_code=303)
    response.set_cookie(
        sharing.ACCESS_COOKIE,
        value,
        max_age=max_age,
        path=shared.path,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )
    return response


async def _watchable(request: Request) -> sharing.SharedVideo:
    shared = await _open(request)
    if not await _may_watch(request, shared):
        raise Forbidden(PRIVATE_MEDIA)
    return shared


@friendly_gone
async def thumbnail(request: Request) -> Response:
    return await media_routes.thumbnail(request, (await _watchable(request)).video)


@friendly_gone
async def download(request: Request) -> Response:
    shared = await _watchable(request)
    if not shared.link.allow_download:
        raise Forbidden(NO_DOWNLOAD)
    return await media_routes.download(request, shared.video)


@friendly_gone
async def master(request: Request) -> Response:
    shared = await _watchable(request)
    if request.method == "GET":
        await sharing.record_view(services_of(request), shared.link.id, page_view=False)
    return await media_routes.master(request, shared.video)


@friendly_gone
async def hls_file(request: Request) -> Response:
    shared = await _watchable(request)
    params = request.path_params
    return await media_routes.hls_file(
        request, shared.video, params["rendition"], params["filename"]
    )


routes = [
    Route("/api/videos/{video_id}/links", video_links, methods=["GET", "POST"]),
    Route("/api/links", all_links, methods=["GET"]),
    Route("/api/links/{link_id}", revoke, methods=["DELETE"]),
    Route("/s/{token}", share_page, methods=["GET", "HEAD"]),
    Route("/s/{token}/access", ask_access, methods=["POST"]),
    Route("/s/{token}/enter/{signed}", enter, methods=["GET", "POST"]),
    Route("/s/{token}/thumbnail.jpg", thumbnail, methods=["GET", "HEAD"]),
    Route("/s/{token}/download", download, methods=["GET", "HEAD"]),
    Route("/s/{token}/hls/master.m3u8", master, methods=["GET", "HEAD"]),
    Route("/s/{token}/hls/{rendition}/{filename}", hls_file, methods=["GET", "HEAD"]),
]
