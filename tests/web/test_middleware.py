"""Headers every response carries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support import start_server
from vidbox.config import Settings


def test_hsts_only_when_the_box_is_served_over_https(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    for base_url, expected in (
        ("https://videos.example.org", "max-age=31536000"),
        ("http://videos.example.org", None),
        ("", None),
    ):
        settings = make_settings(
            {"VIDBOX_SERVER__BASE_URL": base_url}, data_dir=tmp_path / str(len(base_url))
        )
        live = start_server(settings)
        try:
            with live.client() as client:
                for path in ("/healthz", "/login", "/api/videos", "/no-such-page"):
                    answer = client.get(path)
                    assert answer.headers.get("strict-transport-security") == expected, path
        finally:
            live.stop()
