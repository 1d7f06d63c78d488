"""The ``vidbox`` command: serve, check, user, storage and database administration."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from vidbox import __version__
from vidbox.app import create_app, public_base_url
from vidbox.cli_options import box_options, box_settings
from vidbox.datadir import prepare_data_dir
from vidbox.http.listen import ListenError, bind_listening_socket
from vidbox.http.server import Server, uvicorn_config
from vidbox.logs import configure_logging, log_fields

log = logging.getLogger("vidbox")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="vidbox")
@box_options
def cli() -> None:
    """vidbox: a self-hosted video box for homes and small teams."""


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1; 0.0.0.0 for everyone).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default 8080).")
@click.option(
    "--role",
    type=click.Choice(["all", "web", "worker"]),
    help="all: web and processing (default); web: HTTP only, no jobs; worker: jobs and "
    "cleanup only, no port (default: server.role).",
)
@box_options
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
    help="How much to log.",
)
def serve(host: str | None, port: int | None, role: str | None, log_level: str) -> None:
    """Run the box: web UI, API and video processing (or, with --role, one of them)."""
    configure_logging(log_level.upper())
    settings = box_settings(host=host, port=port, role=role)
    try:
        prepare_data_dir(settings)
    except OSError as exc:
        raise click.ClickException(
            f"cannot use data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    if settings.server.role == "worker":
        from vidbox.worker import run_worker

        log.info(
            "configuration loaded",
            extra=log_fields(sources="; ".join(settings.sources), data_dir=settings.data_dir),
        )
        sys.exit(asyncio.run(run_worker(settings)))
    try:
        sock = bind_listening_socket(settings.server.host, settings.server.port)
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None
    log.info(
        "configuration loaded",
        extra=log_fields(sources="; ".join(settings.sources), data_dir=settings.data_dir),
    )
    log.info("open vidbox", extra=log_fields(url=public_base_url(settings) + "/"))
    app = create_app(settings)
    server = Server(uvicorn_config(app, settings))
    failed: list[bool] = []

    def stop_on_failure() -> None:
        failed.append(True)
        server.should_exit = True

    app.state.stop_server = stop_on_failure
    server.run(sockets=[sock])
    if not server.started or failed:
        sys.exit(1)


@cli.command()
@box_options
@click.option(
    "--send-test-mail", "test_address", metavar="ADDRESS", help="Also send a test email there."
)
def check(test_address: str | None) -> None:
    """Diagnose this box: configuration, data directory, database, FFmpeg, storage, email."""
    from vidbox.diagnose import diagnose

    settings = box_settings()
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
    from vidbox.cli_db import db
    from vidbox.cli_storage import storage
    from vidbox.cli_users import user

    cli.add_command(user)
    cli.add_command(storage)
    cli.add_command(db)


_register_subcommands()


def main() -> None:
    # Keep the CLI's own messages readable when stdout is a pipe (tests, systemd).
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
