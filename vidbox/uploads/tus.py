"""Pure helpers for the tus 1.0 headers: no HTTP framework, no I/O.

The routes use these to read ``Upload-Metadata``, ``Upload-Checksum``, ``Upload-Length`` and
``Upload-Offset`` and to write ``Upload-Expires``. Every parse error is a ``ValueError`` whose
message can be shown to the client as is (the route answers 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
# Content-Type a PATCH (and a creation-with-upload POST) body must declare.
TUS_CONTENT_TYPE = "application/offset+octet-stream"

# Canonical names, in the order advertised by ``Tus-Checksum-Algorithm``. tus requires sha1.
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("sha1", "sha256", "sha512", "md5")
# Clients spell them either the hashlib way (sha256) or the IANA way (sha-256).
_CHECKSUM_ALIASES = {"sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"}


class UnsupportedChecksumAlgorithm(ValueError):
    """``Upload-Checksum`` names an algorithm this server does not offer (tus: answer 400)."""


def checksum_algorithm(name: str) -> str:
    """The canonical hashlib name for ``name``, or UnsupportedChecksumAlgorithm."""
    canonical = _CHECKSUM_ALIASES.get(name.strip().lower(), name.strip().lower())
    if canonical not in CHECKSUM_ALGORITHMS:
        offered = ", ".join(CHECKSUM_ALGORITHMS)
        raise UnsupportedChecksumAlgorithm(
            f"Checksum algorithm {name!r} is not supported; use one of {offered}."
        )
    return canonical


def parse_checksum(header: str) -> tuple[str, bytes]:
    """``Upload-Checksum: sha1 <base64 digest>`` -> ("sha1", digest bytes)."""
    parts = header.split()
    if len(parts) != 2:
        raise ValueError("Upload-Checksum must be an algorithm name and a base64 digest.")
    algorithm = checksum_algorithm(parts[0])
    try:
        digest = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("Upload-Checksum digest is not valid base64.") from None
    if len(digest) != hashlib.new(algorithm, usedforsecurity=False).digest_size:
        raise ValueError(f"Upload-Checksum digest has the wrong length for {algorithm}.")
    return algorithm, digest


def _check_key(key: str) -> None:
    if not key or any(ch in key for ch in " ,") or not key.isprintable() or not key.isascii():
        raise ValueError(f"Upload-Metadata key {key!r} is not valid.")


def parse_upload_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata: filename bXkubXA0,is_public`` -> {"filename": "my.mp4", ...}.

    Pairs are comma-separated ``key base64value``; a key alone means an empty value. Values are
    decoded as UTF-8. Duplicate keys, bad keys and bad base64 raise ValueError.
    """
    if header is None or not header.strip():
        return {}
    metadata: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.split()
        if not parts or len(parts) > 2:
            raise ValueError("Upload-Metadata must be comma-separated 'key base64value' pairs.")
        key = parts[0]
        _check_key(key)
        if key in metadata:
            raise ValueError(f"Upload-Metadata key {key!r} appears twice.")
        value = ""
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError(
                    f"Upload-Metadata value of {key!r} is not base64-encoded UTF-8."
                ) from None
        metadata[key] = value
    return metadata


def encode_upload_metadata(metadata: dict[str, str]) -> str:
    """The inverse of parse_upload_metadata; an empty value is sent as the key alone."""
    pairs = []
    for key, value in metadata.items():
        _check_key(key)
        if value:
            pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}")
        else:
            pairs.append(key)
    return ",".join(pairs)


def parse_size(header: str | None, name: str) -> int:
    """A tus size header (``Upload-Length``, ``Upload-Offset``): a non-negative decimal integer.

    ``name`` is the header name, used in the error message.
    """
    if header is None:
        raise ValueError(f"{name} is missing.")
    value = header.strip()
    # int() alone would also take "+5", " 5", "5_000" and non-ASCII digits.
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise ValueError(f"{name} must be a non-negative integer.")
    return int(value)
