"""Reading settings from defaults, a TOML file and the environment, with one-line errors."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vidbox.config.schema import (
    ENV_PREFIX,
    SECTIONS,
    ConfigError,
    DatabaseSettings,
    EmailSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)


def default_data_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "vidbox"


def _type_name(tp: Any) -> str:
    return {int: "an integer", bool: "true or false", str: "a string"}.get(
        tp, 'a list of strings (in the environment: a,b,c or ["a", "b"])'
    )


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
    # list[str]: in the environment either a TOML/JSON array or comma-separated words.
    if from_env and isinstance(raw, str):
        if raw.strip().startswith("["):
            try:
                raw = tomllib.loads(f"value = {raw}")["value"]
            except tomllib.TOMLDecodeError:
                raise ValueError from None
        else:
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
    database: DatabaseSettings = built["database"]
    server: ServerSettings = built["server"]
    if database.url and not server.secret_key:
        # Each process would otherwise sign with a key of its own data dir.
        raise ConfigError(
            "server.secret_key: must be set when database.url is set, the same in every "
            "process of the box"
        )
    email: EmailSettings = built["email"]
    if email.host and not email.from_address:
        raise ConfigError("email.from_address: must be set when email.host is set")
