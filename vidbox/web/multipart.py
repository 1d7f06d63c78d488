"""Streaming a multipart/form-data body: the file part goes straight to its consumer chunk by
chunk (Starlette's ``request.form()`` would first copy it to a temporary file), small text
fields are collected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from vidbox.errors import BadRequest, UnsupportedMediaType
from vidbox.uploads.files import Chunk
from vidbox.web.inputs import body_chunks

MAX_FIELD_BYTES = 4096


@dataclass
class MultipartUpload:
    """Filled in while ``file_chunks()`` is consumed."""

    file_fields: tuple[str, ...]
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
            if not self._in_file and self._current:
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

    async def file_chunks(self, request: Request) -> AsyncIterator[Chunk]:
        """The bytes of the first file field, as they arrive; the other fields are parsed on
        the way and are complete once the iterator is exhausted."""
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise UnsupportedMediaType("Send the video as multipart/form-data with a 'file' field.")
        parser = MultipartParser(boundary, self._callbacks())  # type: ignore[arg-type]
        async for chunk in body_chunks(request):
            try:
                parser.write(chunk)
            except BadRequest:
                raise
            except Exception as exc:
                raise BadRequest(f"The multipart body is malformed: {exc}") from None
            for piece in self._pending:
                yield piece
            self._pending.clear()
        parser.finalize()
        if not self._seen_file:
            raise BadRequest(
                "No video in the form: send it in a field named 'file' (or 'video_file')."
            )
