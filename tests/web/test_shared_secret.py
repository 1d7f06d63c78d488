"""server.secret_key: processes of one box sign with one configured key, so a browser's
sign-in cookie and CSRF token made by one process are good on any other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.postgres import same_box_env
from tests.support import (
    add_user,
    api_login,
    bearer,
    browser_login,
    start_server,
    wait_for_status,
)
from vidbox.config import Settings

KEY = "shared-key-for-every-process-of-this-box-0123"


def _same_database(first: Settings, **env: str) -> dict[str, str]:
    """Environment for a second process of ``first``'s box: its database, media store and
    spool in another data dir (any of them may run the box's jobs)."""
    return {**same_box_env(first), **env}


def test_a_sign_in_and_a_share_link_made_by_one_process_are_good_on_another(
    make_settings: Callable[..., Settings], tmp_path: Path, clip: Path
) -> None:
    one = make_settings({"VIDBOX_SERVER__SECRET_KEY": KEY}, data_dir=tmp_path / "one")
    two = make_settings(
        _same_database(one, VIDBOX_SERVER__SECRET_KEY=KEY), data_dir=tmp_path / "two"
    )
    stranger = make_settings(
        _same_database(one, VIDBOX_SERVER__SECRET_KEY="another-key-" + "x" * 32),
        data_dir=tmp_path / "three",
    )
    add_user(one, "ann@example.org")
    servers = [start_server(s) for s in (one, two, stranger)]
    try:
        first, second, third = servers
        with first.client() as browser:
            csrf = browser_login(browser, "ann@example.org")
            cookies = dict(browser.cookies)
        # Neither process wrote a key file of its own: the configured one is used.
        assert not (tmp_path / "one" / "secret.key").exists()
        assert not (tmp_path / "two" / "secret.key").exists()
        with third.client(cookies=cookies) as elsewhere:
            assert elsewhere.get("/settings").status_code != 200
        with second.client(cookies=cookies) as browser:
            assert browser.get("/settings").status_code == 200
            signed_out = browser.post("/logout", data={"_csrf": csrf})
            assert signed_out.status_code == 303, signed_out.text
        # A share link's token is an HMAC of the link's id under the key.
        with first.client() as client:
            ann = bearer(api_login(client, "ann@example.org")["access"])
            files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
            created = client.post("/api/videos", headers=ann, files=files)
            assert created.status_code == 201, created.text
            video_id = created.json()["id"]
            wait_for_status(client, video_id, {"READY"}, headers=ann)
            link = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "public", "expires_in": "1d"},
                headers=ann,
            )
            assert link.status_code == 201, link.text
            path = urlsplit(link.json()["url"]).path
            assert client.get(path).status_code == 200
        with second.client() as client:
            assert client.get(path).status_code == 200
        with third.client() as client:
            assert client.get(path).status_code == 404
    finally:
        for server in servers:
            server.stop()


def test_the_key_is_never_logged(
    make_settings: Callable[..., Settings], caplog: object, tmp_path: Path
) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.DEBUG)
    settings = make_settings({"VIDBOX_SERVER__SECRET_KEY": KEY})
    live = start_server(settings)
    try:
        assert httpx.get(live.url + "/readyz").status_code == 200
    finally:
        live.stop()
    assert KEY not in caplog.text
