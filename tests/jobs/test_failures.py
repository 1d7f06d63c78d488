"""What a video shows when processing fails: FAILED with the reason, or, when it already plays
from its copied rung, READY at its own quality with the reason kept."""

from __future__ import annotations

from tests.support import add_user, run_async
from vidbox.config import Settings
from vidbox.jobs.process_video import record_failure
from vidbox.models import Rendition, Video, VideoStatus
from vidbox.services import open_services


def test_record_failure(settings: Settings) -> None:
    owner = add_user(settings, "ann@example.org")

    async def scenario() -> tuple[Video, Video, Video]:
        async with open_services(settings) as services:
            async with services.db.session() as session:
                playing = Video(owner_id=owner, status=VideoStatus.READY, progress=40)
                encoded = Video(owner_id=owner, status=VideoStatus.READY, progress=60)
                waiting = Video(owner_id=owner, status=VideoStatus.PROCESSING, progress=5)
                session.add_all([playing, encoded, waiting])
                await session.flush()
                session.add(rung(playing.id, "720p", copied=True))
                session.add(rung(encoded.id, "360p", copied=False))
                session.add(rung(encoded.id, "480p", copied=False))
            reason = "The video stream is corrupt after 0:42."
            for video_id in (playing.id, encoded.id, waiting.id, "0" * 32):  # last: deleted
                await record_failure(services.db, video_id, reason)
            async with services.db.read() as session:
                return (
                    await session.get(Video, playing.id),  # type: ignore[return-value]
                    await session.get(Video, encoded.id),  # type: ignore[return-value]
                    await session.get(Video, waiting.id),  # type: ignore[return-value]
                )

    playing, encoded, waiting = run_async(scenario())
    assert playing.status == VideoStatus.READY
    assert playing.progress == 100
    assert playing.error == (
        "Only the original quality is available. The video stream is corrupt after 0:42."
    )
    # Its first rungs were encoded, not copied: "the original" would be untrue.
    assert encoded.status == VideoStatus.READY
    assert (
        encoded.error == "Only 360p and 480p are available. The video stream is corrupt after 0:42."
    )
    assert waiting.status == VideoStatus.FAILED
    assert waiting.error == "The video stream is corrupt after 0:42."


def rung(video_id: str, name: str, *, copied: bool) -> Rendition:
    height = int(name[:-1])
    return Rendition(
        video_id=video_id,
        name=name,
        width=height * 16 // 9,
        height=height,
        bandwidth=1,
        average_bandwidth=1,
        copied=copied,
    )
