"""Settings: one schema, read from vidbox.toml and ``VIDBOX_*`` environment variables.

Every setting is a field of a frozen dataclass below. Its metadata carries the help text and
the checks, so the dataclasses *are* the schema: loading, validation, ``vidbox.toml.example``
and ``vidbox check`` all read them, and nothing else lists the settings again.

Precedence, lowest first: built-in defaults, the TOML file, ``VIDBOX_<SECTION>__<KEY>``
environment variables. A secret may also come from ``VIDBOX_<SECTION>__<KEY>_FILE`` (a path whose
content is the value), which is how container secrets are usually mounted.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
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


GiB = 1024**3


def _rungs_problem(rungs: list[str]) -> str | None:
    for rung in rungs:
        if not (rung.endswith("p") and rung[:-1].isdigit() and 144 <= int(rung[:-1]) <= 4320):
            return f"{rung!r} is not a height like 720p (144p-4320p)"
    return None if rungs else "at least one rendition is needed"


def _url_problem(url: str) -> str | None:
    if url and not url.startswith(("http://", "https://")):
        return f"{url!r} must start with http:// or https://"
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
        "links, and turns on Secure cookies when it starts with https. Empty: taken from "
        "each request.",
        validate=_url_problem,
    )
    trusted_proxies: list[str] = option(
        [],
        "Addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto headers are "
        'believed, e.g. ["127.0.0.1"].',
    )
    name: str = option("vidbox", "Name of this box, shown in the page header and in emails.")


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


@dataclass(frozen=True)
class UploadSettings:
    """Uploads."""

    max_bytes: int = option(2 * GiB, "Largest accepted video, in bytes.", min=1)
    allowed_formats: list[str] = option(
        ["mp4", "mov", "avi", "webm", "mkv"], "File extensions accepted for upload."
    )
    quota_bytes: int = option(0, "Per-user storage quota in bytes; 0 means no quota.", min=0)
    expire_hours: int = option(
        24, "Unfinished resumable uploads are deleted after this many idle hours.", min=1
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
        240, "A processing job running longer than this is stopped and retried.", min=1
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
        return self.data_dir / "spool"

    @property
    def media_dir(self) -> Path:
        return Path(self.storage.path) if self.storage.path else self.data_dir / "media"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def email_enabled(self) -> bool:
        return bool(self.email.host)


def default_data_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "vidbox"


def _type_name(tp: Any) -> str:
    return {int: "an integer", bool: "true or false", str: "a string"}.get(tp, "a list of strings")


def _coerce(raw: Any, tp: Any, *, from_env: bool) -> Any:
    """Turn ``raw`` into ``tp`` or raise ValueError. TOML values must already have the type;
    environment values are strings and are parsed."""
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str):
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
        raise ValueError
    if tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str):
            return int(raw.strip().replace("_", ""))
        raise ValueError
    if tp is str:
        if isinstance(raw, str):
            return raw
        raise ValueError
    # list[str]
    if from_env and isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return list(raw)
    raise ValueError


def _field_type(f: dataclasses.Field[Any], owner: type) -> Any:
    hints = typing.get_type_hints(owner)
    tp = hints[f.name]
    if isinstance(tp, types.GenericAlias):
        return list
    return tp


def _check(section: str, f: dataclasses.Field[Any], value: Any, source: str) -> None:
    meta = f.metadata
    key = f"{section}.{f.name}"
    if meta.get("choices") and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        raise ConfigError(f"{key}: {value!r} is not one of {allowed} (from {source})")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value} is below the minimum {meta['min']} (from {source})")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value} is above the maximum {meta['max']} (from {source})")
    problem = meta["validate"](value) if meta.get("validate") else None
    if problem:
        raise ConfigError(f"{key}: {problem} (from {source})")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def _env_values(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, key) -> (raw value, source) for every VIDBOX_<SECTION>__<KEY>[_FILE]."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        cls = SECTIONS.get(section)
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
        if key.endswith("_file") and key[:-5] in fields and fields[key[:-5]].metadata["secret"]:
            try:
                raw = Path(raw).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{name}: cannot read {raw}: {exc.strerror}") from None
            key = key[:-5]
        if key not in fields:
            raise ConfigError(f"{name}: no such setting {section}.{key} (from environment)")
        found[(section, key)] = (raw, f"environment {name}")
    return found


def load_settings(
    *,
    config_file: Path | str | None = None,
    data_dir: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, an optional TOML file and the environment.

    ``config_file`` and ``data_dir`` are the command-line values; when None, ``VIDBOX_CONFIG``
    and ``VIDBOX_DATA_DIR`` are used. Raises ConfigError with a one-line message.
    """
    env = os.environ if environ is None else environ
    sources: list[str] = []
    config_path = config_file or env.get("VIDBOX_CONFIG") or None
    file_values: dict[str, Any] = {}
    if config_path:
        config_path = Path(config_path).expanduser().resolve()
        file_values = _read_toml(config_path)
        sources.append(f"file {config_path}")
    env_values = _env_values(env)
    if env_values:
        names = sorted(src.removeprefix("environment ") for _, src in env_values.values())
        sources.append("environment " + ", ".join(names))

    for section in file_values:
        if section not in SECTIONS or not isinstance(file_values[section], dict):
            raise ConfigError(f"{section}: unknown section (from {config_path})")

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        given = file_values.get(section, {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in given:
            if key not in fields:
                raise ConfigError(f"{section}.{key}: unknown setting (from {config_path})")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            tp = _field_type(f, cls)
            if (section, name) in env_values:
                raw, source = env_values[(section, name)]
                from_env = True
            elif name in given:
                raw, source = given[name], str(config_path)
                from_env = False
            else:
                continue
            try:
                value = _coerce(raw, tp, from_env=from_env)
            except ValueError:
                shown = "(hidden)" if f.metadata["secret"] else repr(raw)
                raise ConfigError(
                    f"{section}.{name}: expected {_type_name(tp)}, got {shown} (from {source})"
                ) from None
            _check(section, f, value, source)
            values[name] = value
        built[section] = cls(**values)

    check_cross_field(built)

    data = data_dir or env.get("VIDBOX_DATA_DIR") or default_data_dir(env)
    return Settings(
        data_dir=Path(data).expanduser().resolve(),
        config_file=Path(config_path) if config_path else None,
        sources=tuple(sources) or ("defaults only",),
        **built,
    )


def check_cross_field(built: dict[str, Any]) -> None:
    """Rules that involve more than one key; ``built`` maps section names to sections."""
    storage: StorageSettings = built["storage"]
    if storage.backend == "s3":
        for name in ("endpoint", "bucket", "access_key", "secret_key"):
            if not getattr(storage, name):
                raise ConfigError(f"storage.{name}: must be set when storage.backend is s3")
    email: EmailSettings = built["email"]
    if email.host and not email.from_address:
        raise ConfigError("email.from_address: must be set when email.host is set")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_example() -> str:
    """The text of vidbox.toml.example: every setting, commented out, with its default."""
    lines = [
        "# vidbox configuration. Every setting is shown with its default value, commented out.",
        "# Use it with `vidbox serve --config FILE` or VIDBOX_CONFIG=FILE. Any key can also be",
        "# set in the environment as VIDBOX_<SECTION>__<KEY>, e.g. VIDBOX_SERVER__PORT=9000,",
        "# and secrets as VIDBOX_<SECTION>__<KEY>_FILE=/run/secrets/name.",
        "# The data directory is chosen with --data-dir or VIDBOX_DATA_DIR",
        "# (default: $XDG_DATA_HOME/vidbox, /data in the container).",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]", f"# {cls.__doc__}"]
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            lines.append("")
            lines += [f"# {chunk}" for chunk in _wrap(f.metadata["help"])]
            lines.append(f"# {f.name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 96) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out


if __name__ == "__main__":
    print(render_example(), end="")
