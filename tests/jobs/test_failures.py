"""What a video shows when processing fails: FAILED with the reason, or, when it already plays
from its copied rung, READY at its own quality with the reason kept."""

from __future__ import annotations

from tests.support import add_user, run_async
from vidbox.config import Settings
from vidbox.jobs.process_video import record_failure
from vidbox.models import Video, VideoStatus
from vidbox.services import open_services


def test_record_failure(settings: Settings) -> None:
    owner = add_user(settings, "ann@example.org")

    async def scenario() -> tuple[Video, Video]:
        async with open_services(settings) as services:
            async with services.db.session() as session:
                playing = Video(owner_id=owner, status=VideoStatus.READY, progress=40)
                waiting = Video(owner_id=owner, status=VideoStatus.PROCESSING, progress=5)
                session.add_all([playing, waiting])
            reason = "The video stream is corrupt after 0:42."
            await record_failure(services.db, playing.id, reason)
            await record_failure(services.db, waiting.id, reason)
            await record_failure(services.db, "0" * 32, reason)  # deleted meanwhile: no error
            async with services.db.read() as session:
                return (
                    await session.get(Video, playing.id),  # type: ignore[return-value]
                    await session.get(Video, waiting.id),
                )

    playing, waiting = run_async(scenario())
    assert playing.status == VideoStatus.READY
    assert playing.progress == 100
    assert playing.error == (
        "Only the original quality is available. The video stream is corrupt after 0:42."
    )
    assert waiting.status == VideoStatus.FAILED
    assert waiting.error == "The video stream is corrupt after 0:42."
