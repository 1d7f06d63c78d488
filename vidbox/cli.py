"""The ``vidbox`` command: serve, check, user and storage administration."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import uvicorn

from vidbox import __version__
from vidbox.app import create_app, public_base_url
from vidbox.config import ConfigError, Settings, load_settings
from vidbox.datadir import prepare_data_dir
from vidbox.logs import configure_logging, log_fields
from vidbox.server import uvicorn_config

log = logging.getLogger("vidbox")

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (default: $VIDBOX_CONFIG, else built-in defaults).",
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where vidbox keeps its database, key and media (default: $VIDBOX_DATA_DIR, "
    "else $XDG_DATA_HOME/vidbox).",
)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="vidbox")
def cli() -> None:
    """vidbox: a self-hosted video box for homes and small teams."""


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for everyone).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default 8080).")
@config_option
@data_dir_option
@click.option("--log-level", default="info", show_default=True, help="debug, info or warning.")
def serve(
    host: str | None,
    port: int | None,
    config_file: Path | None,
    data_dir: Path | None,
    log_level: str,
) -> None:
    """Run the whole box: web UI, API and video processing."""
    configure_logging(log_level.upper())
    settings = settings_from(config_file, data_dir, host=host, port=port)
    try:
        prepare_data_dir(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot use data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    log.info(
        "configuration loaded",
        extra=log_fields(sources="; ".join(settings.sources), data_dir=settings.data_dir),
    )
    log.info("open vidbox", extra=log_fields(url=public_base_url(settings) + "/"))
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    failed: list[bool] = []

    def stop_on_failure() -> None:
        failed.append(True)
        server.should_exit = True

    app.state.stop_server = stop_on_failure
    server.run()
    if not server.started or failed:
        sys.exit(1)


@cli.command()
@config_option
@data_dir_option
@click.option(
    "--send-test-mail", "test_address", metavar="ADDRESS", help="Also send a test email there."
)
def check(config_file: Path | None, data_dir: Path | None, test_address: str | None) -> None:
    """Diagnose this box: configuration, data directory, database, FFmpeg, storage, email."""
    from vidbox.diagnose import diagnose

    settings = settings_from(config_file, data_dir)
    results = asyncio.run(diagnose(settings, test_address=test_address))
    click.echo(f"vidbox {__version__}")
    width = max(len(r.name) for r in results)
    for r in results:
        mark = click.style("ok  ", fg="green") if r.ok else click.style("FAIL", fg="red")
        click.echo(f"  {mark}  {r.name.ljust(width)}  {r.detail}")
    failed = [r for r in results if not r.ok]
    if failed:
        click.echo(f"{len(failed)} check(s) failed.", err=True)
        sys.exit(1)
    click.echo("All checks passed.")


def _register_subcommands() -> None:
    from vidbox.cli_storage import storage
    from vidbox.cli_users import user

    cli.add_command(user)
    cli.add_command(storage)


_register_subcommands()


def main() -> None:
    # Keep the CLI's own messages readable when stdout is a pipe (tests, systemd).
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
