"""The settings schema: one frozen dataclass per section; field metadata holds each
setting's help text and checks, so these classes are the only list of settings there is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "VIDBOX_"


class ConfigError(Exception):
    """A setting is wrong. The message is one line naming the key and where it came from."""


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    min: int | None = None,
    max: int | None = None,
    secret: bool = False,
    validate: Callable[[Any], str | None] | None = None,
) -> Any:
    """A setting: its default, help text and checks. ``validate`` returns a complaint or None."""
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "secret": secret,
        "validate": validate,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


KiB = 1024
MiB = 1024**2
GiB = 1024**3


def _rungs_problem(rungs: list[str]) -> str | None:
    for rung in rungs:
        if not (rung.endswith("p") and rung[:-1].isdigit() and 144 <= int(rung[:-1]) <= 4320):
            return f"{rung!r} is not a height like 720p (144p-4320p)"
    return None if rungs else "at least one rendition is needed"


def _formats_problem(formats: list[str]) -> str | None:
    from vidbox.uploads.validation import DISPLAY_NAMES as KNOWN

    unknown = [f for f in formats if f not in KNOWN]
    if unknown:
        return f"unknown format {unknown[0]!r}; known: {', '.join(KNOWN)}"
    return None if formats else "at least one format is needed"


def _url_problem(url: str) -> str | None:
    if url and not url.startswith(("http://", "https://")):
        return f"{url!r} must start with http:// or https://"
    return None


def _database_url_problem(url: str) -> str | None:
    # Never quote the value: it may hold a password.
    if url and not url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
        return "must start with postgresql+asyncpg:// (only PostgreSQL is supported)"
    return None


SECRET_KEY_MIN_CHARS = 32


def _secret_key_problem(key: str) -> str | None:
    # Never quote the value.
    if key and len(key) < SECRET_KEY_MIN_CHARS:
        return (
            f"must be at least {SECRET_KEY_MIN_CHARS} characters "
            "(e.g. from: openssl rand -base64 48)"
        )
    return None


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP server."""

    host: str = option(
        "127.0.0.1", "Address to listen on. Use 0.0.0.0 to let other machines connect."
    )
    port: int = option(8080, "TCP port to listen on.", min=1, max=65535)
    base_url: str = option(
        "",
        "Public URL of this box, e.g. https://videos.example.org. Used in emails and share "
        "links, and turns on Secure cookies when it starts with https. Empty: links in mail "
        "use host:port (with 0.0.0.0 or trusted proxies, the address /setup was completed "
        "on), never a request's Host header; pages use the request's URL.",
        validate=_url_problem,
    )
    trusted_proxies: list[str] = option(
        [],
        "Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are "
        'believed, e.g. ["127.0.0.1"].',
    )
    name: str = option("vidbox", "Name of this box, shown in the page header and in emails.")
    max_header_line_bytes: int = option(
        16 * KiB,
        "Longest request line or header line accepted, in bytes; longer ones are answered 414 "
        "or 431. Browsers send a few KiB; cookies for this box stay under 1 KiB.",
        min=1024,
    )
    max_header_bytes: int = option(
        64 * KiB,
        "Largest request head (request line and all headers) accepted, in bytes; larger ones "
        "are answered 431 before they are held in memory.",
        min=4 * KiB,
    )
    header_timeout_seconds: int = option(
        30,
        "A client has this long to send a request's headers once it has connected or had "
        "its previous answer; then 408 and the connection is closed.",
        min=1,
    )
    body_idle_seconds: int = option(
        60,
        "A request body from which no byte arrives for this long is cut off: the connection "
        "is closed, the bytes received so far are kept (a resumable upload goes on from "
        "there) and the upload is free for the client's next attempt.",
        min=1,
    )
    secret_key: str = option(
        "",
        "Key that signs cookies, CSRF tokens and share links, at least 32 characters. Every "
        "process of one box must have the same one; required with database.url. Empty: a key "
        "generated once in <data dir>/secret.key.",
        secret=True,
        validate=_secret_key_problem,
    )
    role: str = option(
        "all",
        "What this process does: all (web and processing), web (serves HTTP, runs no jobs) "
        "or worker (processes jobs and cleanup, listens on no port).",
        choices=("all", "web", "worker"),
    )
    max_connections_per_client: int = option(
        64,
        "Open connections one address may have at once; more are answered 429 and closed. "
        "Trusted proxies are not limited. 0: no limit.",
        min=0,
    )


