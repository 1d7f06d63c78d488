"""HLS playlists: reading media playlists, measuring renditions, writing the master playlist.

The master playlist is a pure function of the renditions, so the job can rewrite it each time a
rendition is added and readers always see a complete, consistent file.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from vidbox.media.ladder import INIT_SEGMENT, MEDIA_PLAYLIST


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float


@dataclass(frozen=True)
class MediaPlaylist:
    init_uri: str | None
    segments: list[Segment]
    complete: bool  # has #EXT-X-ENDLIST

    @property
    def durations(self) -> list[float]:
        return [segment.duration for segment in self.segments]

    @property
    def total_duration(self) -> float:
        return sum(self.durations)


@dataclass(frozen=True)
class RenditionInfo:
    name: str  # folder of the rendition, relative to the master playlist
    width: int
    height: int
    bandwidth: int  # peak bits/s over segments, as HLS defines BANDWIDTH
    average_bandwidth: int
    codecs: str  # e.g. "avc1.64001f,mp4a.40.2"
    frame_rate: float | None
    duration_seconds: float


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Segments and their durations from a media playlist written by FFmpeg's HLS muxer."""
    init_uri = None
    segments: list[Segment] = []
    duration: float | None = None
    complete = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            init_uri = _attribute(line, "URI")
        elif line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line == "#EXT-X-ENDLIST":
            complete = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append(Segment(line, duration))
            duration = None
    return MediaPlaylist(init_uri, segments, complete)


def segment_start_times(playlist: MediaPlaylist) -> list[float]:
    """Where every segment but the first starts: keyframe times for the encoded renditions."""
    return list(accumulate(playlist.durations))[:-1]


def well_segmented(playlist: MediaPlaylist, segment_seconds: int) -> bool:
    """Whether no segment is much longer than asked.

    A copied rendition can only be cut at the source's own keyframes; a source with rare
    keyframes (some screen recorders) gives segments so long that seeking and switching
    suffer, and a player holding a segment of twice the target length lags behind the
    encoded renditions it switches to. Such a video is better encoded in full.
    """
    limit = 2 * segment_seconds
    return all(duration <= limit for duration in playlist.durations)


def measure_rendition(directory: Path, *, frame_rate: float | None = None) -> RenditionInfo:
    """Bandwidths from the real segment sizes; size and codecs from the init segment.

    ``frame_rate`` comes from the probe: renditions keep the source's frame rate.
    """
    playlist = parse_media_playlist((directory / MEDIA_PLAYLIST).read_text())
    if not playlist.segments:
        raise ValueError(f"{directory / MEDIA_PLAYLIST} lists no segments")
    peak = 0.0
    total_bits = 0
    for segment in playlist.segments:
        bits = (directory / segment.uri).stat().st_size * 8
        total_bits += bits
        if segment.duration > 0:
            peak = max(peak, bits / segment.duration)
    total_duration = playlist.total_duration
    average = total_bits / total_duration if total_duration > 0 else peak
    init = (directory / (playlist.init_uri or INIT_SEGMENT)).read_bytes()
    width, height = _track_size(init)
    return RenditionInfo(
        name=directory.name,
        width=width,
        height=height,
        bandwidth=math.ceil(max(peak, average)),
        average_bandwidth=math.ceil(average),
        codecs=_codecs(init),
        frame_rate=frame_rate,
        duration_seconds=total_duration,
    )


# Players without their own bandwidth guess (Safari, iOS, most TVs) start on the first
# variant listed: this size looks right on a phone or a laptop and starts fast on most links.
START_SHORT_SIDE = 720


