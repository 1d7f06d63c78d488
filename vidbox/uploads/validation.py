"""Deciding whether an upload is a video we take, and making its file name safe to show.

Pure functions: the caller reads the first bytes of the file (``HEAD_BYTES`` are enough) and
passes them in.
"""

from __future__ import annotations

from vidbox.filenames import clean_filename
from vidbox.uploads.errors import NotAVideo

HEAD_BYTES = 4096

DISPLAY_NAMES = {"mp4": "MP4", "mov": "MOV", "avi": "AVI", "webm": "WebM", "mkv": "MKV"}

MIME_TYPES = {
    "video/mp4": "mp4",
    "video/x-m4v": "mp4",
    "video/quicktime": "mov",
    "video/x-msvideo": "avi",
    "video/avi": "avi",
    "video/msvideo": "avi",
    "video/webm": "webm",
    "video/x-matroska": "mkv",
    "video/matroska": "mkv",
}
# Browsers send these (or nothing) when they do not know the type; the bytes decide then.
UNKNOWN_MIME_TYPES = {"", "application/octet-stream", "binary/octet-stream"}

# ISO BMFF major brands of stills and audio-only files, which share the MP4 box layout.
_NON_VIDEO_BRANDS = {
    b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
    b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ", b"crx ",
}  # fmt: skip
# Classic QuickTime files may start with one of these atoms instead of ftyp.
_QUICKTIME_FIRST_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE_ID = 0x4282
_DOCTYPES = {b"webm": "webm", b"matroska": "mkv"}


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``pos`` -> (value, position after it)."""
    first = data[pos]
    width = 1
    while width <= 8 and not first & (0x80 >> (width - 1)):
        width += 1
    if width > 8 or pos + width > len(data):
        raise IndexError
    value = first if keep_marker else first & (0xFF >> width)
    for byte in data[pos + 1 : pos + width]:
        value = (value << 8) | byte
    return value, pos + width


def _ebml_doctype(head: bytes) -> bytes | None:
    """DocType from the EBML header, or None when the head is too short or malformed."""
    try:
        _, pos = _read_vint(head, 4, keep_marker=False)
        while pos < len(head):
            element_id, pos = _read_vint(head, pos, keep_marker=True)
            size, pos = _read_vint(head, pos, keep_marker=False)
            if element_id == _EBML_DOCTYPE_ID:
                if pos + size > len(head):
                    return None
                return head[pos : pos + size].rstrip(b"\x00")
            pos += size
    except IndexError:
        return None
    return None


def sniff_container(head: bytes) -> str | None:
    """The container of a file from its first bytes: mp4, mov, webm, mkv, avi or None."""
    head = head[:HEAD_BYTES]
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _NON_VIDEO_BRANDS:
            return None
        return "mov" if brand == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in _QUICKTIME_FIRST_ATOMS:
        return "mov"
    if head.startswith(_EBML_MAGIC):
        doctype = _ebml_doctype(head)
        if doctype is None:
            # Header cut short: Matroska is the general case, WebM a restricted profile of it.
            return "webm" if b"\x42\x82\x84webm" in head else "mkv"
        return _DOCTYPES.get(doctype)
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def _display_list(names: list[str], conjunction: str) -> str:
    shown = [DISPLAY_NAMES.get(name, name.upper()) for name in names]
    if len(shown) <= 1:
        return "".join(shown)
    return f"{', '.join(shown[:-1])} {conjunction} {shown[-1]}"


def refused_format_message(allowed: list[str]) -> str:
    """'Only MP4, MOV, AVI, WebM and MKV videos are accepted.'"""
    return f"Only {_display_list(allowed, 'and')} videos are accepted."


def not_a_video_message(allowed: list[str]) -> str:
    """'This file does not look like a video: its content is not MP4, MOV, AVI, WebM or MKV.'"""
    return (
        f"This file does not look like a video: its content is not {_display_list(allowed, 'or')}."
    )


def check_declared(filename: str, declared_type: str | None, allowed: list[str]) -> str:
    """Refuse (NotAVideo, 415) a name or declared type that is not an allowed video format,
    before any byte is sent; returns the extension ("" when there is none)."""
    allowed = [fmt.lower().lstrip(".") for fmt in allowed]
    name = clean_filename(filename)
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    mime = (declared_type or "").split(";", 1)[0].strip().lower()
    if (extension and extension not in allowed) or (
        mime not in UNKNOWN_MIME_TYPES and mime not in MIME_TYPES
    ):
        raise NotAVideo(refused_format_message(allowed))
    return extension


def content_container(head: bytes, allowed: list[str]) -> str:
    """The container the first bytes of an upload are (mp4, mov, webm, mkv or avi), or
    NotAVideo (415) when they are no video at all, or none of the ``allowed`` formats."""
    allowed = [fmt.lower().lstrip(".") for fmt in allowed]
    container = sniff_container(head)
    if container is None or container not in allowed:
        raise NotAVideo(not_a_video_message(allowed))
    return container


def check_upload(filename: str, declared_type: str | None, head: bytes, allowed: list[str]) -> str:
    """The container of an upload (what its bytes are), or NotAVideo (415).

    The extension and the declared MIME type must name an allowed video format; a missing
    extension, an empty type and application/octet-stream mean "unknown" and leave the
    decision to the bytes. The bytes must be a video in an allowed format, but not
    necessarily the one the name says: an MKV called .mp4 or an MP4 called .webm is common
    (renamed downloads, phone exports), FFmpeg reads the content whatever the name, and the
    stored original is named after what it really is.
    """
    check_declared(filename, declared_type, allowed)
    return content_container(head, allowed)