@dataclass(frozen=True)
class StorageSettings:
    """Where media files live."""

    backend: str = option("local", "Storage backend.", choices=("local", "s3"))
    path: str = option("", "local: folder for media files. Empty: <data dir>/media.")
    endpoint: str = option("", "s3: host[:port] of the S3 or MinIO server.")
    bucket: str = option("vidbox", "s3: bucket name; created if missing.")
    access_key: str = option("", "s3: access key.", secret=True)
    secret_key: str = option("", "s3: secret key.", secret=True)
    region: str = option("us-east-1", "s3: region.")
    secure: bool = option(True, "s3: use https to reach the endpoint.")
    serve: str = option(
        "proxy",
        "s3: how media reaches browsers: proxy (through vidbox) or redirect (short-lived "
        "presigned URLs; browsers must reach the S3 endpoint).",
        choices=("proxy", "redirect"),
    )
    presign_seconds: int = option(
        300, "s3: lifetime of presigned URLs in redirect mode.", min=10, max=604800
    )


@dataclass(frozen=True)
class DatabaseSettings:
    """Metadata database."""

    path: str = option("", "SQLite file. Empty: <data dir>/vidbox.db.")
    url: str = option(
        "",
        "PostgreSQL instead of SQLite, e.g. postgresql+asyncpg://vidbox@db.example.org:5432/"
        "vidbox (a password may be in the URL or in database.password). Empty: SQLite at "
        "database.path.",
        secret=True,
        validate=_database_url_problem,
    )
    password: str = option(
        "", "PostgreSQL password, when database.url does not hold one.", secret=True
    )


@dataclass(frozen=True)
class UploadSettings:
    """Uploads."""

    max_bytes: int = option(2 * GiB, "Largest accepted video, in bytes.", min=1)
    allowed_formats: list[str] = option(
        ["mp4", "mov", "avi", "webm", "mkv"],
        "File extensions accepted for upload (of mp4, mov, avi, webm, mkv).",
        validate=_formats_problem,
    )
    quota_bytes: int = option(0, "Per-user storage quota in bytes; 0 means no quota.", min=0)
    expire_hours: int = option(
        24, "Unfinished resumable uploads are deleted after this many idle hours.", min=1
    )
    reserve_bytes: int = option(
        256 * MiB,
        "New uploads are refused (507) while the free space on the disk of the uploads folder "
        "is below this, so the database and processing keep room to work.",
        min=0,
    )
    part_bytes: int = option(
        64 * MiB,
        "The web UI sends a video in requests of this many bytes. Keep it below the body "
        "limit of any reverse proxy in front of vidbox (Cloudflare: 100 MB); each request "
        "costs a pause, so smaller parts upload more slowly.",
        min=256 * 1024,
    )
    spool_dir: str = option(
        "",
        "Folder for the bytes of uploads still arriving. Empty: <data dir>/spool. Web "
        "processes that share one database (on one host or on several, e.g. over NFS) name "
        "the same folder, so any of them can take the next part of an upload.",
    )


