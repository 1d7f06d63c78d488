"""What a second worker process buys, and how soon a worker in another process hears of a job.

    python bench/scale.py [--postgres URL] [--clips 8] [--seconds 4] [--size 1280x720]
                          [--samples 20]

1. Throughput: ``--clips`` generated clips (lossless H.264, so every rung is encoded rather
   than copied) are posted to one ``vidbox serve --role web`` process while 1, then 2
   ``vidbox serve --role worker`` processes (one media job at a time each, the default) run
   the queue, each process with a data folder of its own, on one PostgreSQL database and one
   local media folder. Clips per minute from the first upload to the last READY; the 1-worker
   run is the baseline. Both run on this one machine, so 2 workers can at best use its cores.
2. Wake-up latency: from a job's enqueue (its row's created_at, before the commit) to its
   claim (claimed_at), one job at a time with a random pause between, for a worker in the
   enqueuing process (the baseline: the commit wakes it directly) and in another process:
   on PostgreSQL the commit's NOTIFY wakes it, on SQLite it finds the job at its next poll
   (every second). The worker runs a no-op job kind; nothing else is queued.

``--postgres`` (or VIDBOX_TEST_POSTGRES) names a server on which the benchmark may create
databases (dropped at the end), e.g. postgresql+asyncpg://vidbox@127.0.0.1:5432/vidbox.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _common import (
    REPO,
    VIDBOX,
    VidboxServer,
    api_login,
    clean_env,
    create_user,
    load_note,
    percentile,
    ratio,
    run_ffmpeg,
    stop_process,
    wait_until,
)

from vidbox.config import load_settings
from vidbox.db import async_url
from vidbox.jobs import MEDIA_LANE, SMALL_LANE, JobContext
from vidbox.jobs.queue import enqueue
from vidbox.jobs.runner import JobRunner
from vidbox.models import Job
from vidbox.services import open_services

KEY = "bench-scale-secret-key-0123456789abcdef"
NOOP = "bench_noop"
POLL_SECONDS = 1.0  # JobRunner's default: how often a worker that hears nothing looks


# --- databases -------------------------------------------------------------------------


def _dsn(url: str) -> str:
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(server: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(server))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(server: str) -> str:
    name = f"vidbox_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server, f"CREATE DATABASE {name}"))
    return async_url(server).set(database=name).render_as_string(hide_password=False)


def drop_database(server: str, url: str) -> None:
    name = async_url(url).database
    asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# --- 1. throughput ---------------------------------------------------------------------


def make_clips(folder: Path, count: int, seconds: int, size: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for n in range(count):
        path = folder / f"clip-{size}-{seconds}s-{n}.mp4"
        if not path.exists():
            run_ffmpeg(
                *["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}"],
                *["-f", "lavfi", "-i", f"sine=frequency={300 + 40 * n}:duration={seconds}"],
                *["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p"],
                *["-g", "25", "-c:a", "aac", "-shortest", str(path)],
            )
        clips.append(path)
    return clips


def start_worker(
    root: Path, name: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    data_dir = prepare_data_dir(root, name)
    log_path = root / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*VIDBOX, "serve", "--role", "worker", "--data-dir", str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    def started() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log_path.read_text()[-3000:]}")
        return "job runner started" in log_path.read_text(errors="replace")

    wait_until(started, timeout=60, what=f"{name} to start")
    return proc, log_path


def prepare_data_dir(root: Path, name: str) -> Path:
    """A process's own data folder: nothing on disk is shared but the media folder (the
    store), where the web process puts each original before queueing its job."""
    data_dir = root / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def cpu_with_children(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (its FFmpeg runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), counted after the name.
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    seconds: float  # first upload to last READY
    cpu: float  # of the worker processes and their FFmpeg runs, meanwhile
    jobs: list[int]  # process_video jobs each worker ran


def throughput(server: str, clips: list[Path], workers: int, root: Path) -> Run:
    """The clips uploaded to one web process and processed by ``workers`` workers."""
    url = create_database(server)
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    web: VidboxServer | None = None
    try:
        env = clean_env(
            {
                "VIDBOX_DATABASE__URL": url,
                "VIDBOX_SERVER__SECRET_KEY": KEY,
                "VIDBOX_STORAGE__PATH": str(root / "media"),
                "VIDBOX_UPLOADS__RESERVE_BYTES": "0",
            }
        )
        web_dir = prepare_data_dir(root, "web")
        create_user(web_dir, env)
        web = VidboxServer(web_dir, {**env, "VIDBOX_SERVER__ROLE": "web"}).start()
        for n in range(workers):
            proc, log_path = start_worker(root, f"worker-{n}", env)
            procs.append(proc)
            logs.append(log_path)
        with httpx.Client(base_url=web.url, timeout=120) as client:
            auth = api_login(client)
            cpu = sum(cpu_with_children(p.pid) for p in procs)
            started = time.monotonic()
            for clip in clips:
                with clip.open("rb") as fh:
                    posted = client.post(
                        "/api/videos", headers=auth, files={"file": (clip.name, fh, "video/mp4")}
                    )
                posted.raise_for_status()

            def all_ready() -> bool:
                items = client.get("/api/videos?limit=100", headers=auth).json()["items"]
                if any(v["status"] == "FAILED" for v in items):
                    raise RuntimeError(f"a video failed: {items}")
                return len(items) == len(clips) and all(
                    v["status"] == "READY" and v["progress"] == 100 for v in items
                )

            wait_until(all_ready, timeout=60 * len(clips), what="every video READY")
            took = time.monotonic() - started
            cpu = sum(cpu_with_children(p.pid) for p in procs) - cpu
        jobs = [log.read_text().count('msg="job started" kind=process_video') for log in logs]
        return Run(took, cpu, jobs)
    finally:
        for proc in procs:
            stop_process(proc)
        if web is not None:
            web.stop()
        drop_database(server, url)


# --- 2. wake-up latency ----------------------------------------------------------------


async def _noop(ctx: JobContext) -> None:
    return None


def _runner(services: Any) -> JobRunner:
    return JobRunner(
        services,
        {NOOP: _noop},
        concurrency={MEDIA_LANE: 0, SMALL_LANE: 1},
        poll_seconds=POLL_SECONDS,
        startup_jobs=(),
    )


async def claimer(data_dir: str) -> None:
    """``--claimer``: a worker process that runs only no-op jobs until SIGTERM."""
    settings = load_settings(data_dir=data_dir)
    async with open_services(settings) as services:
        if settings.database.url:
            await services.db.listen()
            await asyncio.wait_for(services.db.bus.connected.wait(), 10)
        runner = _runner(services)
        await runner.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("claimer ready", flush=True)
        await stop.wait()
        await runner.stop()


async def _latencies(settings: Any, samples: int, *, in_process: bool) -> list[float]:
    """Enqueue→claim seconds of ``samples`` jobs, one at a time."""
    rng = random.Random(17)
    found: list[float] = []
    async with open_services(settings) as services:
        runner = _runner(services) if in_process else None
        if runner is not None:
            await runner.start()
        try:
            for _ in range(samples):
                # A moment anywhere in a polling worker's cycle (it polls POLL_SECONDS after
                # its last look, which came right after the previous claim).
                await asyncio.sleep(rng.uniform(0.0, POLL_SECONDS) + 0.01)
                async with services.db.session() as session:
                    job = await enqueue(session, NOOP, {})
                    job_id = job.id
                deadline = time.monotonic() + 10
                while True:
                    async with services.db.session() as session:
                        row = await session.get(Job, job_id)
                        assert row is not None
                        if row.claimed_at is not None:
                            found.append((row.claimed_at - row.created_at).total_seconds())
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError("no worker claimed the job within 10 s")
                    await asyncio.sleep(0.005)
        finally:
            if runner is not None:
                await runner.stop()
    return found


def latency(env: dict[str, str], data_dir: Path, samples: int) -> dict[str, list[float]]:
    """{"in-process": [...], "other process": [...]} on the box ``env`` names."""
    settings = load_settings(data_dir=data_dir, environ=env)
    result = {"in-process": asyncio.run(_latencies(settings, samples, in_process=True))}
    child = subprocess.Popen(
        [sys.executable, __file__, "--claimer", str(data_dir)],
        stdout=subprocess.PIPE,
        env=clean_env(env),
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != b"claimer ready":
            raise RuntimeError("the claimer process did not start")
        result["other process"] = asyncio.run(_latencies(settings, samples, in_process=False))
    finally:
        stop_process(child)
    return result


# --- report ----------------------------------------------------------------------------


def _ms(values: list[float], pct: float) -> str:
    return f"{percentile(values, pct) * 1000:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=os.environ.get("VIDBOX_TEST_POSTGRES", ""))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--claimer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.claimer:
        asyncio.run(claimer(args.claimer))
        return 0
    if not args.postgres:
        print("needs a PostgreSQL server: --postgres postgresql+asyncpg://user@host:port/db")
        return 2
    print(load_note())
    with tempfile.TemporaryDirectory(prefix="vidbox-bench-scale-") as tmp:
        root = Path(tmp)
        clips = make_clips(root / "clips", args.clips, args.seconds, args.size)
        mb = sum(c.stat().st_size for c in clips) / 1e6
        print(f"\n1. throughput: {len(clips)} clips, {args.size}, {args.seconds} s, {mb:.1f} MB")
        seconds = {}
        for workers in (1, 2):
            run = throughput(args.postgres, clips, workers, root / f"w{workers}")
            seconds[workers] = run.seconds
            per_min = len(clips) * 60 / run.seconds
            print(
                f"   {workers} worker process(es): {run.seconds:.1f} s, {per_min:.1f} clips/min; "
                f"workers and FFmpeg used {run.cpu:.1f} CPU s ({run.cpu / run.seconds:.2f} "
                f"cores); jobs per worker {run.jobs}"
            )
        print(f"   2 workers / 1 worker: {ratio(seconds[1], seconds[2])} the clips per minute")

        print(f"\n2. wake-up latency, enqueue -> claim, {args.samples} jobs (ms: p50 / p95 / max)")
        url = create_database(args.postgres)
        try:
            backends = {
                "PostgreSQL (LISTEN/NOTIFY)": (
                    {"VIDBOX_DATABASE__URL": url, "VIDBOX_SERVER__SECRET_KEY": KEY},
                    root / "pg",
                ),
                "SQLite (polling)": ({}, root / "sqlite"),
            }
            for label, (env, data_dir) in backends.items():
                found = latency(env, data_dir, args.samples)
                base = percentile(found["in-process"], 50)
                for where, values in found.items():
                    print(
                        f"   {label}, worker {where}: {_ms(values, 50)} / {_ms(values, 95)} / "
                        f"{max(values) * 1000:.1f}  (p50 {ratio(percentile(values, 50), base)} "
                        "in-process)"
                    )
        finally:
            drop_database(args.postgres, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