def build_master_playlist(renditions: Sequence[RenditionInfo]) -> str:
    """The master playlist listing ``renditions``: the one whose short side is closest to
    ``START_SHORT_SIDE`` first (the smaller on a tie), then the rest by bandwidth."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    ordered = sorted(renditions, key=lambda r: (r.bandwidth, r.height, r.name))
    if ordered:
        start = min(
            ordered,
            key=lambda r: (abs(min(r.width, r.height) - START_SHORT_SIDE), min(r.width, r.height)),
        )
        ordered.remove(start)
        ordered.insert(0, start)
    for info in ordered:
        attributes = [
            f"BANDWIDTH={info.bandwidth}",
            f"AVERAGE-BANDWIDTH={info.average_bandwidth}",
            f"RESOLUTION={info.width}x{info.height}",
            f'CODECS="{info.codecs}"',
        ]
        if info.frame_rate:
            attributes.append(f"FRAME-RATE={info.frame_rate:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(f"{info.name}/{MEDIA_PLAYLIST}")
    return "\n".join(lines) + "\n"


def fix_target_duration(text: str) -> str:
    """``text`` with #EXT-X-TARGETDURATION at least every segment's rounded duration and 1.

    RFC 8216 4.3.3.1: each EXTINF, rounded to the nearest integer, must not exceed the target
    duration, a decimal-integer of seconds. FFmpeg writes 0 for a clip under half a second
    (and rounds half to even), which players reject or divide by.
    """
    longest = max(parse_media_playlist(text).durations, default=0.0)
    needed = max(1, math.floor(longest + 0.5))
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-TARGETDURATION:"):
            value = line.split(":", 1)[1].strip()
            current = int(value) if value.isdigit() else 0
            lines[i] = f"#EXT-X-TARGETDURATION:{max(current, needed)}"
    return "\n".join(lines)


def _attribute(line: str, name: str) -> str | None:
    for part in line.split(":", 1)[1].split(","):
        key, _, value = part.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


# -- reading the init segment -------------------------------------------------------------
# Just enough MP4 to name the codecs the way browsers want them in CODECS, from the stream
# itself rather than from what we asked the encoder for (a copied source has its own).


def _codecs(init: bytes) -> str:
    codecs = []
    avc = _box_payload(init, b"avcC")
    if avc is not None and len(avc) >= 4:
        # configurationVersion, then profile, constraint flags, level: avc1.PPCCLL.
        codecs.append(f"avc1.{avc[1]:02x}{avc[2]:02x}{avc[3]:02x}")
    esds = _box_payload(init, b"esds")
    if esds is not None:
        codecs.append(f"mp4a.40.{_aac_object_type(esds[4:])}")
    return ",".join(codecs)


def _box_payload(data: bytes, box_type: bytes) -> bytes | None:
    """Payload of the first box of ``box_type`` anywhere in ``data``.

    A byte search, checked against the box's own size field, is enough for the handful of
    boxes FFmpeg's muxer writes into an init segment.
    """
    start = 0
    while (at := data.find(box_type, start)) >= 4:
        size = struct.unpack(">I", data[at - 4 : at])[0]
        if 8 <= size <= len(data) - at + 4:
            return data[at + 4 : at - 4 + size]
        start = at + 1
    return None


def _aac_object_type(descriptors: bytes) -> int:
    """Audio object type from an ES descriptor (2 is AAC-LC, 5 HE-AAC)."""
    i = 0
    while i < len(descriptors):
        tag = descriptors[i]
        i += 1
        length = 0
        for _ in range(4):
            byte = descriptors[i]
            i += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x03:  # ES_Descriptor: id and flags, then nested descriptors
            flags = descriptors[i + 2]
            i += 3 + (2 if flags & 0x80 else 0)
            if flags & 0x40:
                i += 1 + descriptors[i]
            if flags & 0x20:
                i += 2
        elif tag == 0x04:  # DecoderConfigDescriptor: 13 fixed bytes, then nested
            i += 13
        elif tag == 0x05:  # DecoderSpecificInfo: AudioSpecificConfig
            return descriptors[i] >> 3 or 2
        else:
            i += length
    return 2


def _track_size(init: bytes) -> tuple[int, int]:
    """Presentation size of the video track: the first tkhd with a non-zero size."""
    start = 0
    while (at := init.find(b"tkhd", start)) >= 4:
        start = at + 1
        version = init[at + 4]
        # version/flags, then times and ids (64-bit in version 1), then 52 bytes up to width
        offset = at + 8 + (32 if version == 1 else 20) + 52
        if offset + 8 > len(init):
            continue
        width, height = struct.unpack(">II", init[offset : offset + 8])
        if width and height:
            return width >> 16, height >> 16
    raise ValueError("the init segment has no video track")
