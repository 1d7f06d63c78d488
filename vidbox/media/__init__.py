"""Video processing with the FFmpeg bundled by imageio-ffmpeg.

Pure parts (``parse_probe``, ``plan_ladder``, the ``*_args`` builders, playlists, progress and
failure descriptions) are kept apart from the one place that runs FFmpeg (``run_ffmpeg``).
A job calls, in order: ``probe`` -> ``make_thumbnail`` -> ``remux_top_rung`` (when
``can_copy``) -> ``encode_ladder`` -> ``measure_rendition`` + ``build_master_playlist``.
"""

from __future__ import annotations

from vidbox.media.errors import MediaError, describe_failure, diagnose_failure, format_timestamp
from vidbox.media.ladder import (
    RenditionPlan,
    can_copy,
    keyframe_args,
    ladder_args,
    plan_ladder,
    remux_args,
    thumbnail_args,
)
from vidbox.media.playlist import (
    MediaPlaylist,
    RenditionInfo,
    build_master_playlist,
    measure_rendition,
    parse_media_playlist,
    segment_start_times,
    well_segmented,
)
from vidbox.media.probe import Probe, parse_probe, probe, probe_args
from vidbox.media.progress import ProgressTracker, parse_progress_line
from vidbox.media.runner import ffmpeg_exe, run_ffmpeg
from vidbox.media.steps import EncodedLadder, encode_ladder, make_thumbnail, remux_top_rung
from vidbox.media.tracks import left_out

__all__ = [
    "EncodedLadder",
    "MediaError",
    "MediaPlaylist",
    "Probe",
    "ProgressTracker",
    "RenditionInfo",
    "RenditionPlan",
    "build_master_playlist",
    "can_copy",
    "describe_failure",
    "diagnose_failure",
    "encode_ladder",
    "ffmpeg_exe",
    "format_timestamp",
    "keyframe_args",
    "ladder_args",
    "left_out",
    "make_thumbnail",
    "measure_rendition",
    "parse_media_playlist",
    "parse_probe",
    "parse_progress_line",
    "plan_ladder",
    "probe",
    "probe_args",
    "remux_args",
    "remux_top_rung",
    "run_ffmpeg",
    "segment_start_times",
    "thumbnail_args",
    "well_segmented",
]
