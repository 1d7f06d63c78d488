"""Every READY video plays: its master playlist and every rendition in it answer over HTTP.

Real uploads of unusual sources (tiny, odd-sized, larger than the top rung) through the API,
processed by the real job runner with the bundled FFmpeg.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import LiveServer, add_user, api_login, bearer, start_server, wait_for_status
from vidbox.config import Settings
from vidbox.media import ffmpeg_exe

FAST = {"VIDBOX_PROCESSING__PRESET": "ultrafast", "VIDBOX_PROCESSING__SEGMENT_SECONDS": "1"}


def make_clip(path: Path, source: str, *codec: str) -> Path:
    command = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-f", "lavfi", "-i", source,
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
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
    }


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    from vidbox.config import load_settings

    settings: Settings = load_settings(
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
