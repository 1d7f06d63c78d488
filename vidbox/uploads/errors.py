"""Why an upload was refused. These are VidboxErrors like any other (one handler renders them
all); a full disk is vidbox.diskspace.DiskFull, the one 507 of the app."""

from __future__ import annotations

from vidbox.errors import VidboxError


class UploadError(VidboxError):
    """An upload was refused. The base of the spool's refusals, so cleanup code that races a
    request (a locked or vanished upload) can ignore them all."""

    status = 400
    default_detail = "The upload was refused."


class UploadNotFound(UploadError):
    status = 404
    default_detail = "There is no such upload. It may have expired or been cancelled."


class OffsetMismatch(UploadError):
    """``current`` is the offset the server has; tus clients get it as Upload-Offset."""

    status = 409
    default_detail = "The upload offset does not match what the server has."

    def __init__(self, current: int) -> None:
        super().__init__(
            f"The server has {current} bytes of this upload; send the rest from there.",
            headers={"Upload-Offset": str(current)},
        )
        self.current = current


class UploadComplete(UploadError):
    """A PATCH to an upload that already has every byte (with the offset, so a client that
    missed the last 204 learns it is done)."""

    status = 409
    default_detail = "This upload is already complete."

    def __init__(self, length: int) -> None:
        super().__init__(
            f"This upload is already complete: the server has all {length} bytes.",
            headers={"Upload-Offset": str(length)},
        )
        self.current = length


class TooLarge(UploadError):
    status = 413
    default_detail = "The upload is larger than allowed."


class NotAVideo(UploadError):
    """The name, declared type or content is not an allowed video format."""

    status = 415
    default_detail = "This file is not a video in an accepted format."


class ChecksumMismatch(UploadError):
    status = 460
    default_detail = "The data does not match its checksum; send this part again."


class UploadLocked(UploadError):
    status = 423
    default_detail = "Another request is already sending this upload; try again in a moment."


class EmptyUpload(UploadError):
    status = 400
    default_detail = "The file is empty."
