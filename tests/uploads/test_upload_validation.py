from __future__ import annotations

import subprocess

import imageio_ffmpeg
import pytest

from vidbox.uploads import UploadError, check_upload, clean_filename, sniff_container
from vidbox.uploads.validation import HEAD_BYTES

ALLOWED = ["mp4", "mov", "avi", "webm", "mkv"]
REFUSED = "Only MP4, MOV, AVI, WebM and MKV videos are accepted."
NOT_VIDEO = "This file does not look like a video: its content is not MP4, MOV, AVI, WebM or MKV."

# Container name -> (file suffix, FFmpeg output options). Codecs are the cheapest each
# container takes; webm only takes VP8/VP9/AV1.
CLIP_RECIPES = {
    "mp4": ("mp4", ["-c:v", "mpeg4"]),
    "mov": ("mov", ["-c:v", "mpeg4"]),
    "avi": ("avi", ["-c:v", "mpeg4"]),
    "webm": ("webm", ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]),
    "mkv": ("mkv", ["-c:v", "mpeg4"]),
}


@pytest.fixture(scope="session")
def clip_heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The first HEAD_BYTES of a real 1 s 160x120 clip in each container, made by FFmpeg."""
    folder = tmp_path_factory.mktemp("clips")
    heads = {}
    for name, (suffix, options) in CLIP_RECIPES.items():
        out = folder / f"clip.{suffix}"
        subprocess.run(
            [
                imageio_ffmpeg.get_ffmpeg_exe(),
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=10:duration=1",
                *options,
                "-y",
                str(out),
            ],
            check=True,
            timeout=60,
        )
        heads[name] = out.read_bytes()[:HEAD_BYTES]
    return heads


@pytest.mark.parametrize("container", list(CLIP_RECIPES))
def test_sniff_recognises_each_container_from_a_real_clip(
    clip_heads: dict[str, bytes], container: str
) -> None:
    assert sniff_container(clip_heads[container]) == container


def test_sniff_refuses_text_empty_and_truncated_heads(clip_heads: dict[str, bytes]) -> None:
    assert sniff_container(b"") is None
    assert sniff_container(b"hello, this is a text file\n" * 20) is None
    assert sniff_container(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # a WAV, not an AVI
    assert sniff_container(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00") is None  # AVIF still
    # The EBML magic alone is Matroska in general; WebM is only claimed when the DocType says.
    assert sniff_container(clip_heads["mkv"][:4]) == "mkv"
    assert sniff_container(clip_heads["webm"][:4]) == "mkv"


def test_sniff_looks_only_at_the_first_4_kib() -> None:
    assert sniff_container(b"\x00" * HEAD_BYTES + b"RIFF\x00\x00\x00\x00AVI ") is None


@pytest.mark.parametrize(
    ("filename", "declared", "container", "expected"),
    [
        ("holiday.mp4", "video/mp4", "mp4", "mp4"),
        ("HOLIDAY.MP4", "video/mp4; codecs=avc1", "mp4", "mp4"),
        ("clip.mov", "video/quicktime", "mov", "mov"),
        ("clip.avi", "video/x-msvideo", "avi", "avi"),
        ("clip.avi", "video/avi", "avi", "avi"),
        ("clip.webm", "video/webm", "webm", "webm"),
        ("clip.mkv", "video/x-matroska", "mkv", "mkv"),
        # Unknown type: the bytes decide.
        ("clip.mp4", "application/octet-stream", "mp4", "mp4"),
        ("clip.mkv", "", "mkv", "mkv"),
        ("clip.webm", None, "webm", "webm"),
        # Same family under another name: the content's real container is returned.
        ("phone.mov", "video/quicktime", "mp4", "mp4"),
        ("camera.mp4", "video/mp4", "mov", "mov"),
        ("stream.mkv", "video/x-matroska", "webm", "webm"),
        # Another container altogether than the name says: FFmpeg reads the content, so it
        # is taken, and known by what it really is.
        ("holiday.mp4", "video/mp4", "mkv", "mkv"),
        ("holiday.webm", "video/webm", "mp4", "mp4"),
        ("clip.avi", "video/x-msvideo", "mov", "mov"),
        # No extension at all (a tus client without a filename): the bytes decide.
        ("", None, "avi", "avi"),
    ],
)
def test_check_upload_accepts(
    clip_heads: dict[str, bytes], filename: str, declared: str | None, container: str, expected: str
) -> None:
    assert check_upload(filename, declared, clip_heads[container], ALLOWED) == expected


@pytest.mark.parametrize(
    ("filename", "declared", "container", "message"),
    [
        ("notes.txt", "text/plain", "mp4", REFUSED),
        ("photo.jpg", "application/octet-stream", "mp4", REFUSED),
        ("clip.mp4", "image/png", "mp4", REFUSED),
        ("clip.mp4", "application/pdf", "mp4", REFUSED),
        ("clip.mpg", "video/mpeg", "mp4", REFUSED),
        # Name and type fine, bytes are not a video.
        ("clip.mp4", "video/mp4", None, NOT_VIDEO),
        ("clip.mkv", "", None, NOT_VIDEO),
        ("", None, None, NOT_VIDEO),
    ],
)
def test_check_upload_refuses_with_a_sentence_and_415(
    clip_heads: dict[str, bytes],
    filename: str,
    declared: str | None,
    container: str | None,
    message: str,
) -> None:
    head = clip_heads[container] if container else b"just some text, not a video at all"
    with pytest.raises(UploadError) as caught:
        check_upload(filename, declared, head, ALLOWED)
    assert caught.value.status == 415
    assert caught.value.detail == message


def test_check_upload_follows_the_configured_formats(clip_heads: dict[str, bytes]) -> None:
    allowed = ["mp4", "webm"]
    assert check_upload("a.webm", "video/webm", clip_heads["webm"], allowed) == "webm"
    with pytest.raises(UploadError) as caught:
        check_upload("a.avi", "video/x-msvideo", clip_heads["avi"], allowed)
    assert caught.value.detail == "Only MP4 and WebM videos are accepted."
    # Without a name, the content itself must be one of the allowed formats.
    with pytest.raises(UploadError) as caught:
        check_upload("", None, clip_heads["avi"], allowed)
    assert caught.value.detail == (
        "This file does not look like a video: its content is not MP4 or WebM."
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd.mp4", "passwd.mp4"),
        ("C:\\Users\\Ana\\Videos\\My holiday.mov", "My holiday.mov"),
        ("\\\\server\\share\\clip.avi", "clip.avi"),
        ("clip\x00.mp4", "clip.mp4"),
        ("line\nbreak\t.mp4", "linebreak.mp4"),
        # U+202E would make "clip\u202e4pm.exe" display as "clipexe.mp4".
        ("clip\u202e4pm.exe", "clip4pm.exe"),
        ("\u2066a\u2069\u200e\u200fb.mp4", "ab.mp4"),
        ("Cafe\u0301.mp4", "Caf\u00e9.mp4"),  # NFC
        ("  . my clip .mp4 . ", "my clip.mp4"),
        (".mp4", "video.mp4"),
        ("...", "video"),
        ("", "video"),
        ("   ", "video"),
        ("folder/", "video"),
        ("no_extension", "no_extension"),
        ("vacances été 2024.webm", "vacances été 2024.webm"),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


def test_clean_filename_caps_length_and_keeps_the_extension() -> None:
    cleaned = clean_filename("a" * 300 + ".mp4")
    assert len(cleaned) == 200
    assert cleaned == "a" * 196 + ".mp4"
    # A cut that lands on spaces or dots does not leave them dangling before the extension.
    cleaned = clean_filename("b" * 190 + " " * 20 + "c" * 50 + ".webm")
    assert cleaned == "b" * 190 + ".webm"
    # Without an extension the whole name is capped.
    assert clean_filename("x" * 300) == "x" * 200
