"""tus 1.0 at /api/uploads (core, creation, creation-with-upload, termination, expiration,
checksum) and the one-shot multipart upload at POST /api/videos. Parsing only; the decisions
are in vidbox.ingest."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vidbox import ingest
from vidbox.errors import BadRequest, PreconditionFailed, UnsupportedMediaType, VidboxError
from vidbox.ingest import UploadState
from vidbox.timefmt import http_date
from vidbox.uploads.tus import (
    CHECKSUM_ALGORITHMS,
    TUS_CONTENT_TYPE,
    TUS_EXTENSIONS,
    TUS_VERSION,
    UnsupportedChecksumAlgorithm,
    parse_checksum,
    parse_size,
    parse_upload_metadata,
)
from vidbox.videos import video_details
from vidbox.web.auth import require_user
from vidbox.web.deps import services_of
from vidbox.web.errors import render_error
from vidbox.web.inputs import body_chunks, direct_body
from vidbox.web.multipart import MultipartUpload

TUS_HEADERS = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}


def _tus_response(status: int, state: UploadState | None = None, **headers: str) -> Response:
    all_headers = dict(TUS_HEADERS)
    if state is not None:
        all_headers |= {
            "Upload-Offset": str(state.offset),
            "Upload-Length": str(state.length),
            "Upload-Expires": http_date(state.expires_at),
        }
    all_headers |= headers
    return Response(status_code=status, headers=all_headers)


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise PreconditionFailed(
            f"This server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'.",
            headers={"Tus-Version": TUS_VERSION},
        )


def _size(request: Request, name: str) -> int:
    try:
        return parse_size(request.headers.get(name), name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _tus_errors(request: Request, exc: VidboxError) -> Response:
    """tus clients read Tus-Resumable on errors too."""
    return render_error(
        request, exc.status, exc.detail, body=exc.body(), headers={**exc.headers, **TUS_HEADERS}
    )


async def options(request: Request) -> Response:
    limit = services_of(request).settings.uploads.max_bytes
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(limit),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


def _checksum(request: Request) -> tuple[str, bytes] | None:
    header = request.headers.get("upload-checksum")
    if header is None:
        return None
    try:
        return parse_checksum(header)
    except UnsupportedChecksumAlgorithm as exc:
        raise BadRequest(f"Unsupported checksum algorithm: {exc}") from None
    except ValueError as exc:
        raise BadRequest(f"Upload-Checksum is malformed: {exc}") from None


async def _patch(request: Request, upload_id: str) -> Response:
    services = services_of(request)
    user = await require_user(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != TUS_CONTENT_TYPE:
        raise UnsupportedMediaType(f"PATCH bodies must be sent as {TUS_CONTENT_TYPE}.")
    offset = _size(request, "Upload-Offset")
    content_length = request.headers.get("content-length")
    checksum = _checksum(request)
    try:
        state = await ingest.append(
            services,
            user,
            upload_id,
            offset=offset,
            body=body_chunks(request),
            direct=direct_body(request),
            content_length=int(content_length) if content_length else None,
            checksum=checksum,
        )
    except ClientDisconnect:
        # The bytes that arrived are on disk; the client resumes from HEAD's offset.
        return Response(status_code=400, headers=TUS_HEADERS)
    return _tus_response(204, state)


async def create(request: Request) -> Response:
    try:
        _check_version(request)
        services = services_of(request)
        user = await require_user(request)
        if request.headers.get("upload-defer-length"):
            raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length.")
        try:
            metadata = parse_upload_metadata(request.headers.get("upload-metadata"))
        except ValueError as exc:
            raise BadRequest(f"Upload-Metadata is malformed: {exc}") from None
        state = await ingest.create_upload(
            services, user, length=_size(request, "Upload-Length"), metadata=metadata
        )
        headers = {"Location": f"/api/uploads/{state.id}", "Vidbox-Video-Id": state.video_id}
        if request.headers.get("content-type", "").startswith(TUS_CONTENT_TYPE):
            # creation-with-upload: the first bytes ride along with the creation request.
            try:
                state = await ingest.append(
                    services,
                    user,
                    state.id,
                    offset=0,
                    body=body_chunks(request),
                    direct=direct_body(request),
                    content_length=None,
                    checksum=_checksum(request),
                )
            except ClientDisconnect:
                return Response(status_code=400, headers=TUS_HEADERS)
        return _tus_response(201, state, **headers)
    except VidboxError as exc:
        return _tus_errors(request, exc)


async def upload_resource(request: Request) -> Response:
    upload_id = request.path_params["upload_id"]
    method = request.method
    if method == "POST":
        method = request.headers.get("x-http-method-override", "").upper() or "POST"
    try:
        _check_version(request)
        services = services_of(request)
        if method == "HEAD":
            state = await ingest.upload_state(services, await require_user(request), upload_id)
            # The video's id, as on creation: a page resuming an upload follows that video.
            return _tus_response(200, state, **{"Vidbox-Video-Id": state.video_id})
        if method == "PATCH":
            return await _patch(request, upload_id)
        if method == "DELETE":
            await ingest.terminate(services, await require_user(request), upload_id)
            return _tus_response(204)
        return render_error(
            request,
            405,
            "An upload takes HEAD, PATCH or DELETE (or POST with X-HTTP-Method-Override).",
            headers={**TUS_HEADERS, "Allow": "HEAD, PATCH, DELETE"},
        )
    except VidboxError as exc:
        return _tus_errors(request, exc)


async def create_one_shot(request: Request) -> JSONResponse:
    services = services_of(request)
    user = await require_user(request)
    form = MultipartUpload(file_fields=("file", "video_file"), disk=services.threads.disk)
    content_length = request.headers.get("content-length")

    def describe() -> tuple[str, str, str]:
        return form.filename or "", form.content_type, form.fields.get("title", "")

    video_id = await ingest.receive_one_shot(
        services,
        user,
        chunks=form.file_chunks(request),
        direct=form.direct_file(request),
        describe=describe,
        content_length=int(content_length) if content_length and content_length.isdigit() else None,
    )
    return JSONResponse(await video_details(services, user, video_id), status_code=201)


routes = [
    Route("/api/uploads", create, methods=["POST"]),
    Route("/api/uploads", options, methods=["OPTIONS"]),
    Route("/api/uploads/{upload_id}", upload_resource, methods=["HEAD", "PATCH", "DELETE", "POST"]),
]
