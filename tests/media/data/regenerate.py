"""Regenerate the captured FFmpeg outputs in this folder.

Run from the repository root: ``.venv/bin/python tests/media/data/regenerate.py``. Each clip
is generated with lavfi sources in a scratch folder, then the exact probe command of
vidbox.media.probe is run on it and its stderr is stored as ``<name>.txt``. The failure
captures store the stderr of the run that fails.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from vidbox.media.probe import probe_args
from vidbox.media.runner import ffmpeg_exe

HERE = Path(__file__).parent
LAVFI_VIDEO = "testsrc2=size={size}:rate={rate}:duration={duration}"
LAVFI_AUDIO = "sine=frequency=440:duration=2"


def ffmpeg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    return subprocess.run(command, capture_output=True, text=True, check=check)


def video(size: str = "320x240", rate: str = "25", extra: str = "", duration: int = 2) -> list[str]:
    source = LAVFI_VIDEO.format(size=size, rate=rate, duration=duration)
    return ["-f", "lavfi", "-i", source + extra]


AUDIO = ["-f", "lavfi", "-i", LAVFI_AUDIO]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def make_clips() -> dict[str, str]:
    """name -> file name, created in the current directory."""
    ffmpeg(*video(), *AUDIO, *X264, "-c:a", "aac", "-shortest", "landscape.mp4")
    ffmpeg("-display_rotation", "-90", "-i", "landscape.mp4", "-c", "copy", "portrait.mp4")
    ffmpeg(
        *video(),
        *AUDIO,
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
        "vp9_opus.webm",
    )
    ffmpeg(*video(rate="30"), *X264, "no_audio.mp4")
    ffmpeg(*video(size="854x480", rate="30000/1001"), *AUDIO, *X264, "-c:a", "aac", "fwvga.mp4")
    ffmpeg(*video(size="480x360", extra=",setsar=4/3"), *X264, "anamorphic.mp4")
    ffmpeg(*video(), *AUDIO, *X264, "-c:a", "libmp3lame", "mp3_audio.avi")
    ffmpeg(*video(), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
           "-x265-params", "log-level=error", "hevc_10bit.mp4")  # fmt: skip
    ffmpeg(*AUDIO, "-c:a", "aac", "audio_only.m4a")
    ffmpeg(*video(), "-frames:v", "1", "cover.jpg")
    ffmpeg("-i", "cover.jpg", "-i", "landscape.mp4", "-map", "0", "-map", "1", "-c", "copy",
           "-disposition:v:0", "attached_pic", "cover_art_first.mp4")  # fmt: skip
    # Woven fields flagged top first; three audio tracks, the second the default; subtitles.
    Path("one.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    ffmpeg(*video(rate="50"), *AUDIO, *AUDIO, *AUDIO, "-i", "one.srt",
           *[arg for i in range(5) for arg in ("-map", str(i))],
           "-vf", "interlace=scan=tff", *X264, "-flags", "+ildct+ilme", "-x264-params", "tff=1",
           "-c:a", "aac", "-c:s", "mov_text", "-disposition:a:0", "0",
           "-disposition:a:1", "default", "-shortest", "interlaced_multitrack.mp4")  # fmt: skip
    Path("truncated.mp4").write_bytes(Path("landscape.mp4").read_bytes()[:100_000])
    Path("text.mp4").write_text("hello, this is not a video\n")
    return {
        "landscape_h264_aac": "landscape.mp4",
        "portrait_display_matrix": "portrait.mp4",
        "vp9_opus_webm": "vp9_opus.webm",
        "no_audio": "no_audio.mp4",
        "fwvga_854x480": "fwvga.mp4",
        "anamorphic_sar_4_3": "anamorphic.mp4",
        "avi_mp3": "mp3_audio.avi",
        "hevc_10bit": "hevc_10bit.mp4",
        "audio_only": "audio_only.m4a",
        "cover_art_first": "cover_art_first.mp4",
        "truncated_moov_missing": "truncated.mp4",
        "text_named_mp4": "text.mp4",
        "interlaced_multitrack": "interlaced_multitrack.mp4",
    }


def make_failures() -> dict[str, str]:
    """Stderr of failing runs, for describe_failure."""
    data = bytearray(Path("landscape.mp4").read_bytes())
    rng = random.Random(1)
    for i in range(len(data) // 10, len(data) * 9 // 10):
        data[i] = rng.randrange(256)
    Path("garbage.mp4").write_bytes(bytes(data))
    corrupt = ffmpeg("-i", "garbage.mp4", "-f", "null", "-", check=False)
    disk_full = ffmpeg("-i", "landscape.mp4", "-c", "copy", "-f", "mp4", "/dev/full", check=False)
    assert corrupt.returncode != 0 and disk_full.returncode != 0
    return {"failure_corrupt_decode": corrupt.stderr, "failure_disk_full": disk_full.stderr}


def make_ladder_outputs() -> dict[str, str]:
    """FFmpeg's -progress output and an HLS media playlist from one real ladder run."""
    from vidbox.media.ladder import ladder_args, plan_ladder
    from vidbox.media.probe import parse_probe

    ffmpeg(*video(size="640x360", duration=3), *X264, "ladder_source.mp4")
    source_probe = parse_probe(ffmpeg(*probe_args(Path("ladder_source.mp4"))[1:]).stderr)
    plans = plan_ladder(source_probe, ["240p", "360p"], copy_top=False)
    args = ladder_args(
        Path("ladder_source.mp4"),
        Path("out"),
        plans,
        segment_seconds=1,
        preset="ultrafast",
        probe=source_probe,
    )
    for plan in plans:
        (Path("out") / plan.name).mkdir(parents=True)
    run = ffmpeg(*args[1:])
    return {
        "progress_pipe": run.stdout,
        "media_playlist_m3u8": (Path("out") / "240p" / "index.m3u8").read_text(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        for name, file_name in make_clips().items():
            result = ffmpeg(*probe_args(Path(file_name))[1:], check=False)
            (HERE / f"{name}.txt").write_text(result.stderr)
        for name, stderr in make_failures().items():
            (HERE / f"{name}.txt").write_text(stderr)
        for name, text in make_ladder_outputs().items():
            (HERE / f"{name}.txt").write_text(text)
    print(f"wrote captures to {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
