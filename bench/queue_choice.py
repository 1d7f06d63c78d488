"""vidbox's own job queue against procrastinate, on one PostgreSQL, with 2 worker processes.

    python bench/queue_choice.py [--postgres URL] [--samples 30] [--jobs 2000]
                                 [--subjects vidbox-small,vidbox-media,procrastinate]

procrastinate is a bench-only extra, not a vidbox dependency: install it into the same
virtualenv first, ``.venv/bin/pip install procrastinate`` (it brings psycopg 3, which needs
libpq: Debian's ``libpq5``). Without it the script says so and exits with status 2.

Each subject gets a database of its own on the ``--postgres`` server (or VIDBOX_TEST_POSTGRES;
created and dropped here). This process enqueues; 2 worker processes of this script
(``--worker``, one job at a time each) run a no-op handler that only appends "key time" to
a file of its own, so the start of every run is seen and counted the same way for both.

- ``vidbox-small``: vidbox.jobs.queue.enqueue, claimed by a JobRunner on the small lane
  (claim_next: ``FOR UPDATE SKIP LOCKED``, oldest first). The baseline of every ratio.
- ``vidbox-media``: the same on the media lane, whose claim is the per-user fair pick
  (vidbox.jobs.fairness; the jobs have no video, so they form one group).
- ``procrastinate``: ``defer_async`` / ``batch_defer_async`` from this process,
  ``App.run_worker_async(concurrency=1)`` in each worker (PsycopgConnector, LISTEN/NOTIFY on).

1. Latency: ``--samples`` single jobs with a random pause (50-300 ms) between, from just
   before the enqueue call (its commit included) to the handler's start in the other
   process; p50/p95/max. Both wake through LISTEN/NOTIFY (each polls only as a fallback:
   vidbox every 1 s, procrastinate every 5 s). Three warm-up jobs go first, uncounted.
2. Throughput: ``--jobs`` no-op jobs enqueued in one transaction (vidbox: ``enqueue`` per job,
   procrastinate: one batch defer), until the database shows all of them finished; jobs/s
   over enqueue + drain.
3. Exactly once: every job's key must appear once in the workers' files, and every job
   must be finished in the database.

Both processes and PostgreSQL share this machine's cores, so the figures are of the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO, clean_env, load_note, percentile, ratio, stop_process
from scale import KEY, _dsn, create_database, drop_database

from vidbox.config import load_settings
from vidbox.jobs import MEDIA_LANE, SMALL_LANE, JobContext
from vidbox.jobs.queue import enqueue
from vidbox.jobs.runner import JobRunner
from vidbox.services import open_services

NOOP = "bench_noop"
WORKERS = 2
SUBJECTS = ("vidbox-small", "vidbox-media", "procrastinate")
LANE = {"vidbox-small": SMALL_LANE, "vidbox-media": MEDIA_LANE}


def have_procrastinate() -> bool:
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        return False
    return True


def quiet_procrastinate() -> None:
    # It warns that an App made in __main__ may not find tasks by import path; tasks here are
    # registered and deferred by name (NOOP), so that does not apply.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


# --- the worker processes --------------------------------------------------------------


def _recorder(out: str) -> Callable[[str], None]:
    """Appends "key unix-time" per run; O_APPEND + one write per line, nothing buffered."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def record(key: str) -> None:
        os.write(fd, f"{key} {time.time():.6f}\n".encode())

    return record


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def vidbox_worker(data_dir: str, lane: str, out: str) -> None:
    record = _recorder(out)

    async def noop(ctx: JobContext) -> None:
        record(str(ctx.payload["key"]))

    settings = load_settings(data_dir=data_dir)
    async with open_services(settings) as services:
        await services.db.listen()
        await asyncio.wait_for(services.db.bus.connected.wait(), 10)
        other = MEDIA_LANE if lane == SMALL_LANE else SMALL_LANE
        runner = JobRunner(services, {NOOP: noop}, concurrency={lane: 1, other: 0}, startup_jobs=())
        await runner.start()
        print("ready", flush=True)
        await _until_sigterm()
        await runner.stop()


async def procrastinate_worker(dsn: str, out: str) -> None:
    import procrastinate

    quiet_procrastinate()
    record = _recorder(out)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name=NOOP)
    async def noop(key: str) -> None:
        record(key)

    async with app.open_async():
        # Its own SIGTERM/SIGINT handlers stop it gracefully and make this return.
        worker = asyncio.create_task(app.run_worker_async(concurrency=1, delete_jobs="never"))
        await asyncio.sleep(0.5)  # its listener connects; the warm-up jobs cover the rest
        print("ready", flush=True)
        await worker


