"""Why an upload was refused: each error carries the HTTP status and a sentence for people."""

from __future__ import annotations


class UploadError(Exception):
    """An upload was refused. ``detail`` is a sentence for the user, ``status`` the HTTP status
    the web layer should answer with."""

    status: int = 400
    default_detail = "The upload was refused."

    def __init__(self, detail: str | None = None, *, status: int | None = None) -> None:
        self.detail = detail or self.default_detail
        if status is not None:
            self.status = status
        super().__init__(self.detail)


class UploadNotFound(UploadError):
    status = 404
    default_detail = "There is no such upload. It may have expired or been cancelled."


class OffsetMismatch(UploadError):
    status = 409
    default_detail = "The upload offset does not match what the server has."

    def __init__(self, current: int) -> None:
        super().__init__(
            f"The server has {current} bytes of this upload; send the rest from there."
        )
        self.current = current


class UploadComplete(UploadError):
    """A PATCH to an upload that already has every byte."""

    status = 409

    def __init__(self, length: int) -> None:
        super().__init__(f"This upload is already complete: the server has all {length} bytes.")
        self.current = length


class TooLarge(UploadError):
    status = 413
    default_detail = "The upload is larger than allowed."


class ChecksumMismatch(UploadError):
    status = 460
    default_detail = "The data does not match its checksum; send this part again."


class UploadLocked(UploadError):
    status = 423
    default_detail = "Another request is already sending this upload; try again in a moment."


class EmptyUpload(UploadError):
    status = 400
    default_detail = "The file is empty."


class DiskFull(UploadError):
    status = 507  # Insufficient Storage
    default_detail = (
        "The server's disk is full. What arrived so far is kept: resume the upload once "
        "space has been freed."
    )
