"""Receiving videos: tus uploads from creation to the last byte, and one-shot uploads.

The HTTP layer (web/uploads.py) parses headers; everything that decides lives here. An upload
is refused as early as it can be: name and declared type at creation, the content's magic bytes
as soon as the first 4 KiB are in, and the whole file once more on the last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vidbox.diskspace import DiskFull, free_bytes
from vidbox.errors import BadRequest, Conflict, NotFound
from vidbox.logs import log_fields
from vidbox.models import Upload, User, Video, new_id, utcnow
from vidbox.services import Services
from vidbox.upload_completion import (
    complete_tus,
    forget_stored,
    store_upload,
    stores_before_queueing,
)
from vidbox.upload_lease import LEASE_SECONDS, writing
from vidbox.uploads import (
    HEAD_BYTES,
    NotAVideo,
    TooLarge,
    UploadComplete,
    UploadNotFound,
    check_declared,
    check_upload,
)
from vidbox.uploads.files import Chunk, DirectBody
from vidbox.uploads.validation import content_container
from vidbox.videos import check_quota, check_size, new_video, start_processing

log = logging.getLogger("vidbox.uploads")


@dataclass(frozen=True)
class UploadState:
    id: str
    video_id: str
    length: int
    offset: int
    expires_at: datetime
    completed: bool


# How far the expiry must have fallen behind before a received part moves it.
EXPIRY_STEP = timedelta(minutes=1)


def _expiry(services: Services) -> datetime:
    return utcnow() + timedelta(hours=services.settings.uploads.expire_hours)


async def _extend_expiry(services: Services, upload: Upload) -> datetime:
    """Push the upload's expiry forward after a received part; returns the new expiry."""
    expires_at = _expiry(services)
    if expires_at - upload.expires_at < EXPIRY_STEP:
        # A client sending parts back to back: the expiry is as good as current. Writing it
        # costs a synced file and a database commit per PATCH, and that sync makes the file
        # system flush the upload's own data.
        return upload.expires_at
    await asyncio.to_thread(services.spool.touch, upload.id, expires_at)
    async with services.db.session() as session:
        row = await session.get(Upload, upload.id)
        if row is not None:
            row.expires_at = expires_at
            session.add(row)
    return expires_at


def check_room(services: Services) -> None:
    """Refuse new uploads while free space is below the reserve, or while the database's
    emergency space cannot be put back: the disk must keep room for the database, processing
    and the uploads already under way. A file larger than what is free may still start: it
    stops with 507 where the disk fills, keeping what arrived, and resumes once there is room."""
    root = services.spool.root
    free = free_bytes(root)
    # The emergency space given up when the disk filled comes back first.
    emergency_back = services.db.emergency.ensure()
    if free < services.settings.uploads.reserve_bytes or not emergency_back:
        log.warning(
            "upload refused: free space is below the reserve",
            extra=log_fields(folder=str(root), free=free),
        )
        raise DiskFull(
            "The server is low on free space, so new uploads are paused until some is freed."
        )


async def create_upload(
    services: Services, user: User, *, length: int, metadata: dict[str, str]
) -> UploadState:
    """A new tus upload and its UPLOADING video (so the dashboard shows it at once)."""
    if length == 0:
        raise BadRequest("The file is empty.")
    check_size(services, length)
    check_room(services)
    filename = metadata.get("filename") or metadata.get("name") or ""
    declared = metadata.get("filetype") or metadata.get("type") or ""
    check_declared(filename or "video", declared, services.settings.uploads.allowed_formats)
    upload_id, expires_at = new_id(), _expiry(services)
    async with services.db.session() as session:
        await check_quota(session, services, user, length)
        video = new_video(
            user,
            filename=filename,
            title=metadata.get("title", ""),
            size=length,
            content_type=declared,
        )
        session.add(video)
        await session.flush()
        session.add(
            Upload(
                id=upload_id,
                video_id=video.id,
                owner_id=user.id,
                length=length,
                expires_at=expires_at,
            )
        )
        info = {"owner_id": user.id, "video_id": video.id, "expires_at": expires_at}
        await asyncio.to_thread(services.spool.create, upload_id, length=length, info=info)
    log.info("upload created", extra=log_fields(upload_id=upload_id, length=length))
    return UploadState(upload_id, video.id, length, 0, expires_at, False)


