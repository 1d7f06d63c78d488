"""The ASGI application: ``create_app(settings)`` wires routes, middleware and the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from vidbox.auth.firstrun import setup_token
from vidbox.config import Settings
from vidbox.health import DataDirWatch
from vidbox.jobs.hostsweep import HostSweeper
from vidbox.jobs.runner import JobRunner
from vidbox.jobs.tasks import all_handlers
from vidbox.logs import log_fields
from vidbox.mail.origin import mail_origin, unset_base_url_warning
from vidbox.services import open_services
from vidbox.web import routes
from vidbox.web.errors import EXCEPTION_HANDLERS
from vidbox.web.middleware import RequestContextMiddleware
from vidbox.web.templating import make_templates

log = logging.getLogger("vidbox")


def public_base_url(settings: Settings) -> str:
    if settings.server.base_url:
        return settings.server.base_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (naming the wildcard, not binding it)
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


def setup_url(settings: Settings, token: str) -> str:
    return f"{public_base_url(settings)}/setup?token={token}"


def _data_lost(app: Starlette, why: str) -> None:
    """The data folder or the database went away under the running server: say so, and stop
    the server if whoever runs it said how (``app.state.stop_server``; `vidbox serve` then
    exits with status 1). Otherwise /readyz answers 503 from now on."""
    log.critical(
        "The data folder is gone or was replaced while vidbox was running; stopping, so that "
        "nothing more is written into deleted files. Restore it, then start vidbox again.",
        extra=log_fields(problem=why),
    )
    stop = getattr(app.state, "stop_server", None)
    if stop is not None:
        stop()


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            # Other processes' revocations and enqueues reach this one (PostgreSQL).
            await services.db.listen()
            log.info(
                "vidbox is starting",
                extra=log_fields(
                    data_dir=settings.data_dir,
                    database=services.db.describe(),
                    config=", ".join(settings.sources),
                ),
            )
            if services.mailer.enabled and not settings.server.base_url:
                origin = await mail_origin(settings, services.db)
                log.warning(unset_base_url_warning(origin))
            # This host's spool and temp folders: now (before the first request, so what a
            # killed process left is gone) and hourly, in every process of every role.
            sweeper = HostSweeper(services)
            await sweeper.start()
            watch = DataDirWatch(
                settings.data_dir, settings.database_path, lambda why: _data_lost(app, why)
            )
            watching = asyncio.create_task(watch.run())
            # A web-only process leaves the queue to the workers (vidbox.worker); what it
            # enqueues wakes them through the database.
            runner = JobRunner(services, all_handlers()) if settings.server.role == "all" else None
            app.state.runner = runner  # for tests and tools: no request path needs it
            if runner is not None:
                await runner.start()
            # The box's one link: every process of the box prints the same until it is used.
            token = await setup_token(services.db, services.secret_key)
            if token:
                log.warning(
                    "No account exists yet. Open this one-time link to create the first admin",
                    extra=log_fields(url=setup_url(settings, token)),
                )
            # Everything built so far (modules, models, templates, the app) lives as long as
            # the process. Left in the collector's oldest generation, each full collection
            # walks all of it: 30-50 ms pauses that made most of the serving p99
            # (bench/serving.py: p99 110-140 ms -> 58-83 ms with the freeze).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                watching.cancel()
                await sweeper.stop()
                gc.unfreeze()
                # Running jobs are put back in the queue and resume on the next start.
                if runner is not None:
                    await runner.stop()
                app.state.runner = None

    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(
                RequestContextMiddleware,
                https=settings.server.base_url.startswith("https://"),
            )
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.templates = make_templates(settings)
    return app
