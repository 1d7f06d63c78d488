"""Every READY video plays: its master playlist and every rendition in it answer over HTTP.

Real uploads of unusual sources (tiny, odd-sized, larger than the top rung) through the API,
processed by the real job runner with the bundled FFmpeg.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import settings_for
from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    run_async,
    start_server,
    wait_for_status,
)
from vidbox.config import Settings
from vidbox.media import ffmpeg_exe
from vidbox.models import Rendition
from vidbox.services import open_services

FAST = {"VIDBOX_PROCESSING__PRESET": "ultrafast", "VIDBOX_PROCESSING__SEGMENT_SECONDS": "1"}


def make_clip(path: Path, source: str, *codec: str) -> Path:
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", source,
        "-f", "lavfi", "-i", "sine=frequency=440:duration=30",
        *codec, "-c:a", "aac", "-shortest", str(path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return path


X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-g", "25")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("playback")
    color = "color=c=red:size={}:rate=25:duration=1"
    test = "testsrc2=size={}:rate=25:duration=1"
    return {
        # 4:4:4 is the only H.264 that can be 1 pixel wide; it cannot be copied.
        "1x1": make_clip(folder / "1x1.mp4", color.format("1x1"), *X264, "-pix_fmt", "yuv444p"),
        "2x2": make_clip(folder / "2x2.mp4", color.format("2x2"), *X264, "-pix_fmt", "yuv420p"),
        "96x96": make_clip(folder / "96.mp4", test.format("96x96"), *X264, "-pix_fmt", "yuv420p"),
        "160x90": make_clip(
            folder / "160x90.mp4", test.format("160x90"), *X264, "-pix_fmt", "yuv420p"
        ),
        "short": make_clip(
            folder / "short.mp4", "testsrc2=size=320x240:rate=25:duration=0.4", *X264
        ),
        "640x360": make_clip(
            folder / "640x360.mp4", test.format("640x360"), *X264, "-pix_fmt", "yuv420p"
        ),
        # What a phone's 8K mode or a render writes: ~200 Mbit/s Constrained Baseline.
        "8k": make_clip(
            folder / "8k.mp4",
            "testsrc2=size=7680x4320:rate=25:duration=0.4",
            *X264,
            "-pix_fmt",
            "yuv420p",
        ),
        "multitrack-interlaced": multitrack_interlaced(folder / "multi.mp4"),
        "20s": make_clip(
            folder / "20s.mp4",
            "testsrc2=size=320x240:rate=25:duration=20",
            *X264,
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "400k",
            "-movflags",
            "+faststart",
        ),
        "10s-360p": make_clip(
            folder / "10s-360p.mp4",
            "testsrc2=size=640x360:rate=25:duration=10",
            *X264,
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ),
    }


def damage(clip: Path, path: Path, start: float, share: float) -> Path:
    """A copy of ``clip`` with ``share`` of its bytes, from ``start`` of the way in, replaced
    by noise: the index is intact, the frames there are not."""
    data = bytearray(clip.read_bytes())
    begin = int(len(data) * start)
    noise = random.Random(15).randbytes(int(len(data) * share))
    data[begin : begin + len(noise)] = noise
    path.write_bytes(bytes(data))
    return path


def multitrack_interlaced(path: Path) -> Path:
    """Real fields (50 pictures a second woven into 25 frames), flagged top field first, with
    three audio tracks (the second, stereo 48 kHz, is the default) and a subtitle track."""
    subtitles = path.with_suffix(".srt")
    subtitles.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    tone = "sine=frequency={}:duration=2:sample_rate={}"
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50:duration=2",
        "-f", "lavfi", "-i", tone.format(440, 44100),
        "-f", "lavfi", "-i", tone.format(660, 48000),
        "-f", "lavfi", "-i", tone.format(880, 44100),
        "-i", str(subtitles),
        "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map", "4",
        "-vf", "interlace=scan=tff", "-c:v", "libx264", "-preset", "ultrafast",
        "-pix_fmt", "yuv420p", "-flags", "+ildct+ilme", "-x264-params", "tff=1", "-g", "25",
        "-c:a", "aac", "-ac:a:1", "2", "-c:s", "mov_text",
        "-disposition:a:0", "0", "-disposition:a:1", "default", str(path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:

    settings: Settings = settings_for(
        data_dir=tmp_path_factory.mktemp("data"),
        environ={**FAST, "VIDBOX_PROCESSING__RENDITIONS": "144p,240p"},
    )
    server = start_server(settings)
    add_user(settings, "ann@example.org")
    with server.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
    yield server, auth
    server.stop()


@pytest.fixture
def client(box: tuple[LiveServer, dict[str, str]]) -> Iterator[httpx.Client]:
    server, auth = box
    with server.client(headers=auth) as client:
        yield client


def process(client: httpx.Client, clip: Path) -> dict:
    created = client.post("/api/videos", files={"file": (clip.name, clip.read_bytes())})
    assert created.status_code == 201, created.text
    video = wait_for_status(client, created.json()["id"], {"READY", "FAILED"}, timeout=120)
    return video


def assert_plays(client: httpx.Client, video: dict) -> list[str]:
    """Fetch the master playlist and, for every variant, its playlist, init and segments;
    returns the variant URIs in the order the master lists them."""
    master = client.get(str(video["hls_url"]))
    assert master.status_code == 200, master.text
    variants = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert variants
    base = str(video["hls_url"]).rsplit("/", 1)[0]
    for variant in variants:
        playlist = client.get(f"{base}/{variant}")
        assert playlist.status_code == 200, (variant, playlist.text)
        folder = f"{base}/{variant.rsplit('/', 1)[0]}"
        files = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
        for name in ["init.mp4", *files]:
            assert client.get(f"{folder}/{name}").status_code == 200, (variant, name)
    return variants


@pytest.mark.parametrize(
    ("size", "names"), [("1x1", None), ("2x2", None), ("96x96", ["96p"]), ("160x90", ["90p"])]
)
def test_tiny_sources_play_or_fail_with_a_reason(
    client: httpx.Client, clips: dict[str, Path], size: str, names: list[str] | None
) -> None:
    video = process(client, clips[size])
    if names is None:
        assert video["status"] == "FAILED", video
        assert video["error"] == (
            f"This video is {size} pixels, too small to play; "
            "it needs at least 16 pixels on each side."
        )
        return
    assert video["status"] == "READY", video
    assert [r["name"] for r in video["renditions"]] == names  # type: ignore[attr-defined]
    assert assert_plays(client, video) == [f"{name}/index.m3u8" for name in names]


def test_nothing_above_the_top_rung_is_offered(
    client: httpx.Client, clips: dict[str, Path]
) -> None:
    # 360p H.264 against a 144p/240p ladder: the source is only the original download.
    video = process(client, clips["640x360"])
    assert video["status"] == "READY", video
    assert [r["name"] for r in video["renditions"]] == ["144p", "240p"]  # type: ignore[index]
    assert_plays(client, video)
    assert client.get(str(video["download_url"])).status_code == 200


def test_a_clip_under_a_second_has_a_target_duration_of_one(
    client: httpx.Client, clips: dict[str, Path]
) -> None:
    video = process(client, clips["short"])
    assert video["status"] == "READY", video
    base = str(video["hls_url"]).rsplit("/", 1)[0]
    for variant in assert_plays(client, video):
        text = client.get(f"{base}/{variant}").text
        target = re.search(r"^#EXT-X-TARGETDURATION:(\d+)$", text, re.M)
        assert target and int(target.group(1)) == 1, (variant, text)
        longest = max(float(d) for d in re.findall(r"^#EXTINF:([\d.]+),", text, re.M))
        assert 0 < longest < 1


def rendition_file(client: httpx.Client, video: dict, name: str, path: Path) -> Path:
    """One rendition downloaded as a single fragmented MP4 (init, then every segment)."""
    base = str(video["hls_url"]).rsplit("/", 1)[0] + f"/{name}"
    playlist = client.get(f"{base}/index.m3u8").text
    files = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    path.write_bytes(b"".join(client.get(f"{base}/{f}").content for f in ["init.mp4", *files]))
    return path


def ffmpeg_report(*args: str) -> str:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stderr


def test_interlaced_multitrack_source_is_deinterlaced_and_says_what_is_left_out(
    box: tuple[LiveServer, dict[str, str]],
    client: httpx.Client,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    video = process(client, clips["multitrack-interlaced"])
    assert video["status"] == "READY", video
    sentence = "2 more audio tracks and 1 subtitle track are only in the original."
    assert video["left_out"] == sentence
    assert video["warnings"] == []
    assert_plays(client, video)
    top = rendition_file(client, video, "240p", tmp_path / "240p.mp4")
    # The default track (stereo, 48 kHz), not the first one (mono, 44.1 kHz).
    assert re.search(r"Audio: aac.*48000 Hz, stereo", ffmpeg_report("-i", str(top)))
    # Fields woven into frames: idet sees progressive pictures, not combing.
    counts = re.findall(
        r"Multi frame detection: TFF:\s*(\d+) BFF:\s*(\d+) Progressive:\s*(\d+)",
        ffmpeg_report("-i", str(top), "-vf", "idet", "-f", "null", "-"),
    )
    assert counts, "idet printed nothing"
    tff, bff, progressive = map(int, counts[-1])  # the last report covers every frame
    assert progressive > 4 * (tff + bff), counts

    server, _ = box
    with server.client() as browser:
        browser_login(browser, "ann@example.org")
        page = browser.get(f"/videos/{video['id']}")
        assert page.status_code == 200
        assert sentence in page.text


def test_damage_mid_stream_is_ready_with_a_warning_saying_where(
    box: tuple[LiveServer, dict[str, str]],
    client: httpx.Client,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    clip = damage(clips["20s"], tmp_path / "damaged.mp4", start=0.6, share=0.02)
    video = process(client, clip)
    assert video["status"] == "READY", video
    assert video["error"] is None
    [warning] = video["warnings"]  # type: ignore[misc]
    assert re.fullmatch(
        r"The video is damaged from 0:1[0-3]; the picture may break up or freeze from there\.",
        warning,
    ), warning
    assert_plays(client, video)
    server, _ = box
    with server.client() as browser:
        browser_login(browser, "ann@example.org")
        assert warning in browser.get(f"/videos/{video['id']}").text


def test_a_mostly_damaged_video_fails_with_a_reason(
    client: httpx.Client, clips: dict[str, Path], tmp_path: Path
) -> None:
    clip = damage(clips["10s-360p"], tmp_path / "wrecked.mp4", start=0.3, share=0.4)
    video = process(client, clip)
    assert video["status"] == "FAILED", video
    assert re.fullmatch(
        r"\d+% of the video's frames are damaged, too many to play\.", video["error"]
    )


def test_an_8k_clip_under_a_second_is_encoded_down_to_the_ladder(
    client: httpx.Client, clips: dict[str, Path]
) -> None:
    video = process(client, clips["8k"])
    assert video["status"] == "READY", video
    renditions = video["renditions"]
    assert [r["name"] for r in renditions] == ["144p", "240p"]  # type: ignore[attr-defined]
    assert [(r["width"], r["height"]) for r in renditions] == [(256, 144), (426, 240)]  # type: ignore[attr-defined]
    assert all(r["bitrate"] < 2_000_000 for r in renditions)  # type: ignore[attr-defined]
    base = str(video["hls_url"]).rsplit("/", 1)[0]
    for variant in assert_plays(client, video):
        assert "#EXT-X-TARGETDURATION:1\n" in client.get(f"{base}/{variant}").text


def test_rows_named_before_the_one_definition_are_left_out_of_the_master(
    box: tuple[LiveServer, dict[str, str]], client: httpx.Client, clips: dict[str, Path]
) -> None:
    video = process(client, clips["160x90"])
    server, _ = box

    async def add_legacy_row() -> None:
        async with open_services(server.settings) as services, services.db.session() as session:
            session.add(
                Rendition(
                    video_id=str(video["id"]), name="16000p", width=16000, height=16000,
                    bandwidth=243_000_000, average_bandwidth=243_000_000, codecs="avc1.42c03c",
                )
            )  # fmt: skip

    run_async(add_legacy_row())
    assert assert_plays(client, video) == ["90p/index.m3u8"]
