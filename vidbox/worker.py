"""`vidbox serve --role worker`: the job runner (and with it the box's periodic cleanup job)
and this host's sweeps, without a web server. It needs only the database and the media store;
it binds no port, so any number of workers can run beside the web processes, on this host or
others."""

from __future__ import annotations

import asyncio
import logging
import signal

from vidbox.config import Settings
from vidbox.health import DataDirWatch
from vidbox.jobs.hostsweep import HostSweeper
from vidbox.jobs.runner import JobRunner
from vidbox.jobs.tasks import all_handlers
from vidbox.logs import log_fields
from vidbox.services import open_services

log = logging.getLogger("vidbox")


async def run_worker(settings: Settings) -> int:
    """Process jobs until SIGTERM or SIGINT; then put running jobs back (as the server does on
    shutdown) and return 0. Returns 1 when the data folder went away under it."""
    stop = asyncio.Event()
    lost: list[str] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def data_lost(why: str) -> None:
        log.critical(
            "The data folder is gone or was replaced while vidbox was running; stopping.",
            extra=log_fields(problem=why),
        )
        lost.append(why)
        stop.set()

    async with open_services(settings) as services:
        log.info(
            "vidbox worker is starting",
            extra=log_fields(
                data_dir=settings.data_dir,
                database=services.db.describe(),
                config=", ".join(settings.sources),
            ),
        )
        watch = DataDirWatch(settings.data_dir, settings.database_path, data_lost)
        watching = asyncio.create_task(watch.run())
        await services.db.listen()  # wake-ups from the web processes' enqueues
        # This host's temp folders and spool; the box-wide cleanup is a job like any other.
        sweeper = HostSweeper(services)
        await sweeper.start()
        runner = JobRunner(services, all_handlers())
        await runner.start()
        try:
            await stop.wait()
        finally:
            watching.cancel()
            await sweeper.stop()
            await runner.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    return 1 if lost else 0
