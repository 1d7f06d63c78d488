"""Options every ``vidbox`` command shares, and the settings they lead to.

``--config`` and ``--data-dir`` are accepted before or after the subcommand (``vidbox
--data-dir X check`` and ``vidbox check --data-dir X``); the one nearest the end wins."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vidbox.config import ConfigError, Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])
_BOX = "vidbox.box"


def _remember(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    # Parents parse before their subcommands, so a later (inner) value replaces an outer one.
    if value is not None and param.name:
        ctx.find_root().meta.setdefault(_BOX, {})[param.name] = value


def box_options(fn: F) -> F:
    """Add --config and --data-dir to a command or group."""
    fn = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="TOML config file (default: $VIDBOX_CONFIG, else built-in defaults).",
    )(fn)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="Where vidbox keeps its database, key and media (default: $VIDBOX_DATA_DIR, "
        "else $XDG_DATA_HOME/vidbox).",
    )(fn)


def settings_from(config_file: Path | None, data_dir: Path | None, **server: Any) -> Settings:
    """Settings for a command; a wrong value ends the command with one line, no traceback."""
    try:
        settings = load_settings(config_file=config_file, data_dir=data_dir)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    overrides = {k: v for k, v in server.items() if v is not None}
    if overrides:
        settings = dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, **overrides)
        )
    return settings


def box_settings(**server: Any) -> Settings:
    """Settings for the running command, from --config/--data-dir wherever they were given."""
    box = click.get_current_context().find_root().meta.get(_BOX, {})
    return settings_from(box.get("config_file"), box.get("data_dir"), **server)
