"""Share links over real HTTP: the owner's link API, the /s/{token} pages and media, expiry and
revocation, views, the pages for people signed in. Private links, mail and notifications are in
test_share_private.py. One video is uploaded and processed for the whole module."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.postgres import db_time
from tests.support import (
    add_user,
    api_login,
    bearer,
    browser_login,
    wait_for_status,
)
from tests.web.test_share_support import (
    BASE_URL,
    HTML,
    Box,
    Smtp,
    mail_settings,
    make_link,
    media_paths,
    path_of,
    serve,
    sql,
    tus_video,
)
from vidbox.models import utcnow

PRESETS = {
    "1h": timedelta(hours=1),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
    "30d": timedelta(days=30),
}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Iterator[Box]:
    smtp = Smtp()
    smtp.start()
    settings = mail_settings(tmp_path_factory.mktemp("share-links") / "data", smtp.port)
    for address, name in (("ann@example.org", "Ann"), ("eve@example.org", "Eve")):
        add_user(settings, address, name=name)
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, "ann@example.org")["access"])
            eve = bearer(api_login(client, "eve@example.org")["access"])
            created = client.post(
                "/api/videos",
                headers=ann,
                files={"file": ("holiday.mp4", clip.read_bytes(), "video/mp4")},
                data={"title": "Holiday 2026"},
            )
            assert created.status_code == 201, created.text
            video_id = created.json()["id"]
            wait_for_status(client, video_id, {"READY"}, headers=ann)
        yield Box(live, smtp, video_id, {"ann": ann, "eve": eve})
    finally:
        live.stop()
        smtp.stop()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_every_preset_sets_its_expiry_and_the_url_is_absolute(box: Box) -> None:
    links = {preset: make_link(box, expires_in=preset) for preset in [*PRESETS, "forever"]}
    for preset, delta in PRESETS.items():
        link = links[preset]
        assert parse_time(link["expires_at"]) - parse_time(link["created_at"]) == delta
        assert link["status"] == "active"
    forever = links["forever"]
    assert forever["expires_at"] is None and forever["status"] == "active"
    assert forever["visibility"] == "public" and forever["emails"] == []
    assert forever["allow_download"] is False
    assert forever["view_count"] == 0 and forever["last_viewed_at"] is None
    assert forever["video_id"] == box.video_id and forever["video_title"] == "Holiday 2026"
    token = path_of(forever).removeprefix("/s/")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 256 bits, URL-safe
    # Any case of the visibility is accepted; the stored and returned value is lower case.
    assert make_link(box, visibility="PUBLIC", expires_in="1h")["visibility"] == "public"

    with box.client() as client:
        of_video = client.get(f"/api/videos/{box.video_id}/links", headers=box.auth["ann"])
        everything = client.get("/api/links", headers=box.auth["ann"])
    assert of_video.status_code == 200 and everything.status_code == 200
    listed = of_video.json()["items"]
    # Newest first, and the owner can copy the same URL again at any time.
    created = [item["created_at"] for item in listed]
    assert created == sorted(created, reverse=True)
    assert {item["id"]: item["url"] for item in listed}.items() >= {
        link["id"]: link["url"] for link in links.values()
    }.items()
    assert [i["id"] for i in everything.json()["items"]][: len(listed)] == [i["id"] for i in listed]

    # The database keeps only the token's hash.
    stored = sql(box.settings, "SELECT * FROM share_links WHERE id = ?", forever["id"])[0]
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert not any(token in str(column) for column in stored)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"visibility": "friends", "expires_in": "1d"}, {"visibility"}),
        ({"visibility": "public", "expires_in": "2d"}, {"expires_in"}),
        ({"visibility": "public"}, {"expires_in"}),
        ({"visibility": "private", "expires_in": "1d"}, {"emails"}),
        ({"visibility": "private", "expires_in": "1d", "emails": ["not-an-email"]}, {"emails"}),
        (
            {"visibility": "private", "expires_in": "1d", "emails": ["a@x.org", "A@x.org "]},
            {"emails"},
        ),
        ({"visibility": "private", "expires_in": "1d", "emails": "a@x.org"}, set()),
        ({"visibility": "public", "expires_in": "1d", "emails": ["a@x.org"]}, {"emails"}),
        (
            {"visibility": "public", "expires_in": "1d", "allow_download": "maybe"},
            {"allow_download"},
        ),
        (
            {"visibility": 3, "expires_in": None, "emails": 5},
            {"visibility", "expires_in", "emails"},
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    box: Box, body: dict[str, object], fields: set[str]
) -> None:
    with box.client() as client:
        response = client.post(
            f"/api/videos/{box.video_id}/links", json=body, headers=box.auth["ann"]
        )
    if not fields:
        assert response.status_code == 201, response.text
        assert response.json()["emails"] == ["a@x.org"]
        return
    assert response.status_code == 400, response.text
    assert set(response.json()["errors"]) == fields
    assert response.json()["detail"]


def test_status_filter_must_be_known(box: Box) -> None:
    with box.client() as client:
        response = client.get("/api/links?status=sleeping", headers=box.auth["ann"])
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"status"}


def test_another_user_can_neither_list_nor_create_nor_revoke(box: Box) -> None:
    link = make_link(box)
    eve = box.auth["eve"]
    with box.client() as client:
        assert client.get(f"/api/videos/{box.video_id}/links", headers=eve).status_code == 404
        created = client.post(
            f"/api/videos/{box.video_id}/links",
            json={"visibility": "public", "expires_in": "1d"},
            headers=eve,
        )
        assert created.status_code == 404
        assert client.delete(f"/api/links/{link['id']}", headers=eve).status_code == 404
        assert client.get("/api/links", headers=eve).json()["items"] == []
        assert client.get("/api/links").status_code == 401
        assert client.delete(f"/api/links/{link['id']}").status_code == 401
        assert client.get(path_of(link)).status_code == 200  # still active


def test_public_page_has_player_and_open_graph_and_counts_views(box: Box) -> None:
    link = make_link(box, expires_in="30d")
    path = path_of(link)
    with box.client() as client:
        page = client.get(path, headers=HTML)
        assert page.status_code == 200
        html = page.text
        assert "Holiday 2026" in html
        assert f'data-master="{path}/hls/master.m3u8"' in html
        assert f'poster="{path}/thumbnail.jpg"' in html
        assert "0:02" in html  # the duration
        assert 'property="og:type" content="video.other"' in html
        assert 'property="og:title" content="Holiday 2026"' in html
        assert f'property="og:image" content="{BASE_URL}{path}/thumbnail.jpg"' in html
        assert f'property="og:url" content="{BASE_URL}{path}"' in html
        assert "<script>" not in html  # CSP: no inline scripts
        assert "share-download" not in html and 'data-original=""' in html

        after_page = box.link(link["id"])
        assert after_page["view_count"] == 1 and after_page["last_viewed_at"] is not None

        paths = media_paths(client, path)  # fetches the master playlist once
        after_master = box.link(link["id"])
        assert after_master["view_count"] == 1
        assert parse_time(after_master["last_viewed_at"]) > parse_time(after_page["last_viewed_at"])

        segment = client.get(paths["segment"])
        assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp4"
        thumbnail = client.get(paths["thumbnail"])
        assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"
        refused = client.get(paths["download"])
        assert refused.status_code == 403 and "download" in refused.json()["detail"]

        client.get(path)
        again = box.link(link["id"])
        assert again["view_count"] == 2
        assert parse_time(again["last_viewed_at"]) > parse_time(after_master["last_viewed_at"])


def test_download_only_when_the_link_allows_it(box: Box, clip: Path) -> None:
    link = make_link(box, allow_download=True)
    path = path_of(link)
    with box.client() as client:
        page = client.get(path, headers=HTML).text
        download = client.get(f"{path}/download")
    assert f'href="{path}/download"' in page and f'data-original="{path}/download"' in page
    assert download.status_code == 200
    assert download.content == clip.read_bytes()
    assert download.headers["content-disposition"].startswith("attachment")


def test_unknown_token_is_404(box: Box) -> None:
    with box.client() as client:
        for path in ("/s/" + "A" * 43, "/s/short", "/s/" + "A" * 43 + "/hls/master.m3u8"):
            assert client.get(path).status_code == 404, path
        page = client.get("/s/" + "B" * 43, headers=HTML)
    assert page.status_code == 404 and "<html" in page.text


def _assert_gone_everywhere(client: httpx.Client, paths: dict[str, str], words: str) -> None:
    for name, path in paths.items():
        assert client.get(path).status_code == 410, name
    assert client.head(paths["segment"]).status_code == 410
    access = client.post(paths["page"] + "/access", json={"email": "x@example.org"})
    assert access.status_code == 410
    assert words in client.get(paths["page"]).json()["detail"]
    page = client.get(paths["page"], headers=HTML)
    assert page.status_code == 410
    assert words in page.text and "<html" in page.text


def test_revoked_link_is_gone_for_page_and_every_media_path(box: Box) -> None:
    link = make_link(box, allow_download=True)
    with box.client() as client:
        paths = media_paths(client, path_of(link))
        assert client.get(paths["download"]).status_code == 200
        revoked = client.delete(f"/api/links/{link['id']}", headers=box.auth["ann"])
        assert revoked.status_code == 204
        _assert_gone_everywhere(client, paths, "revoked")
        again = client.delete(f"/api/links/{link['id']}", headers=box.auth["ann"])
        assert again.status_code == 204
        listed = client.get("/api/links?status=revoked", headers=box.auth["ann"]).json()
    assert link["id"] in [item["id"] for item in listed["items"]]
    assert {item["status"] for item in listed["items"]} == {"revoked"}


def test_expired_link_is_gone_for_page_and_every_media_path(box: Box) -> None:
    link = make_link(box, allow_download=True, expires_in="1h")
    with box.client() as client:
        paths = media_paths(client, path_of(link))
        past = db_time(utcnow() - timedelta(minutes=1))
        sql(box.settings, "UPDATE share_links SET expires_at = ? WHERE id = ?", past, link["id"])
        _assert_gone_everywhere(client, paths, "expired")
        ann = box.auth["ann"]
        expired = client.get("/api/links?status=expired", headers=ann).json()["items"]
        active = client.get("/api/links?status=active", headers=ann).json()["items"]
    assert [item["id"] for item in expired] == [link["id"]]
    assert expired[0]["status"] == "expired"
    assert link["id"] not in [item["id"] for item in active]


def test_deleting_the_video_takes_its_links_with_it(box: Box) -> None:
    ann = box.auth["ann"]
    with box.client() as client:
        video_id = tus_video(client, ann)
        created = client.post(
            f"/api/videos/{video_id}/links",
            json={"visibility": "public", "expires_in": "forever"},
            headers=ann,
        )
        assert created.status_code == 201
        path = path_of(created.json())
        waiting = client.get(path, headers=HTML)
        # Not processed yet: the page says so and waits, without a player.
        assert waiting.status_code == 200
        assert "still being processed" in waiting.text and "data-master" not in waiting.text
        assert client.get(f"{path}/hls/master.m3u8").status_code == 404
        assert client.delete(f"/api/videos/{video_id}", headers=ann).status_code == 204
        assert client.get(path).status_code == 404
        assert client.get(f"{path}/thumbnail.jpg").status_code == 404
        listed = client.get("/api/links", headers=ann).json()["items"]
    assert created.json()["id"] not in [item["id"] for item in listed]
    assert sql(box.settings, "SELECT id FROM share_links WHERE video_id = ?", video_id) == []


def test_pages_for_the_owner(box: Box) -> None:
    kept = make_link(box, expires_in="12h")
    gone = make_link(box, expires_in="12h")
    with box.client() as client:
        csrf = browser_login(client, "ann@example.org")
        unprotected = client.delete(f"/api/links/{gone['id']}")
        assert unprotected.status_code == 403  # a browser's DELETE needs the CSRF token
        revoked = client.delete(f"/api/links/{gone['id']}", headers={"X-CSRF-Token": csrf})
        assert revoked.status_code == 204

        all_links = client.get("/links")
        assert all_links.status_code == 200
        assert kept["url"] in all_links.text and gone["url"] in all_links.text
        assert "Holiday 2026" in all_links.text
        only_revoked = client.get("/links?status=revoked").text
        assert gone["url"] in only_revoked and kept["url"] not in only_revoked

        player = client.get(f"/videos/{box.video_id}")
        assert player.status_code == 200
        assert f'data-new-link="{box.video_id}"' in player.text
        assert "js/links.js" in player.text
        # The owner may open their own link; that page is the plain share page.
        assert 'id="player"' in client.get(path_of(kept)).text
