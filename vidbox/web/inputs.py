"""Reading request bodies into plain values, with a 400 naming the field when they are wrong."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request

from vidbox.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from vidbox.fields import flag_value
from vidbox.http.request_body import BODY_READINTO, BODY_TO_FILE
from vidbox.uploads.files import Chunk, DirectBody

MAX_JSON_BYTES = 64 * 1024
BODY_BUFFER_BYTES = 1024 * 1024


async def json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
        raise UnsupportedMediaType("Send a JSON body with Content-Type: application/json.")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise BadRequest("The JSON body is too large.")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    except RecursionError:
        # Nesting deeper than Python's stack (about 1,000 levels) in a 64 KiB body.
        raise BadRequest("The JSON body is nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadRequest("The JSON body must be an object.")
    return body


async def body_chunks(
    request: Request, *, buffer_bytes: int = BODY_BUFFER_BYTES
) -> AsyncIterator[Chunk]:
    """The raw request body, chunk by chunk. Where the server can (``vidbox.http.server``'s
    readinto extension, a body of known length), the bytes go from the socket straight into
    buffers of ``buffer_bytes``, otherwise they come as Starlette streams them. Raises
    ClientDisconnect after the last chunk that arrived when the client goes mid-body."""
    readinto = request.scope.get("extensions", {}).get(BODY_READINTO, {}).get("readinto")
    if readinto is None:
        async for chunk in request.stream():
            yield chunk
        return
    while True:
        # A new buffer each time: the consumer may still be writing the previous ones.
        buffer = bytearray(buffer_bytes)
        view, filled = memoryview(buffer), 0
        try:
            while filled < buffer_bytes:
                got = await readinto(view[filled:])
                if got == 0:
                    break
                filled += got
        except OSError:
            if filled:
                # A copy: the failed read's frame, kept by the exception, still holds a view
                # of the buffer, which therefore cannot be trimmed.
                yield view[:filled].tobytes()
            raise ClientDisconnect() from None
        if filled:
            yield _trimmed(buffer, view, filled)
        if filled < buffer_bytes:
            return


def direct_body(request: Request) -> SplicedBody | None:
    """The request body for the server to move into a file itself, where it can
    (``vidbox.http.request_body``'s to-file extension, a body of known length), else None."""
    extension = request.scope.get("extensions", {}).get(BODY_TO_FILE)
    return None if extension is None else SplicedBody(extension)


class SplicedBody(DirectBody):
    """The to-file extension, with a client leaving reported as Starlette does."""

    def __init__(self, extension: dict[str, Any]) -> None:
        self._extension = extension

    def remaining(self) -> int:
        return int(self._extension["remaining"]())

    async def to_file(self, fd: int, offset: int, limit: int) -> int:
        moved, _ = await self.to_file_until(fd, offset, limit)
        return moved

    async def to_file_until(
        self,
        fd: int,
        offset: int,
        limit: int,
        delimiter: bytes = b"",
        search_from: int | None = None,
    ) -> tuple[int, int | None]:
        """See ``vidbox.http.request_body.RequestBody.to_file_until``."""
        try:
            moved, found = await self._extension["to_file_until"](
                fd, offset, limit, delimiter, search_from
            )
        except ConnectionResetError:
            raise ClientDisconnect() from None
        return int(moved), found


def _trimmed(buffer: bytearray, view: memoryview, filled: int) -> bytearray:
    view.release()  # a bytearray with a live view cannot change size
    del buffer[filled:]  # in place: no copy
    return buffer


async def form_body(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def text(body: dict[str, Any], name: str, *, required: bool = True, max_length: int = 1000) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ValidationFailed.field(name, f"{name} is required.")
        return ""
    if not isinstance(value, str):
        raise ValidationFailed.field(name, f"{name} must be a string.")
    if len(value) > max_length:
        raise ValidationFailed.field(name, f"{name} must be at most {max_length} characters.")
    return value


def flag(body: dict[str, Any], name: str, *, default: bool = False) -> bool:
    value = flag_value(body.get(name, default))
    if value is None:
        raise ValidationFailed.field(name, f"{name} must be true or false.")
    return value


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
