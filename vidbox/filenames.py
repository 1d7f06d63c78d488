"""File names from users: safe to store, show and send back in a Content-Disposition header.

The name a person uploaded is kept as metadata only (storage keys are vidbox's own), but it is
shown on pages and offered again on download, so it must not carry paths, control characters or
direction overrides that make it display as something it is not.
"""

from __future__ import annotations

import os
import re
import unicodedata
from urllib.parse import quote

# Invisible characters that can make a name display differently from what it is
# ("clip\u202e4pm.exe" shows as "clipexe.mp4").
_BIDI_CONTROLS = {0x061C, 0x200E, 0x200F, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
_EDGE_JUNK = re.compile(r"^[\s.]+|[\s.]+$")
_TRAILING_JUNK = re.compile(r"[\s.]+$")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,16}")
DOWNLOAD_NAME_CHARS = 150


def clean_filename(name: str, *, max_chars: int = 200, fallback: str = "video") -> str:
    """A file name that is safe to store and show: last path component only, no control or
    direction-changing characters, NFC, no leading/trailing spaces or dots, at most ``max_chars``
    characters with the extension kept. Falls back to ``fallback`` (plus the extension)."""
    kept = "".join(
        ch
        for ch in name
        if ord(ch) not in _BIDI_CONTROLS and unicodedata.category(ch) not in {"Cc", "Zl", "Zp"}
    )
    kept = unicodedata.normalize("NFC", kept)
    component = re.split(r"[/\\]", kept)[-1]
    # Trailing dots and spaces go first, so "clip.mp4 ." still has its extension.
    component = _TRAILING_JUNK.sub("", component)
    stem, dot, extension = component.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(extension):
        stem, extension = component, ""
    suffix = f".{extension}" if extension else ""
    stem = _EDGE_JUNK.sub("", stem)
    stem = _EDGE_JUNK.sub("", stem[: max_chars - len(suffix)]) or fallback
    return stem + suffix


def safe_filename(name: str) -> str:
    """A download name: ``clean_filename`` without double quotes or runs of white space, at
    most 150 characters. Never empty."""
    collapsed = " ".join(name.replace('"', "").split())
    return clean_filename(collapsed, max_chars=DOWNLOAD_NAME_CHARS, fallback="download")


def _ascii_fallback(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    text = "".join(
        ch if 32 <= ord(ch) < 127 and ch not in '"\\%' else "_"
        for ch in decomposed
        if not unicodedata.combining(ch)
    )
    stem, ext = os.path.splitext(text)
    if not stem.strip("_ ."):
        stem = "download"
    return stem + ext


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` for old clients and the exact UTF-8 name in
    ``filename*`` (RFC 6266 / RFC 8187), both from ``safe_filename``."""
    clean = safe_filename(name)
    encoded = quote(clean, safe="")
    return f"attachment; filename=\"{_ascii_fallback(clean)}\"; filename*=UTF-8''{encoded}"
