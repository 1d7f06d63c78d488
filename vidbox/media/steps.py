"""The processing steps a job runs, in order: probe, thumbnail, remux, ladder, master playlist.

Each step is a pure argument builder plus the runner; the job decides what to store where.
Steps take no timeout of their own: the job bounds the whole run with ``asyncio.timeout``, and
cancellation stops FFmpeg cleanly.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vidbox.media.errors import MediaError, damaged_from, describe_incomplete, has_decode_errors
from vidbox.media.ladder import (
    MEDIA_PLAYLIST,
    RenditionPlan,
    ladder_args,
    locate_damage_args,
    remux_args,
    thumbnail_args,
)
from vidbox.media.playlist import fix_target_duration, parse_media_playlist
from vidbox.media.probe import Probe
from vidbox.media.runner import ProgressCallback, run_ffmpeg


async def make_thumbnail(src: Path, dst: Path, probe: Probe) -> None:
    """Write the 1280x720 JPEG poster of ``src`` to ``dst``."""
    await asyncio.to_thread(dst.parent.mkdir, parents=True, exist_ok=True)
    await run_ffmpeg(thumbnail_args(src, dst, probe))
    if not await asyncio.to_thread(_non_empty_file, dst):
        raise MediaError("The first frame of the video cannot be decoded.", permanent=True)


async def remux_top_rung(
    src: Path,
    out_dir: Path,
    plan: RenditionPlan,
    segment_seconds: int,
    *,
    duration: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Copy the source into the ``plan.name`` rendition; returns its folder."""
    rendition_dir = out_dir / plan.name
    await asyncio.to_thread(_fresh_dir, rendition_dir)
    await run_ffmpeg(
        remux_args(src, out_dir, plan, segment_seconds),
        duration=duration,
        on_progress=on_progress,
    )
    await asyncio.to_thread(_written_seconds, rendition_dir)
    return rendition_dir


@dataclass(frozen=True)
class EncodedLadder:
    dirs: list[Path]  # one folder per encoded rendition
    warnings: list[str]  # sentences for the video's page, e.g. where damage starts


async def encode_ladder(
    src: Path,
    out_dir: Path,
    plans: Sequence[RenditionPlan],
    probe: Probe,
    segment_seconds: int,
    preset: str,
    on_progress: ProgressCallback | None = None,
    keyframe_times: Sequence[float] | None = None,
) -> EncodedLadder:
    """Encode every non-copy plan in one FFmpeg run.

    Raises MediaError (permanent) when FFmpeg stopped early on damaged data, which it does
    with exit status 0 for a truncated file, or when more than ``MAX_DECODE_ERROR_RATE`` of
    the frames failed to decode. Fewer decode errors make a warning saying where they start.
    """
    encoded = [plan for plan in plans if not plan.copy]
    dirs = [out_dir / plan.name for plan in encoded]
    for rendition_dir in dirs:
        await asyncio.to_thread(_fresh_dir, rendition_dir)
    stderr = await run_ffmpeg(
        ladder_args(
            src,
            out_dir,
            encoded,
            segment_seconds=segment_seconds,
            preset=preset,
            probe=probe,
            keyframe_times=keyframe_times,
        ),
        duration=probe.duration_seconds,
        on_progress=on_progress,
    )
    for rendition_dir in dirs:
        written = await asyncio.to_thread(_written_seconds, rendition_dir)
        damaged = describe_incomplete(stderr, written, probe.duration_seconds)
        if damaged:
            raise MediaError(damaged, permanent=True)
    warnings = []
    if has_decode_errors(stderr):
        warnings.append(damaged_from(await locate_damage(src, probe.duration_seconds)))
    return EncodedLadder(dirs, warnings)


async def locate_damage(src: Path, duration: float | None) -> float | None:
    """Seconds into ``src`` where decoding first fails; None when that cannot be told."""
    if not duration:
        return None
    reached: list[float] = []

    def seen(percent: float) -> None:
        if percent < 100:  # 100 is "progress=end", not a position
            reached.append(percent * duration / 100)

    try:
        await run_ffmpeg(locate_damage_args(src), duration=duration, on_progress=seen)
    except MediaError:
        pass  # the point of -xerror: FFmpeg stops at the first damaged frame
    else:
        return None  # decoded to the end: the damage was in what the ladder alone saw
    return reached[-1] if reached else 0.0


def _fresh_dir(path: Path) -> None:
    # A retried job must not mix segments of two attempts in one playlist folder.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _non_empty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _written_seconds(rendition_dir: Path) -> float:
    """Seconds of video in the rendition's complete playlist; MediaError if there is none.
    Corrects the playlist's target duration where FFmpeg got it wrong."""
    playlist_path = rendition_dir / MEDIA_PLAYLIST
    if playlist_path.is_file():
        text = playlist_path.read_text()
        playlist = parse_media_playlist(text)
        if playlist.segments and playlist.complete:
            fixed = fix_target_duration(text)
            if fixed != text:
                playlist_path.write_text(fixed)
            return playlist.total_duration
    raise MediaError("FFmpeg finished without writing the video segments.", permanent=False)
