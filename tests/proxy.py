"""A reverse proxy for tests, with a request body limit like nginx's ``client_max_body_size``:
requests whose body is longer get nginx's own kind of answer, a 413 HTML page, and never reach
vidbox; all others are forwarded over real HTTP, responses streamed back (event streams too)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse

# Hop-by-hop headers, and the length, which the proxy's own server sets again.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}

TOO_LARGE_PAGE = (
    "<html><head><title>413 Request Entity Too Large</title></head><body>"
    "<center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center>"
    "</body></html>"
)


class BodyLimitProxy:
    """An ASGI app forwarding to ``upstream`` (its base URL); bodies over ``max_body`` bytes
    are refused. ``bodies`` records (method, declared body length, refused) of each request
    that declared a length."""

    def __init__(self, upstream: str, max_body: int) -> None:
        self.upstream, self.max_body = upstream, max_body
        self.bodies: list[tuple[str, int, bool]] = []
        self.client = httpx.AsyncClient(base_url=upstream, timeout=60)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        if "content-length" in request.headers:
            length = int(request.headers["content-length"])
            self.bodies.append((request.method, length, length > self.max_body))
            if length > self.max_body:
                await HTMLResponse(TOO_LARGE_PAGE, status_code=413)(scope, receive, send)
                return
        # The Host header goes along, so vidbox sees the address the browser used.
        headers = [(k, v) for k, v in request.headers.items() if k not in _NOT_FORWARDED]
        if "content-length" in request.headers:
            headers.append(("content-length", request.headers["content-length"]))
        upstream = self.client.build_request(
            request.method,
            request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers=headers,
            content=request.stream() if request.method not in ("GET", "HEAD") else None,
        )
        answer = await self.client.send(upstream, stream=True)
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code)
        response.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers.multi_items()
            if k.lower() not in _NOT_FORWARDED
        ]
        if "content-length" in answer.headers:
            response.raw_headers.append(
                (b"content-length", answer.headers["content-length"].encode())
            )
        try:
            await response(scope, receive, send)
        finally:
            await answer.aclose()
