"""Uploads: the spool that keeps unfinished uploads on disk, checks on what is uploaded, and
the tus header helpers. No HTTP or database code lives here; the routes call into it."""

from __future__ import annotations

from vidbox.filenames import clean_filename
from vidbox.uploads.errors import (
    ChecksumMismatch,
    EmptyUpload,
    NotAVideo,
    OffsetMismatch,
    TooLarge,
    UploadComplete,
    UploadError,
    UploadLocked,
    UploadNotFound,
)
from vidbox.uploads.spool import UploadSpool, check_upload_id
from vidbox.uploads.validation import (
    HEAD_BYTES,
    check_declared,
    check_upload,
    sniff_container,
)

__all__ = [
    "HEAD_BYTES",
    "ChecksumMismatch",
    "EmptyUpload",
    "NotAVideo",
    "OffsetMismatch",
    "TooLarge",
    "UploadComplete",
    "UploadError",
    "UploadLocked",
    "UploadNotFound",
    "UploadSpool",
    "check_declared",
    "check_upload",
    "check_upload_id",
    "clean_filename",
    "sniff_container",
]
