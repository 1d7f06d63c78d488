"""How fast vidbox serves HLS segments, next to nginx serving the very same files.

    python bench/serving.py [--seconds 20] [--clients 50] [--threads 1] [--log-level info]
                             [--files segments|init]

It makes a ~20 s 1280x720 H.264/AAC clip with the bundled FFmpeg, uploads it to a fresh
``vidbox serve`` (local storage) and waits for READY with progress 100. Then nginx (Debian's
package; installed with apt-get when missing and running as root) starts on another loopback
port with ``worker_processes 1`` (vidbox is one process with one event loop), ``access_log
off``, ``sendfile on`` and its root at vidbox's media folder, so both serve the same files.

Load: wrk (Debian's package, installed the same way) with ``--clients`` connections for
``--seconds`` seconds, a Lua script rotating over every ``.m4s`` segment of every rendition;
requests to vidbox go to /api/videos/{id}/hls/{rendition}/{file} with the Bearer header,
requests to nginx to the file's path under the media folder, without. If wrk cannot be had, an
asyncio/httpx load generator stands in (and the output says so). It prints requests/s, MB/s
(10^6 bytes), p50 and p99 latency for both and the ratio vidbox/nginx. Both servers share the
machine's two cores with the load generator; vidbox logs one line per request at the default
``info`` level, as it does in production (``--log-level warning`` shows what that costs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    VidboxServer,
    api_login,
    clean_env,
    create_user,
    ensure_debian_tool,
    free_port,
    load_note,
    percentile,
    ratio,
    run_ffmpeg,
    stop_process,
    verdict,
    wait_for_video,
    wait_until,
)

TARGET_THROUGHPUT_RATIO = 0.5
TARGET_P99_MS = 100.0
CLIP_SECONDS = 20
READY_TIMEOUT = 600

NGINX_CONF = """\
{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ video/mp4 m4s mp4; application/vnd.apple.mpegurl m3u8; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""

# Each wrk thread has its own Lua state: ``setup`` numbers the threads so they start at
# different places in the rotation.
WRK_SCRIPT = """\
local paths = {{ {paths} }}
local authorization = {authorization}
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("start", threads * 7)
end

function init(args)
  counter = start or 0
end

function request()
  counter = counter + 1
  local path = paths[(counter % #paths) + 1]
  if authorization then
    return wrk.format("GET", path, {{ ["Authorization"] = authorization }})
  end
  return wrk.format("GET", path)
end
"""


@dataclass
class LoadResult:
    requests_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str  # "" when every answer was a 2xx


def make_clip(path: Path) -> None:
    run_ffmpeg(
        *["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={CLIP_SECONDS}"],
        *["-f", "lavfi", "-i", f"sine=frequency=440:duration={CLIP_SECONDS}"],
        *["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60"],
        # A streaming-like bitrate: the top rung is copied from the source, not re-encoded.
        *["-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M"],
        *["-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", str(path)],
    )


def upload_and_wait(client: httpx.Client, auth: dict[str, str], clip: Path) -> dict[str, object]:
    with clip.open("rb") as fh:
        response = client.post(
            "/api/videos", headers=auth, files={"file": (clip.name, fh, "video/mp4")}
        )
    response.raise_for_status()
    video_id = str(response.json()["id"])
    video = wait_for_video(
        client,
        video_id,
        auth,
        done=lambda v: v["status"] == "FAILED" or (v["status"] == "READY" and v["progress"] == 100),
        timeout=READY_TIMEOUT,
        what="to be READY",
    )
    if video["status"] != "READY":
        raise RuntimeError(f"processing failed: {video['error']}")
    return video


def segment_paths(
    media_dir: Path, video_id: str, pattern: str = "seg_*.m4s"
) -> list[tuple[str, str, Path]]:
    """(rendition, file name, path on disk) of every .m4s segment (or other ``pattern``) of
    the video."""
    found = sorted(media_dir.glob(f"videos/*/{video_id}/hls/*/{pattern}"))
    if not found:
        raise RuntimeError(f"no segments under {media_dir}")
    return [(path.parent.name, path.name, path) for path in found]


def start_nginx(nginx: str, tmp: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read a 0700 temp folder
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root))
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            log = (tmp / "nginx-error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx exited: {log[-2000:]}")
        try:
            return httpx.get(url + "/", timeout=1).status_code in {200, 403, 404}
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=30, what="nginx to answer")
    return proc, url


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> LoadResult:
    """Figures from wrk's text output (wrk prints binary units: 1MB is 2^20 bytes)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB|TB)", output)
    assert transfer, output
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    assert p50 and p99, output
    errors = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("Non-2xx", "Socket errors"))
    ]
    return LoadResult(
        requests_per_s=rps,
        mb_per_s=float(transfer.group(1)) * _UNITS_BYTES[transfer.group(2)] / 1e6,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        requests=total,
        errors="; ".join(errors),
    )


async def _httpx_load(
    base: str, paths: list[str], headers: dict[str, str], seconds: int, clients: int
) -> LoadResult:
    latencies: list[float] = []
    received = 0
    failures = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient, start: int) -> None:
        nonlocal received, failures
        index = start
        while time.monotonic() < deadline:
            index += 1
            began = time.perf_counter()
            response = await client.get(paths[index % len(paths)], headers=headers)
            latencies.append((time.perf_counter() - began) * 1000)
            received += len(response.content)
            failures += response.status_code >= 300

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client, n * 7) for n in range(clients)))
    elapsed = time.monotonic() - started
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        mb_per_s=received / elapsed / 1e6,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        requests=len(latencies),
        errors=f"{failures} non-2xx answers" if failures else "",
    )


def run_load(
    wrk: str | None,
    tmp: Path,
    base: str,
    paths: list[str],
    authorization: str | None,
    args: argparse.Namespace,
) -> LoadResult:
    if not wrk:
        headers = {"Authorization": authorization} if authorization else {}
        return asyncio.run(_httpx_load(base, paths, headers, args.seconds, args.clients))
    script = tmp / f"rotate-{free_port()}.lua"
    quoted = ", ".join(f'"{p}"' for p in paths)
    auth = f'"{authorization}"' if authorization else "nil"
    script.write_text(WRK_SCRIPT.format(paths=quoted, authorization=auth))
    threads = min(args.threads, args.clients)
    options = f"-t{threads} -c{args.clients} -d{args.seconds}s --timeout 10s --latency".split()
    done = subprocess.run(
        [wrk, *options, "-s", str(script), base + paths[0]],
        capture_output=True,
        text=True,
        timeout=args.seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def check_same_bytes(on_disk: Path, *urls: tuple[str, dict[str, str]]) -> None:
    """Every (url, headers) answers 200 with exactly the bytes of ``on_disk``."""
    expected = on_disk.read_bytes()
    for url, headers in urls:
        response = httpx.get(url, headers=headers, timeout=30)
        if response.status_code != 200 or response.content != expected:
            raise RuntimeError(f"{url} did not serve {on_disk.name}: {response.status_code}")


def report(vidbox: LoadResult, nginx: LoadResult, preamble: list[str]) -> bool:
    print()
    print("\n".join(preamble))
    header = f"{'':<8} {'req/s':>9} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}  errors"
    print(header)
    print("-" * len(header))
    for name, r in (("vidbox", vidbox), ("nginx", nginx)):
        print(
            f"{name:<8} {r.requests_per_s:9.0f} {r.mb_per_s:8.0f} {r.p50_ms:8.1f} "
            f"{r.p99_ms:8.1f} {r.requests:9d}  {r.errors or 'none'}"
        )
    print(
        f"{'ratio':<8} {ratio(vidbox.requests_per_s, nginx.requests_per_s):>9} "
        f"{ratio(vidbox.mb_per_s, nginx.mb_per_s):>8} {ratio(vidbox.p50_ms, nginx.p50_ms):>8} "
        f"{ratio(vidbox.p99_ms, nginx.p99_ms):>8}   (vidbox / nginx)"
    )
    throughput = vidbox.requests_per_s / nginx.requests_per_s
    targets = [
        (
            f"vidbox >= {TARGET_THROUGHPUT_RATIO}x nginx throughput",
            f"{throughput:.2f}x",
            throughput >= TARGET_THROUGHPUT_RATIO,
        ),
        (
            f"vidbox p99 < {TARGET_P99_MS:.0f} ms",
            f"{vidbox.p99_ms:.1f} ms",
            vidbox.p99_ms < TARGET_P99_MS,
        ),
        (
            "every answer a 2xx",
            vidbox.errors or nginx.errors or "yes",
            not (vidbox.errors or nginx.errors),
        ),
    ]
    print()
    print("targets")
    for name, value, met in targets:
        print(f"  {name:<38} {value:>9}  {verdict(met)}")
    return all(met for _, _, met in targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="load duration per server")
    parser.add_argument("--clients", type=int, default=50, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--log-level", default="info", help="vidbox serve --log-level")
    parser.add_argument(
        "--files",
        choices=("segments", "init"),
        default="segments",
        help="rotate over the .m4s segments, or over the tiny init.mp4 files (per-request cost)",
    )
    parser.add_argument("--work-dir", type=Path, help="scratch folder (default: system temp)")
    args = parser.parse_args(argv)
    args.seconds = max(1, min(args.seconds, 600))
    args.clients = max(1, min(args.clients, 1000))
    nginx = ensure_debian_tool("nginx", "nginx")
    if not nginx:
        return 2
    wrk = ensure_debian_tool("wrk", "wrk")
    tool = (
        f"wrk -t{min(args.threads, args.clients)} --latency, Lua path rotation"
        if wrk
        else "asyncio/httpx client (wrk unavailable)"
    )
    note = load_note()
    with tempfile.TemporaryDirectory(prefix="vidbox-bench-serving-", dir=args.work_dir) as name:
        tmp = Path(name)
        clip = tmp / "clip-720p.mp4"
        print(f"generating a {CLIP_SECONDS} s 1280x720 clip ...", flush=True)
        make_clip(clip)
        data_dir = tmp / "data"
        env = clean_env({"VIDBOX_AUTH__ACCESS_TOKEN_MINUTES": "240"})
        data_dir.mkdir()
        create_user(data_dir, env)
        server = VidboxServer(data_dir, env)
        server.start(log_level=args.log_level)
        nginx_proc = None
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                auth = api_login(client)
                print("uploading and waiting for READY ...", flush=True)
                video = upload_and_wait(client, auth, clip)
            media = data_dir / "media"
            pattern = "seg_*.m4s" if args.files == "segments" else "init.mp4"
            segments = segment_paths(media, str(video["id"]), pattern)
            vidbox_paths = [f"/api/videos/{video['id']}/hls/{r}/{f}" for r, f, _ in segments]
            nginx_paths = ["/" + p.relative_to(media).as_posix() for _, _, p in segments]
            sizes = [p.stat().st_size for _, _, p in segments]
            renditions = sorted({r for r, _, _ in segments}, key=lambda r: int(r[:-1]))
            files = (
                f"{len(segments)} {pattern} files of {', '.join(renditions)}, "
                f"{min(sizes) / 1e3:.1f}-{max(sizes) / 1e3:.1f} kB, "
                f"mean {sum(sizes) / len(sizes) / 1e3:.1f} kB"
            )
            nginx_proc, nginx_url = start_nginx(nginx, tmp, media)
            first = segments[0][2]
            check_same_bytes(first, (server.url + vidbox_paths[0], auth))
            check_same_bytes(first, (nginx_url + nginx_paths[0], {}))
            print(f"loading vidbox for {args.seconds} s ...", flush=True)
            vidbox_result = run_load(
                wrk, tmp, server.url, vidbox_paths, auth["Authorization"], args
            )
            print(f"loading nginx for {args.seconds} s ...", flush=True)
            nginx_result = run_load(wrk, tmp, nginx_url, nginx_paths, None, args)
        finally:
            if nginx_proc is not None:
                stop_process(nginx_proc)
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
    preamble = [
        f"HLS segments over loopback; {note}",
        f"{files}; {args.clients} clients for {args.seconds} s; load: {tool}",
        "nginx: worker_processes 1, sendfile on, access_log off",
        f"vidbox: one `vidbox serve` process, local storage, --log-level {args.log_level}",
    ]
    return 0 if report(vidbox_result, nginx_result, preamble) else 1


if __name__ == "__main__":
    sys.exit(main())
