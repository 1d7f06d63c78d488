"""An address counts for private links only once proven (issue 14): with open registration
anyone can sign up with someone else's address, and must not then receive what is shared
with it until the mailed confirmation link is used."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import add_user, api_login, bearer, browser_login, csrf_from, wait_until
from tests.web.test_share_support import (
    HTML,
    Box,
    Smtp,
    link_in,
    mail_jobs,
    mail_settings,
    make_link,
    path_of,
    serve,
    sql,
    tus_video,
)
from vidbox.db import migrate_sync, schema_status

ANN, BOB, GUS = "ann@example.org", "bob@example.org", "gus@example.org"
PASSWORD = "correct horse battery"
CONFIRM = "Confirm your email address on Family Videos"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    smtp = Smtp()
    smtp.start()
    data = tmp_path_factory.mktemp("verified") / "data"
    settings = mail_settings(data, smtp.port, VIDBOX_AUTH__REGISTRATION="open")
    add_user(settings, ANN, name="Ann")
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
            client.patch(f"/api/videos/{video_id}", json={"title": "Holiday"}, headers=ann)
        yield Box(live, smtp, video_id, {"ann": ann})
    finally:
        live.stop()
        smtp.stop()


def _register(box: Box, address: str) -> dict[str, str]:
    with box.client() as client:
        made = client.post(
            "/api/auth/register", json={"email": address, "password": PASSWORD, "name": "Eve"}
        )
        assert made.status_code == 201, made.text
        assert made.json()["email_verified"] is False
        return bearer(api_login(client, address)["access"])


def test_someone_elses_address_sees_nothing_until_confirmed(box: Box) -> None:
    # Eve signs up with Bob's address, then Ann shares privately with Bob.
    eve = _register(box, BOB)
    link = make_link(box, visibility="private", emails=[BOB])
    path = path_of(link)
    with box.client() as client:
        assert client.get("/api/me", headers=eve).json()["email_verified"] is False
        page = client.get(path, headers={**HTML, **eve})
        assert f'action="{path}/access"' in page.text and "Holiday" not in page.text
        assert client.get(f"{path}/hls/master.m3u8", headers=eve).status_code == 403
        assert client.get(f"/shared/{link['id']}", headers=eve).status_code == 404
        assert client.get("/api/notifications", headers=eve).json()["unread"] == 0
    # No share notification for the unproven account: only the confirmation went out.
    wait_until(lambda: box.smtp.inbox.to(BOB), what="the confirmation mail")
    assert not any('"to": "bob@' in job[1] and "share" in job[1] for job in mail_jobs(box.settings))
    [confirmation] = box.smtp.inbox.to(BOB)
    assert confirmation["Subject"] == CONFIRM

    # The one who reads Bob's mail confirms; a mail scanner's GETs confirm nothing.
    enter = link_in(confirmation)
    assert enter.startswith("/verify-email/")
    with box.client() as browser:
        for _ in range(2):
            shown = browser.get(enter, headers=HTML)
            assert shown.status_code == 200 and "Confirm my address" in shown.text
        with box.client() as client:
            assert client.get("/api/me", headers=eve).json()["email_verified"] is False
        done = browser.post(enter, data={"_csrf": csrf_from(shown.text)}, headers=HTML)
        assert done.status_code == 303
    with box.client() as client:
        assert client.get("/api/me", headers=eve).json()["email_verified"] is True
        page = client.get(path, headers={**HTML, **eve})
        assert "still being processed" in page.text
        assert client.get(f"/shared/{link['id']}", headers=eve).status_code == 303
        assert client.get("/verify-email/forged", headers=HTML).status_code == 404


def test_the_banner_and_asking_again(box: Box) -> None:
    _register(box, GUS)
    wait_until(lambda: box.smtp.inbox.to(GUS), what="the first confirmation mail")
    with box.client() as browser:
        csrf = browser_login(browser, GUS, PASSWORD)
        assert "data-email-unverified" in browser.get("/").text
        again = browser.post("/verify-email", data={"_csrf": csrf})
        assert again.status_code == 303
    with box.client() as client:
        token = bearer(api_login(client, GUS, PASSWORD)["access"])
        assert client.post("/api/me/verify-email", headers=token).status_code == 202
        ann = client.post("/api/me/verify-email", headers=box.auth["ann"])
        assert ann.status_code == 409  # already proven
    wait_until(lambda: len(box.smtp.inbox.to(GUS)) == 3, what="three confirmation mails")
    with box.client() as browser:
        browser_login(browser, ANN)
        assert "data-email-unverified" not in browser.get("/").text


def test_an_admin_can_confirm_an_address(box: Box) -> None:
    dora = "dora@example.org"
    token = _register(box, dora)
    add_user(box.settings, "root@example.org", admin=True)
    with box.client() as browser:
        browser_login(browser, "root@example.org")
        page = browser.get("/admin")
        [(user_id,)] = sql(box.settings, "SELECT id FROM users WHERE email = ?", dora)
        assert f"/admin/users/{user_id}/verify-email" in page.text
        done = browser.post(
            f"/admin/users/{user_id}/verify-email", data={"_csrf": csrf_from(page.text)}
        )
        assert done.status_code == 303
    with box.client() as client:
        assert client.get("/api/me", headers=token).json()["email_verified"] is True


def test_upgrading_keeps_existing_accounts_proven(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    migrate_sync(path, "0004")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name, password_hash, is_admin, disabled, created_at)"
            " VALUES ('u1', 'ann@example.org', 'Ann', 'x', 0, 0, '2026-01-02 03:04:05')"
        )
    migrate_sync(path)
    current, head = schema_status(path)
    assert current == head
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT email_verified FROM users").fetchall() == [(1,)]
        conn.execute(
            "INSERT INTO users (id, email, name, password_hash, is_admin, disabled, created_at)"
            " VALUES ('u2', 'new@example.org', '', 'x', 0, 0, '2026-01-02 03:04:05')"
        )
        # Rows written without the column (an older tool) start unproven.
        new = conn.execute("SELECT email_verified FROM users WHERE id = 'u2'").fetchall()
        assert new == [(0,)]
