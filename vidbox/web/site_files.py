"""The files browsers and crawlers ask every site for at its root: /favicon.ico, /robots.txt."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

# Crawlers stay out of the box, except share pages: link previews (Open Graph tags, the
# thumbnail) in chats and social sites come from fetching those. A share page still tells
# search engines not to index it; a link is meant for the people it was sent to.
ROBOTS_TXT = "User-agent: *\nAllow: /s/\nDisallow: /\n"
_DAY = "public, max-age=86400"


async def robots_txt(request: Request) -> Response:
    return PlainTextResponse(ROBOTS_TXT, headers={"Cache-Control": _DAY})


async def favicon_ico(request: Request) -> Response:
    # Browsers ask for /favicon.ico where a page names no icon (a JSON answer, a download,
    # the browser's history list): the same icon as the pages' SVG, as a real ICO file.
    icon = files("vidbox").joinpath("static", "favicon.ico").read_bytes()
    return Response(icon, media_type="image/x-icon", headers={"Cache-Control": _DAY})


routes = [
    Route("/robots.txt", robots_txt, methods=["GET", "HEAD"]),
    Route("/favicon.ico", favicon_ico, methods=["GET", "HEAD"]),
]
