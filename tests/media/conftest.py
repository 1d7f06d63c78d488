"""Tiny real clips, generated once per test session with FFmpeg's lavfi sources."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vidbox.media.runner import ffmpeg_exe

DATA = Path(__file__).parent / "data"

X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def lavfi_video(size: str, seconds: int, rate: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def lavfi_audio(seconds: int) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]


def run_ffmpeg_sync(*args: str) -> subprocess.CompletedProcess[str]:
    """FFmpeg for test setup and checks, outside the code under test."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def make_clip(clip_dir: Path) -> Callable[..., Path]:
    def make(name: str, *args: str) -> Path:
        path = clip_dir / name
        if not path.exists():
            result = run_ffmpeg_sync(*args, str(path))
            assert result.returncode == 0, result.stderr
        return path

    return make


@pytest.fixture(scope="session")
def landscape_clip(make_clip: Callable[..., Path]) -> Path:
    """320x240 H.264 + AAC, 2 s, a keyframe every second: smaller than every usual rung."""
    return make_clip(
        "landscape.mp4",
        *lavfi_video("320x240", 2),
        *lavfi_audio(2),
        *X264,
        "-g",
        "25",
        "-c:a",
        "aac",
        "-shortest",
    )


@pytest.fixture(scope="session")
def wide_clip(make_clip: Callable[..., Path]) -> Path:
    """640x360 H.264 + AAC, 3 s, keyframes every 0.8 s: copied at 360p, 144p/240p encoded."""
    return make_clip(
        "wide.mp4",
        *lavfi_video("640x360", 3),
        *lavfi_audio(3),
        *X264,
        "-g",
        "20",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
    )


@pytest.fixture(scope="session")
def silent_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip("silent.mp4", *lavfi_video("320x240", 2, rate=30), *X264)


@pytest.fixture(scope="session")
def portrait_clip(make_clip: Callable[..., Path], landscape_clip: Path) -> Path:
    """The landscape clip with a phone's display matrix: shown as 240x320."""
    return make_clip(
        "portrait.mp4", "-display_rotation", "-90", "-i", str(landscape_clip), "-c", "copy"
    )


@pytest.fixture(scope="session")
def webm_clip(make_clip: Callable[..., Path]) -> Path:
    return make_clip(
        "vp9_opus.webm",
        *lavfi_video("320x240", 2),
        *lavfi_audio(2),
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
    )


@pytest.fixture(scope="session")
def truncated_clip(clip_dir: Path, landscape_clip: Path) -> Path:
    """An upload cut short: the index (moov) at the end of the file never arrived."""
    path = clip_dir / "truncated.mp4"
    data = landscape_clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def damaged_clip(clip_dir: Path, wide_clip: Path) -> Path:
    """Index intact (faststart) but the data stops half-way: FFmpeg exits 0 on it."""
    path = clip_dir / "damaged.mp4"
    data = wide_clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def text_clip(clip_dir: Path) -> Path:
    path = clip_dir / "notes.mp4"
    path.write_text("shopping list: milk, eggs\n")
    return path


@pytest.fixture(scope="session")
def ffmpeg_sync() -> Callable[..., subprocess.CompletedProcess[str]]:
    """FFmpeg run synchronously, to check outputs independently of the code under test."""
    return run_ffmpeg_sync


@pytest.fixture
def captured() -> Callable[[str], str]:
    """The text of a captured FFmpeg output in tests/media/data."""

    def read(name: str) -> str:
        return (DATA / f"{name}.txt").read_text()

    return read
