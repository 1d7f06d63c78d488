"""Streaming a multipart/form-data body: the file part goes straight to its consumer chunk by
chunk (Starlette's ``request.form()`` would first copy it to a temporary file), small text
fields are collected.

Where the server can move body bytes into a file itself (``vidbox.http.request_body``), the file
part does not pass through Python either (``MultipartUpload.direct_file``): python-multipart
parses up to the start of the file's bytes, the rest of the body is spliced into the file
and searched for the part's closing delimiter as it is moved, and whatever follows the
delimiter is read back and parsed as usual.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from vidbox.errors import BadRequest, UnsupportedMediaType
from vidbox.threads import private_pool
from vidbox.uploads.files import Chunk, DirectBody, on_disk_thread, pwritev_all
from vidbox.web.inputs import SplicedBody, body_chunks, direct_body

MAX_FIELD_BYTES = 4096
# Bytes spliced per step; each step is searched for the delimiter as it is moved.
DIRECT_STEP_BYTES = 16 * 1024 * 1024
# What follows the file is read back and parsed in slices of this size.
_TAIL_SLICE = 1024 * 1024


@dataclass
class MultipartUpload:
    """Filled in while ``file_chunks()`` is consumed."""

    file_fields: tuple[str, ...]
    # The disk threads (``vidbox.threads``); None: the form makes its own when it needs them.
    disk: Executor | None = None
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    content_type: str = ""
    _current: str = ""
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_name: bytes = b""
    _header_value: bytes = b""
    _in_file: bool = False
    _field_value: bytearray = field(default_factory=bytearray)
    _pending: list[Chunk] = field(default_factory=list)
    _seen_file: bool = False
    _file_ended: bool = False  # its closing delimiter was seen

    def _callbacks(self) -> dict[str, object]:
        def on_part_begin() -> None:
            self._headers, self._current, self._in_file = {}, "", False
            self._field_value = bytearray()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._header_name += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._header_value += data[start:end]

        def on_header_end() -> None:
            self._headers[self._header_name.lower()] = self._header_value
            self._header_name, self._header_value = b"", b""

        def on_headers_finished() -> None:
            _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
            self._current = options.get(b"name", b"").decode("utf-8", "replace")
            if self._current in self.file_fields and not self._seen_file:
                self._in_file = self._seen_file = True
                raw_name = options.get(b"filename", b"")
                self.filename = raw_name.decode("utf-8", "replace")
                self.content_type = self._headers.get(b"content-type", b"").decode("latin-1")

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if self._in_file:
                # A view, not a copy: ``data`` is the chunk given to the parser (or its
                # boundary constant), which nothing changes afterwards.
                self._pending.append(memoryview(data)[start:end])
            elif len(self._field_value) <= MAX_FIELD_BYTES:
                self._field_value += data[start:end]

        def on_part_end() -> None:
            if self._in_file:
                self._file_ended = True
            elif self._current:
                if len(self._field_value) > MAX_FIELD_BYTES:
                    raise BadRequest(f"The form field {self._current!r} is too long.")
                self.fields[self._current] = self._field_value.decode("utf-8", "replace")
            self._in_file = False

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }

    def _parser(self, request: Request) -> MultipartParser:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise UnsupportedMediaType("Send the video as multipart/form-data with a 'file' field.")
        # python-multipart types its callbacks as a TypedDict of exact signatures; ours take
        # the same arguments through a plain dict of methods.
        return MultipartParser(boundary, self._callbacks())  # type: ignore[arg-type]

    def _check_complete(self) -> None:
        if not self._seen_file:
            raise BadRequest(
                "No video in the form: send it in a field named 'file' (or 'video_file')."
            )
        if not self._file_ended:
            # A body cut short (by a proxy, say) must not pass for a whole video.
            raise BadRequest("The multipart body ended inside the file.")

    async def file_chunks(self, request: Request) -> AsyncIterator[Chunk]:
        """The bytes of the first file field, as they arrive; the other fields are parsed on
        the way and are complete once the iterator is exhausted."""
        parser = self._parser(request)
        async for chunk in body_chunks(request):
            _write(parser, chunk)
            for piece in self._pending:
                yield piece
            self._pending.clear()
        parser.finalize()
        self._check_complete()

    def direct_file(self, request: Request) -> DirectBody | None:
        """The bytes of the first file field, for the spool to have moved into its file by the
        server itself; None where the server cannot. The other fields are complete once
        ``to_file`` has answered 0."""
        direct = direct_body(request)
        return None if direct is None else _FilePart(self, request, self._parser(request), direct)


def _write(parser: MultipartParser, data: Chunk) -> None:
    try:
        # Chunks may be memoryviews of the read buffer; the parser declares bytes only but
        # slices and indexes what it gets, which a memoryview supports.
        parser.write(data)  # type: ignore[arg-type]
    except BadRequest:
        raise
    except Exception as exc:
        raise BadRequest(f"The multipart body is malformed: {exc}") from None


class _FilePart:
    """The file part of a multipart body, as a DirectBody: see the module docstring."""

    def __init__(
        self, form: MultipartUpload, request: Request, parser: MultipartParser, body: SplicedBody
    ) -> None:
        self.form, self.parser, self.body = form, parser, body
        if form.disk is None:
            form.disk = private_pool("disk")
        self.disk: Executor = form.disk
        self.chunks = body_chunks(request)
        # The whole delimiter that ends the part: CRLF, "--", the boundary.
        self.delimiter: bytes = parser.boundary
        self.done = False

    def remaining(self) -> int:
        return self.body.remaining()

    async def to_file(self, fd: int, offset: int, limit: int) -> int:
        if self.done:
            return 0
        if self._in_file_data():
            return await self._splice_file(fd, offset, limit)
        # Parse until the file's bytes begin; short files end here, in memory.
        async for chunk in self.chunks:
            _write(self.parser, chunk)
            pieces, self.form._pending = self.form._pending, []
            size = sum(len(piece) for piece in pieces)
            if size:
                await on_disk_thread(self.disk, pwritev_all, fd, pieces, offset)
                return size
            if self._in_file_data():
                return await self._splice_file(fd, offset, limit)
        self.parser.finalize()
        self.form._check_complete()
        self.done = True
        return 0

    def _in_file_data(self) -> bool:
        """True when the parser sits inside the file's bytes with nothing held back: no
        partial delimiter at the end of what it was given (``index`` 0). Reads the parser's
        state; should python-multipart change it, the body is parsed the slow way instead."""
        parser = self.parser
        return (
            self.form._in_file
            and getattr(parser, "state", None) == MultipartState.PART_DATA
            and getattr(parser, "index", None) == 0
            and self.body.remaining() > 0
        )

    async def _splice_file(self, fd: int, start: int, limit: int) -> int:
        """Splice the body into ``fd`` from ``start`` until the delimiter turns up in it.
        Returns the file's size from ``start``; more than ``limit`` (and then cut at
        ``limit`` + 1) when it is too large."""
        end = since = start
        while True:
            moved, found = await self.body.to_file_until(
                fd, end, DIRECT_STEP_BYTES, self.delimiter, since
            )
            end += moved
            if found is not None:
                break
            if moved == 0:
                raise BadRequest("The multipart body ended inside the file.")
            if end - start > limit:
                # Too large, delimiter or not: the spool refuses the upload.
                await on_disk_thread(self.disk, os.ftruncate, fd, start + limit + 1)
                self.done = True
                return limit + 1
            # The delimiter may straddle this step and the next.
            since = max(start, end - len(self.delimiter) + 1)
        await self._parse_after(fd, found, end)
        return found - start

    async def _parse_after(self, fd: int, found: int, end: int) -> None:
        """Give the parser what follows the file, from its delimiter on: first the bytes that
        went into the file past it (then cut away), then the rest of the body."""
        for position in range(found, end, _TAIL_SLICE):
            data = await on_disk_thread(
                self.disk, os.pread, fd, min(_TAIL_SLICE, end - position), position
            )
            _write(self.parser, data)
        await on_disk_thread(self.disk, os.ftruncate, fd, found)
        async for chunk in self.chunks:
            _write(self.parser, chunk)
        self.parser.finalize()
        self.form._check_complete()
        self.done = True
