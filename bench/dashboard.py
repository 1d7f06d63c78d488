"""How fast the dashboard and the videos API answer for a user with 10,000 videos, next to
GET /healthz (the framework's floor) measured in the same run.

    python bench/dashboard.py [--videos 10000] [--requests 200] [--warmup 20]

It fills a fresh data folder through vidbox's own models and ``open_services`` (READY videos
with realistic sizes, durations, thumbnail keys, created_at spread over three years, and three
renditions each), starts ``vidbox serve`` on it, signs in through the login form (cookie
session, CSRF token from GET /login) and over the API (Bearer), and then times, one request at a
time over one keep-alive connection each:

- GET /healthz (baseline), GET / (the dashboard page), GET /api/videos?page=1&limit=20,
  and the deep page 400 of both (/?page=400 and /api/videos?page=400&limit=20).

Every request kind gets ``--warmup`` untimed requests, then ``--requests`` timed ones, the kinds
interleaved request by request so that other work on the machine hits them all alike. It prints
p50/p95 of the client-measured latency over loopback and, from vidbox's own request log
(``ms=``: time inside the app), the server-side p50/p95, each with its ratio to /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _common import (
    EMAIL,
    VidboxServer,
    api_login,
    browser_login,
    clean_env,
    create_user,
    load_note,
    percentile,
    ratio,
    verdict,
)
from sqlalchemy import insert
from sqlmodel import select

from vidbox.config import load_settings
from vidbox.models import Rendition, User, Video, VideoStatus, new_id
from vidbox.services import open_services

TARGET_P95_MS = 20.0
BATCH = 2000
LADDER = [
    ("360p", 640, 360, 900_000),
    ("480p", 854, 480, 1_600_000),
    ("720p", 1280, 720, 3_200_000),
]
DEEP_PAGE = 400
_LOG_MS = re.compile(r"msg=request .*\bpath=(\S+) status=(\d+) ms=([\d.]+)")


@dataclass
class Kind:
    name: str
    path: str
    client: str  # "api" (Bearer) or "browser" (cookie)
    expect: str  # a piece of the body that proves the right answer
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)


async def fill(data_dir: Path, count: int) -> str:
    """``count`` READY videos and their renditions for the bench user; returns the owner id."""
    settings = load_settings(data_dir=data_dir, environ={})
    rng = random.Random(count)
    now = datetime.now(UTC)
    async with open_services(settings) as services:
        async with services.db.read() as session:
            owner_id = (await session.exec(select(User.id).where(User.email == EMAIL))).one()
        for start in range(0, count, BATCH):
            videos, renditions = [], []
            for n in range(start, min(start + BATCH, count)):
                video_id = new_id()
                prefix = f"videos/{owner_id}/{video_id}/"
                created = now - timedelta(seconds=rng.randrange(3 * 365 * 86400))
                duration = round(rng.uniform(5, 3600), 2)
                videos.append(
                    {
                        "id": video_id,
                        "owner_id": owner_id,
                        "title": f"Family clip {n + 1:05d}",
                        "filename": f"VID_{20200101 + n}_{rng.randrange(10**6):06d}.mp4",
                        "size_bytes": int(duration * rng.uniform(0.4e6, 1.5e6)),
                        "content_type": "video/mp4",
                        "container": "mp4",
                        "status": VideoStatus.READY,
                        "progress": 100,
                        "error": None,
                        "duration_seconds": duration,
                        "width": 1280,
                        "height": 720,
                        "fps": 30.0,
                        "video_codec": "h264",
                        "audio_codec": "aac",
                        "original_key": prefix + "original.mp4",
                        "thumbnail_key": prefix + "thumbnail.jpg",
                        "created_at": created,
                        "updated_at": created + timedelta(minutes=3),
                        "ready_at": created + timedelta(minutes=3),
                    }
                )
                for name, width, height, bandwidth in LADDER:
                    renditions.append(
                        {
                            "video_id": video_id,
                            "name": name,
                            "width": width,
                            "height": height,
                            "bandwidth": bandwidth,
                            "average_bandwidth": bandwidth * 3 // 4,
                            "codecs": "avc1.64001f,mp4a.40.2",
                            "frame_rate": 30.0,
                            "copied": name == "720p",
                            "created_at": created + timedelta(minutes=3),
                        }
                    )
            async with services.db.session() as session:
                await session.exec(insert(Video), params=videos)
                await session.exec(insert(Rendition), params=renditions)
    return str(owner_id)


def server_times(log: str, kinds: list[Kind], order: list[Kind]) -> bool:
    """Give each timed request its ``ms=`` from the server's request log. The client sends one
    request at a time, so the log's request lines are in the order the requests were sent."""
    lines = [m for m in _LOG_MS.finditer(log)]
    if len(lines) < len(order):
        return False
    for kind, match in zip(order, lines[-len(order) :], strict=True):
        if match.group(1) != kind.path.split("?")[0]:
            return False
        kind.server_ms.append(float(match.group(3)))
    return True