# --- the enqueuing side ----------------------------------------------------------------


@dataclass
class Runs:
    """What the workers' files say: key -> [(start time, worker index)]."""

    files: list[Path]
    seen: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _offsets: list[int] = field(default_factory=list)

    def read(self) -> None:
        if not self._offsets:
            self._offsets = [0] * len(self.files)
        for n, path in enumerate(self.files):
            if not path.exists():
                continue
            with path.open("rb") as fh:
                fh.seek(self._offsets[n])
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1  # a line being written is read next time
            self._offsets[n] += end
            for line in chunk[:end].decode().splitlines():
                key, at = line.split()
                self.seen.setdefault(key, []).append((float(at), n))

    async def started(self, key: str, within: float = 15) -> float:
        deadline = time.monotonic() + within
        while key not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker started job {key} within {within:.0f} s")
            await asyncio.sleep(0.002)
            self.read()
        return self.seen[key][0][0]


@dataclass
class Result:
    latencies: list[float]
    enqueue_s: float
    total_s: float
    per_worker: list[int]
    expected: int
    ran: int
    duplicated: int
    missing: int
    unfinished: int


Enqueue = Callable[[str], Awaitable[None]]


async def measure(
    enqueue_one: Enqueue,
    enqueue_many: Callable[[list[str]], Awaitable[None]],
    finished: Callable[[], Awaitable[int]],
    runs: Runs,
    samples: int,
    jobs: int,
) -> Result:
    rng = random.Random(17)
    keys: list[str] = []
    for n in range(3):
        keys.append(f"warm-{n}")
        await enqueue_one(keys[-1])
        await runs.started(keys[-1], within=30)
    latencies = []
    for n in range(samples):
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        key = f"lat-{n}"
        keys.append(key)
        sent = time.time()
        await enqueue_one(key)
        latencies.append(await runs.started(key) - sent)

    before = await finished()
    batch = [f"tp-{n}" for n in range(jobs)]
    keys += batch
    began = time.monotonic()
    await enqueue_many(batch)
    enqueue_s = time.monotonic() - began
    deadline = began + 60 + jobs * 0.5
    while await finished() < before + jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{jobs} jobs not finished in {deadline - began:.0f} s")
        await asyncio.sleep(0.02)
    total_s = time.monotonic() - began

    await asyncio.sleep(1.0)  # a second run of some job would have started by now
    runs.read()
    counts = Counter({k: len(v) for k, v in runs.seen.items()})
    per_worker = [sum(1 for k in batch for _, w in runs.seen.get(k, []) if w == n) for n in (0, 1)]
    return Result(
        latencies=latencies,
        enqueue_s=enqueue_s,
        total_s=total_s,
        per_worker=per_worker,
        expected=len(keys),
        ran=sum(counts.values()),
        duplicated=sum(1 for k in keys if counts[k] > 1),
        missing=sum(1 for k in keys if counts[k] == 0),
        unfinished=len(keys) - await finished(),
    )


@dataclass
class Finished:
    """Counts finished jobs over a connection of its own (asyncpg, the same for both)."""

    dsn: str
    query: str
    conn: Any = None

    async def __call__(self) -> int:
        import asyncpg

        if self.conn is None:
            self.conn = await asyncpg.connect(self.dsn)
        return int(await self.conn.fetchval(self.query))

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def start_workers(args: list[list[str]], env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    procs = []
    try:
        for extra in args:
            proc = subprocess.Popen(
                [sys.executable, __file__, *extra], stdout=subprocess.PIPE, env=env, cwd=REPO
            )
            procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"worker {extra} did not start")
    except BaseException:
        for proc in procs:
            stop_process(proc)
        raise
    return procs


async def run_vidbox(url: str, lane: str, root: Path, samples: int, jobs: int) -> Result:
    env = {"VIDBOX_DATABASE__URL": url, "VIDBOX_SERVER__SECRET_KEY": KEY}
    settings = load_settings(data_dir=root / "enqueuer", environ=env)
    files = [root / f"worker-{n}.runs" for n in range(WORKERS)]
    async with open_services(settings) as services:  # migrates before the workers start
        worker_args = [
            ["--worker", "vidbox", "--lane", lane, "--data-dir", str(root / f"w{n}"),
             "--out", str(files[n])]
            for n in range(WORKERS)
        ]  # fmt: skip
        procs = start_workers(worker_args, clean_env(env))
        finished = Finished(
            _dsn(url), "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND kind = 'bench_noop'"
        )
        try:

            async def one(key: str) -> None:
                async with services.db.session() as session:
                    await enqueue(session, NOOP, {"key": key}, lane=lane)

            async def many(keys: list[str]) -> None:
                async with services.db.session() as session:
                    for key in keys:
                        await enqueue(session, NOOP, {"key": key}, lane=lane)

            return await measure(one, many, finished, Runs(files), samples, jobs)
        finally:
            await finished.close()
            for proc in procs:
                stop_process(proc)