async def _owned_upload(services: Services, user: User, upload_id: str) -> Upload:
    async with services.db.read() as session:
        upload = await session.get(Upload, upload_id) if len(upload_id) == 32 else None
    if upload is None or upload.owner_id != user.id:
        raise NotFound("No such upload.")
    return upload


# How long a HEAD on an upload whose bytes are all in waits for the request completing it
# (storing a large original in S3 takes a while) before answering 423 for the client to retry.
COMPLETION_WAIT_SECONDS = 2 * LEASE_SECONDS


async def upload_state(services: Services, user: User, upload_id: str) -> UploadState:
    """What HEAD answers. A completed upload keeps answering its full offset until its expiry,
    though processing has taken its bytes out of the spool: a client whose answer to the last
    PATCH was lost asks HEAD, learns it is done, and stops (tus 1.0 says an upload stays
    reachable until it expires). One with every byte in but not completed (the request
    completing it is still at work, or its process died) is completed first, so a full
    offset always means a video on its way to READY."""
    upload = await _owned_upload(services, user, upload_id)
    if upload.completed_at is None:
        offset = await asyncio.to_thread(services.spool.offset, upload.id)
        if offset < upload.length:
            return UploadState(
                upload.id, upload.video_id, upload.length, offset, upload.expires_at, False
            )
        async with writing(
            services.db, services.mark, services.spool, upload.id, wait=COMPLETION_WAIT_SECONDS
        ):
            await _complete_unfinished(services, user, upload)
    elif upload.expires_at <= utcnow():
        raise NotFound("No such upload.")
    return UploadState(
        upload.id, upload.video_id, upload.length, upload.length, upload.expires_at, True
    )


async def _complete_unfinished(services: Services, user: User, upload: Upload) -> bool:
    """Under the upload's lease: complete it if every byte is in and nobody completed it
    yet; returns whether it is complete now."""
    try:
        offset: int | None = await asyncio.to_thread(services.spool.offset, upload.id)
    except UploadNotFound:
        offset = None  # completed meanwhile and its spool copy gone, or deleted: the row says
    if offset is not None and offset < upload.length:
        return False  # the common case, seen without a database round trip
    async with services.db.read() as session:
        row = await session.get(Upload, upload.id)
    if row is None:
        raise NotFound("No such upload.")
    if row.completed_at is not None:
        return True
    if offset is None:
        raise NotFound("No such upload.")
    log.info("completing an upload left unfinished", extra=log_fields(upload_id=upload.id))
    container = await _check_content(services, user, upload)
    await complete_tus(services, upload, container)
    return True


def _read_head(services: Services, upload_id: str) -> bytes:
    with services.spool.data_path(upload_id).open("rb") as fh:
        return fh.read(HEAD_BYTES)


async def append(
    services: Services,
    user: User,
    upload_id: str,
    *,
    offset: int,
    body: AsyncIterator[Chunk],
    content_length: int | None,
    checksum: tuple[str, bytes] | None,
    direct: DirectBody | None = None,
) -> UploadState:
    """Write one PATCH body (``direct``: the same body, for the server to move into the spool
    itself). A body cut off mid-way keeps what arrived (the spool writes it before the
    disconnect propagates). The whole request holds the upload's lease, so no other
    process writes it meanwhile (423 for a second writer)."""
    upload = await _owned_upload(services, user, upload_id)
    if upload.completed_at is not None:
        # With the offset, so a client that missed the last 204 learns it is done.
        raise UploadComplete(upload.length)
    if content_length is not None and offset + content_length > upload.length:
        raise TooLarge(f"This part would go past the declared length of {upload.length} bytes.")
    async with writing(services.db, services.mark, services.spool, upload.id):
        if await _complete_unfinished(services, user, upload):
            # Every byte was in already (the last PATCH's process died completing it).
            raise UploadComplete(upload.length)
        new_offset = await services.spool.append(
            upload.id, offset, body, length=upload.length, checksum=checksum, direct=direct
        )
        expires_at = await _extend_expiry(services, upload)
        completed = new_offset == upload.length
        container = None
        if offset < HEAD_BYTES <= new_offset or completed:
            container = await _check_content(services, user, upload)
        if completed:
            await complete_tus(services, upload, container)
    return UploadState(upload.id, upload.video_id, upload.length, new_offset, expires_at, completed)