def timed_get(client: httpx.Client, kind: Kind) -> float:
    started = time.perf_counter()
    response = client.get(kind.path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200 or kind.expect not in response.text:
        raise RuntimeError(f"{kind.path} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def run(
    server: VidboxServer, kinds: list[Kind], requests: int, warmup: int
) -> tuple[list[Kind], bool]:
    with (
        httpx.Client(base_url=server.url, timeout=30) as api,
        httpx.Client(base_url=server.url, timeout=30) as browser,
    ):
        api.headers.update(api_login(api))
        browser_login(browser)
        clients = {"api": api, "browser": browser}
        for _ in range(warmup):
            for kind in kinds:
                timed_get(clients[kind.client], kind)
        order: list[Kind] = []
        for _ in range(requests):
            for kind in kinds:
                kind.client_ms.append(timed_get(clients[kind.client], kind))
                order.append(kind)
    has_server = server_times(server.log(), kinds, order)
    return kinds, has_server


def _row(name: str, cells: list[str]) -> str:
    widths = [15, 15, 11, 11]
    return f"{name:<34}" + "".join(f" {c:>{w}}" for c, w in zip(cells, widths, strict=False))


def _cell(value: float, base: float) -> str:
    return f"{value:6.1f} ({ratio(value, base):>6})"


def report(kinds: list[Kind], has_server: bool, videos: int, requests: int, note: str) -> bool:
    floor = kinds[0]
    print()
    print(f"dashboard and videos API, {videos} videos; {note}")
    print(f"{requests} timed requests per row after warm-up, one at a time, loopback keep-alive")
    print("ms; client = measured by the bench (ratio to /healthz), server = vidbox's log ms=")
    columns = ["client p50", "client p95"] + (["server p50", "server p95"] if has_server else [])
    header = _row("request", columns)
    print(header)
    print("-" * len(header))
    for kind in kinds:
        cells = [
            _cell(percentile(kind.client_ms, pct), percentile(floor.client_ms, pct))
            for pct in (50, 95)
        ]
        if has_server:
            # The log rounds to 0.1 ms, too coarse for a ratio to /healthz's floor.
            cells += [f"{percentile(kind.server_ms, pct):6.1f}" for pct in (50, 95)]
        print(_row(kind.name, cells))
    if not has_server:
        print("(server-side times unavailable: the request log did not line up with the requests)")
    targets = [
        (f"{k.name} client p95 < {TARGET_P95_MS:.0f} ms", percentile(k.client_ms, 95))
        for k in kinds[1:]
    ]
    print()
    print("targets")
    for name, value in targets:
        print(f"  {name:<52} {value:7.1f} ms  {verdict(value < TARGET_P95_MS)}")
    return all(value < TARGET_P95_MS for _, value in targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=10_000, help="videos of the one user")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per kind")
    parser.add_argument("--work-dir", type=Path, help="scratch folder (default: system temp)")
    args = parser.parse_args(argv)
    requests = max(1, min(args.requests, 10_000))
    warmup = max(0, min(args.warmup, 1_000))
    note = load_note()
    deep = min(DEEP_PAGE, max(1, (args.videos + 19) // 20))
    kinds = [
        Kind("GET /healthz (baseline)", "/healthz", "api", '"ok"'),
        Kind("GET / (dashboard)", "/", "browser", 'id="video-list"'),
        Kind("GET /api/videos?page=1&limit=20", "/api/videos?page=1&limit=20", "api", '"items"'),
        Kind(f"GET /?page={deep}", f"/?page={deep}", "browser", 'id="video-list"'),
        Kind(
            f"GET /api/videos?page={deep}&limit=20",
            f"/api/videos?page={deep}&limit=20",
            "api",
            '"items"',
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="vidbox-bench-dashboard-", dir=args.work_dir) as name:
        data_dir = Path(name) / "data"
        env = clean_env({"VIDBOX_AUTH__ACCESS_TOKEN_MINUTES": "240"})
        data_dir.mkdir()
        create_user(data_dir, env)
        print(f"inserting {args.videos} videos ...", flush=True)
        started = time.perf_counter()
        asyncio.run(fill(data_dir, args.videos))
        print(f"inserted in {time.perf_counter() - started:.1f} s; starting vidbox ...", flush=True)
        with VidboxServer(data_dir, env).start() as server:
            print(f"{warmup} warm-up + {requests} timed requests of each kind ...", flush=True)
            kinds, has_server = run(server, kinds, requests, warmup)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if report(kinds, has_server, args.videos, requests, note) else 1


if __name__ == "__main__":
    sys.exit(main())