async def run_procrastinate(url: str, root: Path, samples: int, jobs: int) -> Result:
    import procrastinate

    quiet_procrastinate()
    dsn = _dsn(url)
    files = [root / f"worker-{n}.runs" for n in range(WORKERS)]
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker_args = [
            ["--worker", "procrastinate", "--dsn", dsn, "--out", str(files[n])]
            for n in range(WORKERS)
        ]
        procs = start_workers(worker_args, clean_env())
        finished = Finished(
            dsn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        task = app.configure_task(NOOP)
        try:

            async def one(key: str) -> None:
                await task.defer_async(key=key)

            async def many(keys: list[str]) -> None:
                await task.batch_defer_async(*({"key": k} for k in keys))

            return await measure(one, many, finished, Runs(files), samples, jobs)
        finally:
            await finished.close()
            for proc in procs:
                stop_process(proc)


# --- report ----------------------------------------------------------------------------


def _ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def report(name: str, r: Result, base: Result | None) -> None:
    p50, p95 = _ms(r.latencies, 50), _ms(r.latencies, 95)
    rate = (r.expected - len(r.latencies) - 3) / r.total_s
    print(f"\n{name}")
    line = f"   1. enqueue -> start, {len(r.latencies)} jobs: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    line += f", max {max(r.latencies) * 1000:.1f} ms"
    if base is not None:
        line += f"  (p50 {ratio(p50, _ms(base.latencies, 50))}, p95 "
        line += f"{ratio(p95, _ms(base.latencies, 95))} the baseline's)"
    print(line)
    jobs = r.expected - len(r.latencies) - 3
    line = f"   2. {jobs} jobs: enqueued in {r.enqueue_s:.2f} s, all done after {r.total_s:.2f} s"
    line += f" = {rate:.0f} jobs/s; per worker {r.per_worker}"
    if base is not None:
        base_rate = (base.expected - len(base.latencies) - 3) / base.total_s
        line += f"  ({ratio(rate, base_rate)} the baseline's jobs/s)"
    print(line)
    once = r.duplicated == 0 and r.missing == 0 and r.unfinished == 0
    print(
        f"   3. exactly once: {r.expected} jobs, {r.ran} runs, {r.duplicated} run twice, "
        f"{r.missing} never ran, {r.unfinished} not finished -> {'yes' if once else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("VIDBOX_TEST_POSTGRES", ""))
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    for hidden in ("--worker", "--lane", "--data-dir", "--dsn", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "vidbox":
        asyncio.run(vidbox_worker(args.data_dir, args.lane, args.out))
        return 0
    if args.worker == "procrastinate":
        asyncio.run(procrastinate_worker(args.dsn, args.out))
        return 0
    subjects = [s for s in args.subjects.split(",") if s]
    if unknown := set(subjects) - set(SUBJECTS):
        parser.error(f"unknown subjects {sorted(unknown)}; known: {', '.join(SUBJECTS)}")
    if not args.postgres:
        print("needs a PostgreSQL server: --postgres postgresql+asyncpg://user@host:port/db")
        return 2
    if "procrastinate" in subjects and not have_procrastinate():
        print(
            "procrastinate is not installed (a bench-only extra): "
            f"{Path(sys.executable).parent / 'pip'} install procrastinate"
        )
        return 2
    print(load_note())
    print(f"{WORKERS} worker processes, one job at a time each; this process enqueues")
    base: Result | None = None
    ok = True
    with tempfile.TemporaryDirectory(prefix="vidbox-bench-queue-") as tmp:
        for name in subjects:
            root = Path(tmp) / name
            root.mkdir()
            url = create_database(args.postgres)
            try:
                if name == "procrastinate":
                    result = asyncio.run(run_procrastinate(url, root, args.samples, args.jobs))
                else:
                    result = asyncio.run(run_vidbox(url, LANE[name], root, args.samples, args.jobs))
            finally:
                drop_database(args.postgres, url)
            report(name, result, base)
            base = base or result  # the first subject (vidbox-small by default)
            ok = ok and result.duplicated == result.missing == result.unfinished == 0
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
