"""How fast vidbox takes in an upload over loopback, next to ``cp`` of the same file, and how
much memory the server needs while doing it.

    python bench/ingest.py [--size-mib 1024] [--quick]

For a 128 MiB file and a ``--size-mib`` file (1 GiB by default; ``--quick``: 128 MiB only) it
starts a fresh ``vidbox serve`` on a temporary data folder and measures, one after the other:

- cp: ``cp`` of the source file into the data folder (same file system as the upload spool),
  and ``cp`` followed by ``sync`` of the copy (vidbox fsyncs a finished upload, ``cp`` does not);
- tus: POST /api/uploads, then PATCH requests of ``--patch-mib`` (64 MiB) each, sent by httpx
  from a generator that reads the file in 1 MiB slices;
- tus 1 PATCH: the same with the whole file in one PATCH, as tus-js-client (Uppy) and tuspy
  send by default;
- multipart: one POST /api/videos whose multipart body (a title field, then the file, with a
  boundary shaped like curl's) httpx streams from 1 MiB slices of the file, as ``curl -F``
  streams it (httpx's ``files=`` encoder reads 64 KiB at a time and was slower than the
  server);
- client ceiling: the same PATCH requests sent to a socket sink (another process that reads and
  discards the bodies), which shows the client is not what limits the uploads;
- raw receiver: the same again, with the sink writing the bodies into a file in the data
  folder (``recv_into`` a 1 MiB buffer, ``pwrite``);
- splice receiver: the same, with the sink splicing the bodies from the socket through a pipe
  into the file, as vidbox does: the fastest a Python process takes an upload to disk on this
  machine, the honest ceiling for any Python server.

cp, cp + sync, the two receivers and the three uploads run in interleaved rounds (best of
``--rounds`` kept), each after ``prewarm``: writing into memory the VM has not touched lately
is several times slower than into pages freed a moment ago, so each must meet the machine in
the same state. Every round's figures are printed as it ends, and each round's upload-to-cp
ratios at the end.

Each step's CPU time is measured too: of the receiving side (``cp`` itself, the socket sink,
the vidbox server) and of the sending client (this process's thread). Wall-clock figures on a
shared VM swing with what the host does; CPU seconds per GiB swing far less, and show whether
the server or the machine sets the pace: client and server share the cores, which ``cp``
has to itself.

MB/s is 10^6 bytes a second. Every run reads a warm source file (the page cache cannot be
dropped here), ``cp`` and the uploads alike. The file is the first 4 KiB of a real MP4 made by
the bundled FFmpeg followed by random bytes: it passes vidbox's checks, FFmpeg then fails on it,
and each upload waits for the video to leave PROCESSING so FFmpeg never competes with the next
measurement. The server's peak resident set (VmHWM) is read after both uploads of each size.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    MIB,
    RssSampler,
    VidboxServer,
    api_login,
    clean_env,
    cpu_seconds,
    create_user,
    load_note,
    ratio,
    run_ffmpeg,
    verdict,
    wait_for_video,
)

TARGET_CP_RATIO = 0.8
TARGET_PEAK_RSS_MB = 150.0
HEAD_BYTES = 4096
READ_SLICE = 1 * MIB
SETTLE_SECONDS = 600
UPLOAD_TIMEOUT = httpx.Timeout(600, connect=10)


# A minimal HTTP/1.1 server that reads each request body into a scratch buffer and answers
# 204: the fastest any server could take the bytes on this machine. Given a file path, it also
# writes every body into that file, back to back, with no HTTP framework, checks or
# bookkeeping: through a buffer (recv_into, pwrite), or, given "splice" too, from the socket
# through a pipe into the file inside the kernel, as vidbox does.
SINK = """
import fcntl, os, socket, sys
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if sys.argv[1:] else None
splice = sys.argv[2:] == ["splice"]
pipe_out, pipe_in = os.pipe()
fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, 1 << 20)
position = 0
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
scratch = memoryview(bytearray(1 << 20))
while True:
    conn, _ = server.accept()
    with conn:
        pending = b""
        while True:
            while b"\\r\\n\\r\\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    break
                pending += data
            if b"\\r\\n\\r\\n" not in pending:
                break
            head, _, body = pending.partition(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            left, pending = length - len(body), b""
            if out is not None:
                position += os.pwrite(out, body, position)
            while left > 0:
                if splice:
                    got = os.splice(conn.fileno(), pipe_in, min(1 << 20, left))
                    moved = 0
                    while moved < got:
                        moved += os.splice(pipe_out, out, got - moved, offset_dst=position + moved)
                    position += got
                else:
                    got = conn.recv_into(scratch, min(len(scratch), left))
                    if got and out is not None:
                        position += os.pwrite(out, scratch[:got], position)
                if not got:
                    break
                left -= got
            conn.sendall(b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n")
"""


# The timed steps of a round, in order: name -> what it measures.
STEPS = {
    "cp": "cp of the source file",
    "cp+sync": "cp, then sync of the copy",
    "raw": "raw receiver: recv_into + pwrite",
    "splice": "splice receiver: socket -> pipe -> file",
    "tus": "tus, PATCHes of --patch-mib",
    "tus 1 PATCH": "tus, the whole file in one PATCH (tus-js-client's and tuspy's default)",
    "multipart": "multipart POST",
}
UPLOADS = ("tus", "tus 1 PATCH", "multipart")


@dataclass
class Timing:
    """One timed step: how long it took and the CPU time it cost."""

    seconds: float
    receiver_cpu: float  # cp, the socket sink, or the vidbox server
    client_cpu: float = 0.0  # the sending thread of this process (none for cp)


@dataclass
class SizeResult:
    size: int
    times: dict[str, list[Timing]]  # each round's timing, by step
    ceiling: float  # seconds of the tus PATCHes sent to the sink, best of the rounds
    start_hwm_mb: float  # VmHWM after start-up, before anyone signed in
    login_hwm_mb: float  # VmHWM after the API sign-in (argon2 needs 64 MiB for a moment)
    upload_rss_mb: float  # the highest VmRSS sampled while the uploads ran
    peak_rss_mb: float  # VmHWM after both uploads: the process's peak over its whole life

    def best(self, step: str) -> float:
        """MB/s of the step's best round."""
        return self.mbps(min(t.seconds for t in self.times[step]))

    def round_ratios(self, step: str) -> list[float]:
        """Each round's MB/s for ``step`` over the same round's cp."""
        pairs = zip(self.times["cp"], self.times[step], strict=True)
        return [c.seconds / t.seconds for c, t in pairs]

    def cpu_per_gib(self, step: str) -> tuple[float, float]:
        """Median CPU seconds per GiB of the step's rounds: receiving side, client."""
        gibs = self.size / (1024 * MIB)
        rounds = self.times[step]
        return (
            statistics.median(t.receiver_cpu for t in rounds) / gibs,
            statistics.median(t.client_cpu for t in rounds) / gibs,
        )

    def mbps(self, seconds: float) -> float:
        return self.size / seconds / 1e6


def mp4_head(folder: Path) -> bytes:
    """The first bytes of a real tiny MP4: ``ftyp`` at offset 4, ``moov`` left out."""
    clip = folder / "tiny.mp4"
    run_ffmpeg(
        *["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"],
        *["-f", "lavfi", "-i", "sine=frequency=440:duration=2"],
        *["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
        *["-shortest", str(clip)],
    )
    head = clip.read_bytes()[:HEAD_BYTES]
    if head[4:8] != b"ftyp":
        raise RuntimeError("FFmpeg's MP4 does not start with an ftyp box")
    return head


def write_source(path: Path, head: bytes, size: int) -> None:
    rng = random.Random(size)
    with path.open("wb") as fh:
        fh.write(head)
        left = size - len(head)
        while left:
            block = min(64 * MIB, left)
            fh.write(rng.randbytes(block))
            left -= block


def warm(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(16 * MIB):
            pass


def prewarm(folder: Path, size: int) -> None:
    """Write ``size`` bytes into a scratch file in ``folder`` and delete it, then flush earlier
    writes: the timed run that follows writes into memory the VM has just used.

    Here, page-cache pages free for more than a few seconds are several times slower to write
    into than pages freed a moment ago (a Python loop of 1 MiB pwrites: about 400 MiB/s into
    the first, 5 GiB/s into the second). ``cp`` in a loop always met the second kind, an
    upload after a server round trip often the first; both now meet the same.
    """
    scratch = folder / ".prewarm"
    block = bytes(16 * MIB)
    with scratch.open("wb") as fh:
        for _ in range(0, size, len(block)):
            fh.write(block)
    scratch.unlink()  # before the sync: its dirty pages are dropped, not written back
    os.sync()  # no earlier writeback left to compete with the timed run


def thread_cpu() -> float:
    """CPU seconds this thread has used: the client's share, without the RSS sampler's."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cp(source: Path, target: Path, *, then_sync: bool) -> Timing:
    prewarm(target.parent, source.stat().st_size)
    cpu_before = children_cpu()
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    if then_sync:
        subprocess.run(["sync", str(target)], check=True)
    elapsed = time.perf_counter() - started
    target.unlink()
    return Timing(elapsed, children_cpu() - cpu_before)


def file_slices(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        while length:
            chunk = fh.read(min(READ_SLICE, length))
            if not chunk:
                raise RuntimeError(f"{path} ended early")
            length -= len(chunk)
            yield chunk


def tus_metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def tus_upload(client: httpx.Client, auth: dict[str, str], path: Path, patch_bytes: int) -> str:
    size = path.stat().st_size
    tus = {**auth, "Tus-Resumable": "1.0.0"}
    created = client.post(
        "/api/uploads",
        headers={
            **tus,
            "Upload-Length": str(size),
            "Upload-Metadata": tus_metadata(filename=path.name, filetype="video/mp4"),
        },
    )
    if created.status_code != 201:
        raise RuntimeError(f"tus creation answered {created.status_code}: {created.text}")
    location = created.headers["Location"]
    offset = 0
    while offset < size:
        length = min(patch_bytes, size - offset)
        response = client.patch(
            location,
            headers={
                **tus,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                "Content-Length": str(length),
            },
            content=file_slices(path, offset, length),
        )
        if response.status_code != 204:
            raise RuntimeError(f"PATCH answered {response.status_code}: {response.text}")
        offset = int(response.headers["Upload-Offset"])
    return created.headers["Vidbox-Video-Id"]


def multipart_body(path: Path, boundary: str) -> tuple[int, Iterator[bytes]]:
    """A multipart/form-data body (a title field, then the file), as its length and chunks:
    streamed from 1 MiB slices of the file, as curl -F streams it. httpx's own ``files=``
    encoder reads the file in 64 KiB pieces, which made the client, not the server, the
    bottleneck of this measurement."""
    size = path.stat().st_size
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\n'
        f'bench multipart\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        yield from file_slices(path, 0, size)
        yield tail

    return len(head) + size + len(tail), chunks()


def multipart_upload(client: httpx.Client, auth: dict[str, str], path: Path) -> str:
    # curl's shape of boundary: its length sets how fast the server's delimiter search runs
    # (a 44-byte delimiter is found about 1.6x faster than a 27-byte one).
    boundary = f"{'-' * 24}{random.getrandbits(64):016x}"
    length, chunks = multipart_body(path, boundary)
    response = client.post(
        "/api/videos",
        headers={
            **auth,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
        },
        content=chunks,
    )
    if response.status_code != 201:
        raise RuntimeError(f"multipart upload answered {response.status_code}: {response.text}")
    video = response.json()
    if video["size_bytes"] != path.stat().st_size:
        raise RuntimeError(f"server kept {video['size_bytes']} bytes of {path.stat().st_size}")
    return str(video["id"])


def client_ceiling(
    path: Path, patch_bytes: int, write_to: Path | None = None, *, splice: bool = False
) -> Timing:
    """Sends ``path`` as tus-sized PATCH requests to the socket sink, which writes them into
    ``write_to`` when given (removed afterwards), with ``splice`` if asked."""
    command = [sys.executable, "-c", SINK, *([str(write_to)] if write_to else [])]
    if splice:
        command.append("splice")
    sink = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        size = path.stat().st_size
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=UPLOAD_TIMEOUT) as client:
            if write_to is not None:
                prewarm(write_to.parent, size)
            else:
                os.sync()
            sink_cpu, client_cpu = cpu_seconds(sink.pid), thread_cpu()
            started = time.perf_counter()
            for offset in range(0, size, patch_bytes):
                length = min(patch_bytes, size - offset)
                response = client.patch(
                    "/sink",
                    headers={"Content-Length": str(length)},
                    content=file_slices(path, offset, length),
                )
                if response.status_code != 204:
                    raise RuntimeError(f"the sink answered {response.status_code}")
            elapsed = time.perf_counter() - started
            sink_cpu = cpu_seconds(sink.pid) - sink_cpu
            return Timing(elapsed, sink_cpu, thread_cpu() - client_cpu)
    finally:
        sink.kill()
        sink.wait(timeout=10)
        if write_to is not None:
            write_to.unlink(missing_ok=True)


def settle(client: httpx.Client, auth: dict[str, str], video_id: str) -> str:
    """Wait until processing is over (FAILED is expected), then delete the video."""
    video = wait_for_video(
        client,
        video_id,
        auth,
        done=lambda v: v["status"] not in {"UPLOADING", "PROCESSING"},
        timeout=SETTLE_SECONDS,
        what="to leave PROCESSING",
    )
    client.delete(f"/api/videos/{video_id}", headers=auth).raise_for_status()
    return str(video["status"])


def timed_upload(
    server: VidboxServer,
    client: httpx.Client,
    auth: dict[str, str],
    upload: Callable[[], str],
    size: int,
) -> Timing:
    """Times an upload of ``size`` bytes (after ``prewarm`` of the data folder), then waits
    for its video to settle. The server's CPU is read before processing gets going."""
    prewarm(server.data_dir, size)
    server_cpu, client_cpu = cpu_seconds(server.pid), thread_cpu()
    started = time.perf_counter()
    video_id = upload()
    seconds = time.perf_counter() - started
    timing = Timing(seconds, cpu_seconds(server.pid) - server_cpu, thread_cpu() - client_cpu)
    status = settle(client, auth, video_id)
    print(f"  video {status} after {size / seconds / 1e6:.0f} MB/s", flush=True)
    return timing


def measure_size(
    scratch: Path, head: bytes, size: int, patch_bytes: int, rounds: int
) -> SizeResult:
    label = f"{size // MIB} MiB"
    source = scratch / f"source-{size // MIB}MiB.mp4"
    data_dir = scratch / f"data-{size // MIB}MiB"
    print(f"{label}: writing the source file ...", flush=True)
    write_source(source, head, size)
    warm(source)
    env = clean_env({"VIDBOX_AUTH__ACCESS_TOKEN_MINUTES": "240"})
    data_dir.mkdir()
    create_user(data_dir, env)
    try:
        copy = data_dir / "cp-copy.mp4"
        time_cp(source, copy, then_sync=True)  # first touches of fresh memory are slow in a VM
        print(f"{label}: client ceiling (PATCHes to a socket sink) ...", flush=True)
        ceiling = min(client_ceiling(source, patch_bytes).seconds for _ in range(rounds))
        with (
            VidboxServer(data_dir, env).start() as server,
            httpx.Client(base_url=server.url, timeout=UPLOAD_TIMEOUT) as client,
        ):
            start_hwm = server.peak_rss_mb()
            auth = api_login(client)
            login_hwm = server.peak_rss_mb()
            times: dict[str, list[Timing]] = {step: [] for step in STEPS}
            raw_file = data_dir / "raw.bin"
            steps = {
                "cp": lambda: time_cp(source, copy, then_sync=False),
                "cp+sync": lambda: time_cp(source, copy, then_sync=True),
                "raw": lambda: client_ceiling(source, patch_bytes, raw_file),
                "splice": lambda: client_ceiling(source, patch_bytes, raw_file, splice=True),
                "tus": lambda: timed_upload(
                    server,
                    client,
                    auth,
                    lambda: tus_upload(client, auth, source, patch_bytes),
                    size,
                ),
                "tus 1 PATCH": lambda: timed_upload(
                    server, client, auth, lambda: tus_upload(client, auth, source, size), size
                ),
                "multipart": lambda: timed_upload(
                    server, client, auth, lambda: multipart_upload(client, auth, source), size
                ),
            }
            with RssSampler(server.pid) as sampled:
                # Interleaved, so the copies and the uploads meet the same state of the
                # machine (page cache, writeback, the VM's memory) rather than each a
                # different moment of it.
                for round_ in range(1, rounds + 1):
                    for step, run in steps.items():
                        print(f"{label}: round {round_}: {STEPS[step]} ...", flush=True)
                        times[step].append(run())
                    line = ", ".join(
                        f"{n} {size / t[-1].seconds / 1e6:.0f}" for n, t in times.items()
                    )
                    print(f"{label}: round {round_} MB/s: {line}", flush=True)
            peak = server.peak_rss_mb()
    finally:
        source.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    memory = (start_hwm, login_hwm, sampled.max_mb, peak)
    return SizeResult(size, times, ceiling, *memory)


def report(results: list[SizeResult], patch_bytes: int, rounds: int, note: str) -> bool:
    print()
    print(f"ingest over loopback; {note}; warm source file, ext4 data folder")
    print(f"tus: httpx PATCH of {patch_bytes // MIB} MiB each from a 1 MiB-slice generator;")
    print("tus 1 PATCH: the whole file in one PATCH, as tus-js-client and tuspy send by default")
    print(
        f"MB/s, best of {rounds} interleaved rounds (after one untimed cp); ceiling: PATCHes "
        f"to a socket sink that discards them, best of {rounds}"
    )
    columns = ("cp", "cp+sync", "raw", "splice", *UPLOADS)
    header = f"{'size':>9} " + " ".join(f"{c:>11}" for c in columns) + f" {'ceiling':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        cells = " ".join(f"{r.best(c):11.0f}" for c in columns)
        print(f"{r.size // MIB:>5} MiB {cells} {r.mbps(r.ceiling):8.0f}")
    print()
    print("ratios of the best rounds: to cp | to cp + sync | to the splice receiver")
    for r in results:
        for step in ("raw", "splice", *UPLOADS):
            mbps = r.best(step)
            print(
                f"{r.size // MIB:>5} MiB {step:>11}: {ratio(mbps, r.best('cp'))} | "
                f"{ratio(mbps, r.best('cp+sync'))} | {ratio(mbps, r.best('splice'))}"
            )
    print("CPU seconds per GiB, median of the rounds: receiving side (cp itself, the sink, the")
    print("vidbox server) + sending client; the ratio is the receiving side's CPU over cp's")
    for r in results:
        cp_cpu, _ = r.cpu_per_gib("cp")
        for step in ("cp", "raw", "splice", *UPLOADS):
            receiver, sender = r.cpu_per_gib(step)
            print(
                f"{r.size // MIB:>5} MiB {step:>11}: {receiver:5.2f} + {sender:5.2f} client "
                f"({ratio(receiver, cp_cpu)})"
            )
    print("each round's ratio to the cp of the same round (a round that met cold memory in one")
    print("step and not the other shows as an outlier):")
    for r in results:
        for step in UPLOADS:
            ratios = r.round_ratios(step)
            listed = " ".join(f"{x:.2f}" for x in ratios)
            median = statistics.median(ratios)
            print(f"{r.size // MIB:>5} MiB {step:>11}: {listed} (median {median:.2f})")
    print()
    print("server memory, MB (VmHWM = peak resident set of the vidbox process, no FFmpeg)")
    header = (
        f"{'size':>9} {'HWM after start':>16} {'HWM after sign-in':>18} "
        f"{'max RSS in uploads':>19} {'HWM at end':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.size // MIB:>5} MiB {r.start_hwm_mb:16.0f} {r.login_hwm_mb:18.0f} "
            f"{r.upload_rss_mb:19.0f} {r.peak_rss_mb:11.0f}"
        )
    largest, smallest = results[-1], results[0]
    if len(results) > 1:
        growth = largest.upload_rss_mb - smallest.upload_rss_mb
        print(
            f"max RSS during uploads, {smallest.size // MIB} MiB -> {largest.size // MIB} MiB: "
            f"{growth:+.0f} MB for {(largest.size - smallest.size) / 1e6:.0f} MB more file"
        )
    mib = largest.size // MIB
    cp = largest.best("cp")
    targets = [
        (
            f"{step} >= {TARGET_CP_RATIO}x cp ({mib} MiB)",
            ratio(largest.best(step), cp),
            largest.best(step) / cp >= TARGET_CP_RATIO,
        )
        for step in UPLOADS
    ]
    targets.append(
        (
            f"server peak RSS (VmHWM) < {TARGET_PEAK_RSS_MB:.0f} MB ({mib} MiB)",
            f"{largest.peak_rss_mb:.0f} MB",
            largest.peak_rss_mb < TARGET_PEAK_RSS_MB,
        )
    )
    print()
    print("targets")
    for name, value, met in targets:
        print(f"  {name:<46} {value:>8}  {verdict(met)}")
    return all(met for _, _, met in targets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large file")
    parser.add_argument("--quick", action="store_true", help="the 128 MiB file only")
    parser.add_argument("--patch-mib", type=int, default=64, help="bytes per tus PATCH")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of cp and uploads of each kind; best kept"
    )
    parser.add_argument("--work-dir", type=Path, help="scratch folder (default: system temp)")
    args = parser.parse_args(argv)
    sizes = [128] if args.quick else sorted({128, max(1, args.size_mib)})
    patch_bytes = max(1, args.patch_mib) * MIB
    with tempfile.TemporaryDirectory(prefix="vidbox-bench-ingest-", dir=args.work_dir) as name:
        scratch = Path(name)
        note = load_note()
        head = mp4_head(scratch)
        results = [
            measure_size(scratch, head, size * MIB, patch_bytes, max(1, args.rounds))
            for size in sizes
        ]
    return 0 if report(results, patch_bytes, max(1, args.rounds), note) else 1


if __name__ == "__main__":
    sys.exit(main())
