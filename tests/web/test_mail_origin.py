"""Links in mail come from an origin the box trusts, never from the request's Host header
(issue 14): with server.base_url unset, a Host: evil.example request must not make the box mail
anyone a link on evil.example."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import (
    add_user,
    api_login,
    bearer,
    clean_env,
    csrf_from,
    logged_setup_token,
    run_cli,
    wait_until,
)
from tests.web.test_share_support import HTML, Smtp, mail_settings, serve, tus_video

ANN, BOB = "ann@example.org", "bob@example.org"
CAROL = "carol@outside.example"  # listed, without an account
EVIL = {"Host": "evil.example"}


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    server = Smtp()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _bodies(smtp: Smtp, address: str) -> list[str]:
    out = []
    for message in smtp.inbox.to(address):
        for part in message.walk():
            if part.get_content_maintype() == "text":
                out.append(str(part.get_content()))  # type: ignore[attr-defined]
    return out


def _share_and_ask(live_url: str, auth: dict[str, str], video_id: str) -> str:
    """A private link for Bob and Carol made, and Carol's access asked for, all with a
    forged Host; returns the link's path."""
    import httpx

    with httpx.Client(base_url=live_url, timeout=30) as client:
        created = client.post(
            f"/api/videos/{video_id}/links",
            json={"visibility": "private", "emails": [BOB, CAROL], "expires_in": "1d"},
            headers={**auth, **EVIL},
        )
        assert created.status_code == 201, created.text
        path = urlsplit(created.json()["url"]).path
        asked = client.post(f"{path}/access", json={"email": CAROL}, headers=EVIL)
        assert asked.status_code == 202
    return path


def test_mailed_links_ignore_the_host_header(
    tmp_path: Path, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mail_settings(tmp_path / "data", smtp.port, VIDBOX_SERVER__BASE_URL="")
    for address in (ANN, BOB):
        add_user(settings, address, name=address[:3].title())
    with caplog.at_level(logging.WARNING, logger="vidbox"):
        live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
        path = _share_and_ask(live.url, ann, video_id)
        wait_until(lambda: smtp.inbox.to(BOB) and smtp.inbox.to(CAROL), what="both mails")
        # The box listens on 127.0.0.1:<port>: that is the origin it trusts.
        for address in (BOB, CAROL):
            for body in _bodies(smtp, address):
                assert "evil.example" not in body
                assert f"{live.url}{path}" in body
        # Start-up said so, since mail is on and base_url is not set.
        assert "server.base_url is not set" in caplog.text
    finally:
        live.stop()


def test_on_every_address_mail_uses_the_origin_setup_was_done_on(
    tmp_path: Path, smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mail_settings(
        tmp_path / "data", smtp.port, VIDBOX_SERVER__BASE_URL="", VIDBOX_SERVER__HOST="0.0.0.0"
    )
    live = serve(settings)  # the test server itself binds loopback only
    try:
        token = logged_setup_token(caplog.records)
        admin_host = {"Host": "videos.lan:8080"}
        with live.client() as client:
            page = client.get(f"/setup?token={token}", headers=admin_host)
            done = client.post(
                f"/setup?token={token}",
                data={
                    "email": ANN,
                    "name": "Ann",
                    "password": "correct horse battery",
                    "_csrf": csrf_from(page.text),
                },
                headers={**admin_host, **HTML},
            )
            assert done.status_code == 303, done.text
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
        add_user(settings, BOB, name="Bob")
        path = _share_and_ask(live.url, ann, video_id)
        wait_until(lambda: smtp.inbox.to(BOB) and smtp.inbox.to(CAROL), what="both mails")
        for address in (BOB, CAROL):
            for body in _bodies(smtp, address):
                assert "evil.example" not in body and "127.0.0.1" not in body
                assert f"http://videos.lan:8080{path}" in body
    finally:
        live.stop()


def test_check_warns_when_mail_is_on_without_base_url(tmp_path: Path, smtp: Smtp) -> None:
    env = clean_env(
        VIDBOX_EMAIL__HOST="127.0.0.1",
        VIDBOX_EMAIL__PORT=str(smtp.port),
        VIDBOX_EMAIL__SECURITY="none",
        VIDBOX_EMAIL__FROM_ADDRESS="box@vidbox.test",
    )
    data = str(tmp_path / "data")
    result = run_cli("check", "--data-dir", data, "--send-test-mail", BOB, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "server.base_url is not set" in result.stdout
    assert "http://127.0.0.1:8080" in result.stdout
    wait_until(lambda: smtp.inbox.to(BOB), what="the test mail")
    assert any("http://127.0.0.1:8080/" in body for body in _bodies(smtp, BOB))
    with_base = {**env, "VIDBOX_SERVER__BASE_URL": "https://videos.example.org"}
    result = run_cli("check", "--data-dir", data, env=with_base)
    assert result.returncode == 0 and "base_url is not set" not in result.stdout
