"""Whether POST /s/{token}/access gives away, by its timing, that an address is on a private
link's list: the median answer time for a listed address next to an unlisted one (the
baseline), measured in the same run, and their ratio.

    python bench/access_timing.py [--requests 200] [--warmup 20]

It starts an SMTP sink (aiosmtpd on loopback) and ``vidbox serve`` on a fresh data folder with
email pointed at it, creates the account with ``vidbox user create``, makes a video (a tus
upload with no bytes yet: enough to hang a link on) and a private link listing one address.
It then asks for access ``--warmup`` untimed and ``--requests`` timed times for the listed
address and for an unlisted one, interleaved request by request over one keep-alive
connection, so other work on the machine hits both alike. Before every request, untimed, it
waits until the box has no mail or access job left to run (what an earlier request set off,
such as sending its mail, must not slow the next one: this measures the request itself) and
empties the rate-limit table from outside (sqlite3), so the per-address and per-link limits
(10 and 30 per 15 minutes) never answer instead. Every answer must be the 202 both kinds get.

Target: the listed/unlisted ratio of the medians within 0.9-1.1x, and the medians less than
1 ms apart.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    EMAIL,
    VidboxServer,
    api_login,
    clean_env,
    create_user,
    load_note,
    percentile,
    ratio,
    verdict,
)

LISTED = "listed@example.org"
UNLISTED = "unlisted@example.org"


class Sink:
    """Accepts every message and keeps nothing."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def free_port() -> int:
    # aiosmtpd's Controller cannot bind port 0.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def private_link(server: VidboxServer) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        auth = api_login(client)
        name = base64.b64encode(b"later.mp4").decode()
        created = client.post(
            "/api/uploads",
            headers={
                **auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "1000",
                "Upload-Metadata": f"filename {name}",
            },
        )
        created.raise_for_status()
        video_id = created.headers["vidbox-video-id"]
        link = client.post(
            f"/api/videos/{video_id}/links",
            json={"visibility": "private", "emails": [LISTED], "expires_in": "1d"},
            headers=auth,
        )
        link.raise_for_status()
        return str(httpx.URL(link.json()["url"]).path)


def wait_idle(db: sqlite3.Connection, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    busy = (
        "SELECT count(*) FROM jobs WHERE kind IN ('send_mail', 'share_access')"
        " AND state IN ('queued', 'running')"
    )
    while db.execute(busy).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the box's job queue did not empty")
        time.sleep(0.005)


def measure(
    server: VidboxServer, database: Path, path: str, requests: int, warmup: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {LISTED: [], UNLISTED: []}
    with (
        contextlib.closing(sqlite3.connect(database, timeout=10)) as db,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        for n in range(warmup + requests):
            for address in (LISTED, UNLISTED) if n % 2 else (UNLISTED, LISTED):
                wait_idle(db)
                with db:
                    db.execute("DELETE FROM rate_limits")
                started = time.perf_counter()
                answer = client.post(f"{path}/access", json={"email": address})
                elapsed = time.perf_counter() - started
                if answer.status_code != 202:
                    raise RuntimeError(f"{address}: {answer.status_code} {answer.text[:200]}")
                if n >= warmup:
                    times[address].append(elapsed * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    requests = max(1, min(args.requests, 5_000))
    warmup = max(0, min(args.warmup, 1_000))
    note = load_note()

    from aiosmtpd.controller import Controller

    smtp_port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="vidbox-bench-access-", dir=args.work_dir) as d:
            data_dir = Path(d) / "data"
            data_dir.mkdir()
            env = clean_env(
                {
                    "VIDBOX_EMAIL__HOST": "127.0.0.1",
                    "VIDBOX_EMAIL__PORT": str(smtp_port),
                    "VIDBOX_EMAIL__SECURITY": "none",
                    "VIDBOX_EMAIL__FROM_ADDRESS": "box@bench.example",
                    "VIDBOX_SERVER__BASE_URL": "http://bench.example",
                }
            )
            create_user(data_dir, env)
            with VidboxServer(data_dir, env).start(log_level="warning") as server:
                path = private_link(server)
                print(f"{warmup} warm-up + {requests} timed requests per address ...", flush=True)
                times = measure(server, data_dir / "vidbox.db", path, requests, warmup)
    finally:
        controller.stop()

    listed, unlisted = times[LISTED], times[UNLISTED]
    med_listed, med_unlisted = statistics.median(listed), statistics.median(unlisted)
    print(f"\nPOST /s/{{token}}/access, {requests} requests each ({note}); account {EMAIL}")
    print(f"{'address':<22} {'median ms':>10} {'p95 ms':>8}")
    for name, values in (("unlisted (baseline)", unlisted), ("listed", listed)):
        print(f"{name:<22} {statistics.median(values):>10.2f} {percentile(values, 95):>8.2f}")
    value = med_listed / med_unlisted if med_unlisted else float("inf")
    gap = abs(med_listed - med_unlisted)
    met = 0.9 <= value <= 1.1 and gap < 1.0
    print(f"listed / unlisted: {ratio(med_listed, med_unlisted)}, medians {gap:.2f} ms apart")
    print(f"target 0.9-1.1x and < 1 ms apart: {verdict(met)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
