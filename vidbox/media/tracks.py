"""What of a source's tracks the renditions carry, and a sentence for what they leave out."""

from __future__ import annotations

from vidbox.media.probe import Probe


def left_out(probe: Probe) -> str | None:
    """What the renditions do not carry, for the video's details: "2 more audio tracks and
    1 subtitle track are only in the original." None when they carry everything.

    Renditions carry one audio track (the default one) and no subtitles: browsers' HLS
    players pick neither alternate audio nor fMP4 subtitles from a single variant.
    """
    parts = []
    extra_audio = max(0, probe.audio_tracks - 1)
    if extra_audio:
        parts.append(f"{extra_audio} more audio track{'s' if extra_audio > 1 else ''}")
    if probe.subtitle_tracks:
        count = probe.subtitle_tracks
        parts.append(f"{count} subtitle track{'s' if count > 1 else ''}")
    if not parts:
        return None
    single = len(parts) == 1 and (extra_audio or probe.subtitle_tracks) == 1
    return f"{' and '.join(parts)} {'is' if single else 'are'} only in the original."