async def _check_content(services: Services, user: User, upload: Upload) -> str:
    """The container of the upload's first bytes. Content that is no video is refused as soon
    as those bytes are in: the upload and its video are removed before the 415 goes out (in
    their own transactions), so the dashboard drops the row at once instead of showing an
    upload that will never move."""
    head = await asyncio.to_thread(_read_head, services, upload.id)
    try:
        return content_container(head, services.settings.uploads.allowed_formats)
    except NotAVideo:
        await _forget(services, upload)  # the caller holds the upload's lease
        raise


async def terminate(services: Services, user: User, upload_id: str) -> None:
    """tus termination: forget an unfinished upload, its bytes and its UPLOADING video."""
    upload = await _owned_upload(services, user, upload_id)
    if upload.completed_at is not None:
        raise Conflict("This upload is complete; delete the video instead.")
    async with writing(services.db, services.mark, services.spool, upload.id):
        await _forget(services, upload)


async def _forget(services: Services, upload: Upload) -> None:
    await asyncio.to_thread(services.spool.delete, upload.id)
    async with services.db.session() as session:
        video = await session.get(Video, upload.video_id)
        if video is not None:
            await session.delete(video)  # the Upload row goes with it (ON DELETE CASCADE)


async def receive_one_shot(
    services: Services,
    user: User,
    *,
    chunks: AsyncIterator[Chunk],
    describe: Any,
    content_length: int | None,
    direct: DirectBody | None = None,
) -> str:
    """A whole multipart upload: stream it to the spool, check it, create a PROCESSING video.
    ``describe()`` returns (filename, content type, title) once the body has been read;
    ``direct`` is the same file for the server to move into the spool itself.
    Returns the video id."""
    limit = services.settings.uploads.max_bytes
    if content_length is not None and content_length > limit + 64 * 1024:
        check_size(services, content_length)
    check_room(services)
    spool_id = new_id()
    size = await services.spool.stream_to_spool(spool_id, chunks, max_bytes=limit, direct=direct)
    data_path = services.spool.data_path(spool_id)
    video: Video | None = None
    try:
        filename, content_type, title = describe()
        head = await asyncio.to_thread(_read_head, services, spool_id)
        container = check_upload(
            filename or "video", content_type, head, services.settings.uploads.allowed_formats
        )
        video = new_video(
            user, filename=filename, title=title, size=size, content_type=content_type
        )
        video.container = container
        if stores_before_queueing(services):
            async with services.db.read() as session:
                # Checked again below, where it counts; this spares storing a refused file.
                await check_quota(session, services, user, size)
            # Under the id the row gets below: a worker on any host finds it there.
            video.original_key = await store_upload(services, video, data_path)
        async with services.db.session() as session:
            await check_quota(session, services, user, size)
            session.add(video)
            await session.flush()
            await start_processing(session, video, None if video.original_key else spool_id)
    except BaseException:
        with contextlib.suppress(OSError):
            data_path.unlink()
        if video is not None:
            await forget_stored(services, video.original_key)
        raise
    if video.original_key:
        with contextlib.suppress(OSError):
            data_path.unlink()  # no job reads it
    log.info("one-shot upload received", extra=log_fields(video_id=video.id, size=size))
    return video.id
