"""The whole data folder on a disk that fills up: new uploads are refused early with 507, and
signing in and browsing keep working."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.postgres import only_sqlite
from tests.support import (
    PASSWORD,
    add_user,
    api_login,
    bearer,
    browser_login,
    fill_disk,
    small_filesystem,
    start_server,
)
from vidbox.config import Settings

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB file system of its own for the data folder (needs root to mount; the test is
    skipped elsewhere)."""
    with small_filesystem(tmp_path / "data", "64m") as data:
        yield data


def create_upload(client: object, auth: dict[str, str], length: int) -> object:
    return client.post(  # type: ignore[attr-defined]
        "/api/uploads",
        headers={**auth, **TUS, "Upload-Length": str(length), "Upload-Metadata": ""},
    )


def test_uploads_stop_while_the_reserve_is_left(
    make_settings: Callable[..., Settings], small_data_dir: Path
) -> None:
    # A reserve bigger than the whole disk: nothing may start, yet everything else works.
    settings = make_settings(
        {"VIDBOX_UPLOADS__RESERVE_BYTES": str(128 * 1024**2)}, data_dir=small_data_dir
    )
    live = start_server(settings)
    try:
        add_user(settings, "ann@example.org")
        with live.client() as client:
            auth = bearer(api_login(client, "ann@example.org")["access"])
            refused = create_upload(client, auth, 1000)
            assert refused.status_code == 507, refused.text
            assert "free space" in refused.json()["detail"]
            one_shot = client.post(
                "/api/videos", headers=auth, files={"file": ("a.mp4", b"\0" * 1000)}
            )
            assert one_shot.status_code == 507, one_shot.text
            assert str(small_data_dir) not in one_shot.text
    finally:
        live.stop()


@only_sqlite
def test_a_full_disk_keeps_sign_in_and_browsing_working(
    make_settings: Callable[..., Settings], small_data_dir: Path
) -> None:
    settings = make_settings(
        {"VIDBOX_UPLOADS__RESERVE_BYTES": str(1024**2)}, data_dir=small_data_dir
    )
    live = start_server(settings)
    try:
        add_user(settings, "ann@example.org")
        with live.client() as client, live.client() as browser:
            auth = bearer(api_login(client, "ann@example.org")["access"])
            browser_login(browser, "ann@example.org")
            fill_disk(small_data_dir / "filler")

            signed_in = client.post(
                "/api/auth/login", json={"email": "ann@example.org", "password": PASSWORD}
            )
            # The first write to meet the full disk may answer 507 (and free the emergency
            # space); sign-in works from then on.
            if signed_in.status_code == 507:
                assert "disk is full" in signed_in.json()["detail"]
                signed_in = client.post(
                    "/api/auth/login", json={"email": "ann@example.org", "password": PASSWORD}
                )
            assert signed_in.status_code == 200, signed_in.text
            assert client.get("/api/videos", headers=auth).status_code == 200
            assert browser.get("/").status_code == 200
            assert browser.get("/settings").status_code == 200
            login_page = client.get("/login")
            assert login_page.status_code == 200
            form = client.post("/login", data={"email": "ann@example.org", "password": PASSWORD})
            assert form.status_code < 500, form.text
            refused = create_upload(client, auth, 1000)
            assert refused.status_code == 507, refused.text

            (small_data_dir / "filler").unlink()
            again = client.post(
                "/api/auth/login", json={"email": "ann@example.org", "password": PASSWORD}
            )
            assert again.status_code == 200, again.text
            assert create_upload(client, auth, 1000).status_code == 201
    finally:
        live.stop()