@dataclass(frozen=True)
class ProcessingSettings:
    """Transcoding."""

    concurrency: int = option(1, "Videos processed at the same time.", min=1, max=64)
    renditions: list[str] = option(
        ["360p", "480p", "720p", "1080p"],
        "HLS ladder; rungs above the source's resolution are skipped.",
        validate=_rungs_problem,
    )
    segment_seconds: int = option(6, "Target HLS segment length in seconds.", min=1, max=60)
    preset: str = option(
        "veryfast",
        "x264 preset: slower presets give smaller files for more CPU time.",
        choices=(
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ),
    )
    hwaccel: str = option(
        "none",
        "Hardware encoder. Only none (software x264) is supported so far.",
        choices=("none",),
    )
    timeout_minutes: int = option(
        5,
        "Each processing attempt may run max(timeout_minutes, timeout_factor x the video's "
        "duration); past that it is stopped and retried.",
        min=1,
    )
    timeout_factor: int = option(
        20,
        "Processing time allowed per second of video (see timeout_minutes).",
        min=1,
        max=1000,
    )
    lease_seconds: int = option(
        60,
        "A running job is claimed for this long and renewed every third of it; when a worker "
        "dies (its host lost power, kill -9), another worker takes its jobs once the claim "
        "runs out. Shorter retakes sooner, at the cost of more database writes.",
        min=5,
        max=3600,
    )
    max_pixels: int = option(
        7680 * 4320,
        "Videos with more pixels per frame than this are refused (default: 7680x4320, 8K).",
        min=64 * 64,
    )
    max_duration_hours: int = option(12, "Videos longer than this are refused.", min=1)
    max_fps: int = option(240, "Videos with more frames per second than this are refused.", min=1)
    ffmpeg_memory_bytes: int = option(
        0,
        "Most memory (address space) one FFmpeg process may use. 0: sized to this machine, "
        "4 GiB plus 128 MiB per CPU (FFmpeg starts more threads, each with its own stack, "
        "on more CPUs).",
        min=0,
    )


@dataclass(frozen=True)
class EmailSettings:
    """Outgoing mail (share notifications, private-link sign-in). Off while host is empty."""

    host: str = option("", "SMTP server. Empty: email is off.")
    port: int = option(587, "SMTP port.", min=1, max=65535)
    security: str = option(
        "starttls",
        "starttls (refuses servers that do not offer it), tls (implicit TLS, port 465) or none.",
        choices=("starttls", "tls", "none"),
    )
    username: str = option("", "SMTP user name; empty for no authentication.")
    password: str = option("", "SMTP password.", secret=True)
    from_address: str = option("", "Sender address, e.g. vidbox@example.org.")


@dataclass(frozen=True)
class AuthSettings:
    """Accounts and sign-in."""

    registration: str = option(
        "closed",
        "Who may create an account: closed (admins add users), invite (admins send invite "
        "links) or open (anyone who can reach the box).",
        choices=("closed", "invite", "open"),
    )
    session_days: int = option(30, "Browser sign-in lasts this many days.", min=1)
    access_token_minutes: int = option(15, "Lifetime of API access tokens.", min=1, max=1440)
    refresh_token_days: int = option(30, "Lifetime of API refresh tokens.", min=1)
    stream_recheck_seconds: int = option(
        30,
        "Open live-update streams check this often (and before each update) that their "
        "sign-in is still valid, and end once it is not.",
        min=1,
        max=3600,
    )


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "database": DatabaseSettings,
    "uploads": UploadSettings,
    "processing": ProcessingSettings,
    "email": EmailSettings,
    "auth": AuthSettings,
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    config_file: Path | None = None
    # Human-readable list of where values came from, logged at start-up.
    sources: tuple[str, ...] = ()

    @property
    def database_path(self) -> Path:
        return Path(self.database.path) if self.database.path else self.data_dir / "vidbox.db"

    @property
    def spool_dir(self) -> Path:
        return Path(self.uploads.spool_dir) if self.uploads.spool_dir else self.data_dir / "spool"

    @property
    def media_dir(self) -> Path:
        return Path(self.storage.path) if self.storage.path else self.data_dir / "media"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def email_enabled(self) -> bool:
        return bool(self.email.host)
