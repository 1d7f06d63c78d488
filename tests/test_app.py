"""create_app's lifespan, as `vidbox serve` runs it."""

from __future__ import annotations

import gc

from tests.support import start_server
from vidbox.config import Settings


def test_start_up_objects_are_left_out_of_garbage_collection_while_serving(
    settings: Settings,
) -> None:
    # Full collections walked every long-lived object of the app, pausing requests for tens
    # of milliseconds; the lifespan freezes what start-up built and thaws it on the way out.
    server = start_server(settings)
    try:
        assert gc.get_freeze_count() > 10_000
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()
    assert gc.get_freeze_count() == 0
