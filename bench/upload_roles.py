"""What storing the original before queueing costs the final PATCH of an upload: role=all
(the job reads the spool file, as a single process always did) against role=web (the
original goes to the media store before the 204, so a worker on another host finds it),
with the local store and with S3 (moto's server on loopback).

    python bench/upload_roles.py [--size-mib 50] [--last-mib 1] [--rounds 3]

For each store it starts a fresh ``vidbox serve`` per role (SQLite, its own data folder),
then, ``--rounds`` times: creates a tus upload of ``--size-mib`` MiB (a real MP4's first
4 KiB, then random bytes: it passes the upload checks, FFmpeg gives up on it at once), sends
all but the last ``--last-mib`` MiB in one PATCH, and times the final PATCH, the one that
completes the upload. Between rounds it waits until the video has left PROCESSING (role=all)
or deletes it (role=web, where no job runs), so FFmpeg never runs during a measurement.
It prints the best and median of the final PATCH per role and store, and the ratio to
role=all with the same store as the baseline.
"""

from __future__ import annotations

import argparse
import base64
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import (
    MIB,
    VidboxServer,
    api_login,
    clean_env,
    create_user,
    free_port,
    load_note,
    ratio,
    wait_for_video,
)
from ingest import file_slices, mp4_head, write_source

S3_ENV = {
    "VIDBOX_STORAGE__BACKEND": "s3",
    "VIDBOX_STORAGE__BUCKET": "bench-upload-roles",
    "VIDBOX_STORAGE__ACCESS_KEY": "bench-access",
    "VIDBOX_STORAGE__SECRET_KEY": "bench-secret",
    "VIDBOX_STORAGE__SECURE": "false",
}


def final_patch_seconds(
    client: httpx.Client, auth: dict[str, str], source: Path, size: int, last: int
) -> tuple[float, str]:
    name = base64.b64encode(b"bench.mp4").decode()
    created = client.post(
        "/api/uploads",
        headers={
            **auth,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(size),
            "Upload-Metadata": f"filename {name}",
        },
    )
    created.raise_for_status()
    url, video_id = created.headers["location"], created.headers["vidbox-video-id"]
    patch = {**auth, "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    first = size - last
    answer = client.patch(
        url,
        content=file_slices(source, 0, first),
        headers={**patch, "Upload-Offset": "0", "Content-Length": str(first)},
    )
    answer.raise_for_status()
    body = b"".join(file_slices(source, first, last))
    started = time.perf_counter()
    answer = client.patch(url, content=body, headers={**patch, "Upload-Offset": str(first)})
    elapsed = time.perf_counter() - started
    if answer.status_code != 204:
        raise RuntimeError(f"final PATCH answered {answer.status_code}: {answer.text[:200]}")
    return elapsed, video_id


def settle(client: httpx.Client, auth: dict[str, str], video_id: str, role: str) -> None:
    if role == "all":
        wait_for_video(
            client,
            video_id,
            auth,
            done=lambda v: v["status"] not in ("UPLOADING", "PROCESSING"),
            timeout=300,
            what="the video to leave PROCESSING",
        )
    client.delete(f"/api/videos/{video_id}", headers=auth).raise_for_status()


def measure(
    folder: Path, store: str, role: str, env: dict[str, str], source: Path, args: argparse.Namespace
) -> list[float]:
    data_dir = folder / f"{store}-{role}"
    environ = clean_env({**env, "VIDBOX_SERVER__ROLE": role})
    if store == "local":
        environ["VIDBOX_STORAGE__PATH"] = str(data_dir / "media")
    create_user(data_dir, environ)
    size, last = args.size_mib * MIB, args.last_mib * MIB
    times = []
    with (
        VidboxServer(data_dir, environ).start(log_level="warning") as server,
        httpx.Client(base_url=server.url, timeout=300) as client,
    ):
        auth = api_login(client)
        for _ in range(args.rounds):
            seconds, video_id = final_patch_seconds(client, auth, source, size, last)
            times.append(seconds)
            settle(client, auth, video_id, role)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--last-mib", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    note = load_note()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="vidbox-bench-roles-") as tmp:
            folder = Path(tmp)
            source = folder / "source.mp4"
            write_source(source, mp4_head(folder), args.size_mib * MIB)
            stores = {
                "local": {},
                "s3": {**S3_ENV, "VIDBOX_STORAGE__ENDPOINT": f"127.0.0.1:{port}"},
            }
            for store, env in stores.items():
                for role in ("all", "web"):
                    results[store, role] = measure(folder, store, role, env, source, args)
                    print(
                        f"{store:5} role={role}: "
                        + ", ".join(f"{t * 1000:.0f} ms" for t in results[store, role]),
                        flush=True,
                    )
    finally:
        moto.stop()

    print()
    print(f"Final PATCH ({args.last_mib} MiB) of a {args.size_mib} MiB tus upload; {note}")
    print(f"{'store':6} {'role':5} {'best':>9} {'median':>9}  vs role=all (median)")
    for (store, role), times in results.items():
        base = statistics.median(results[store, "all"])
        median = statistics.median(times)
        print(
            f"{store:6} {role:5} {min(times) * 1000:7.0f}ms {median * 1000:7.0f}ms  "
            f"{ratio(median, base)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
