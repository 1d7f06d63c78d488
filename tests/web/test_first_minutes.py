"""The first minutes on a new box, over HTTP: how to get in, what the pages say, and the
files every site is asked for."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from pathlib import Path

import httpx

from tests.support import LiveServer, add_user, api_login, bearer, browser_login
from vidbox.jobs.queue import enqueue
from vidbox.models import utcnow
from vidbox.services import open_services

HTML = {"Accept": "text/html"}


def text_of(page: httpx.Response) -> str:
    """The page's words, tags dropped, spaces folded."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def test_sign_in_on_a_box_without_accounts_says_how_to_get_in(live: LiveServer) -> None:
    with live.client() as client:
        words = text_of(client.get("/login"))
        assert "No account exists on this box yet" in words
        assert "one-time setup link" in words and "log" in words
        assert "vidbox user create EMAIL --admin" in words
        add_user(live.settings, "first@example.org", admin=True)
        assert "No account exists" not in client.get("/login").text


def test_robots_txt_keeps_crawlers_to_share_pages(live: LiveServer) -> None:
    with live.client() as client:
        robots = client.get("/robots.txt")
        assert robots.status_code == 200
        assert robots.headers["content-type"].startswith("text/plain")
        lines = robots.text.splitlines()
        assert lines[0] == "User-agent: *"
        assert "Allow: /s/" in lines and "Disallow: /" in lines
        assert client.head("/robots.txt").status_code == 200


def test_favicon_ico_is_an_icon(live: LiveServer) -> None:
    with live.client() as client:
        icon = client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # ICO header, type 1 (icon)
        assert int.from_bytes(icon.content[4:6], "little") >= 1
        assert "max-age" in icon.headers["cache-control"]


def test_sizes_are_shown_in_binary_units_with_their_iec_names(live: LiveServer) -> None:
    add_user(live.settings, "ann@example.org")
    with live.client() as client:
        browser_login(client, "ann@example.org")
        words = text_of(client.get("/"))
    assert live.settings.uploads.max_bytes == 2 * 1024**3
    assert "up to 2 GiB" in words
    assert not re.search(r"\d (KB|MB|GB|TB)\b", words)


def test_the_admin_queue_lines_agree(live: LiveServer) -> None:
    add_user(live.settings, "root@example.org", admin=True)

    async def schedule_later() -> None:
        # A job due in an hour, like the next cleanup: queued, yet nothing waits.
        async with open_services(live.settings) as services, services.db.session() as session:
            await enqueue(session, "cleanup", {}, run_at=utcnow() + timedelta(hours=1))

    asyncio.run(schedule_later())
    with live.client() as client:
        browser_login(client, "root@example.org")
        page = client.get("/admin").text
    queue = re.search(r"<dd data-queue>(.*?)</dd>", page, re.S)
    waiting = re.search(r"<dd data-waiting>(.*?)</dd>", page, re.S)
    assert queue and waiting, page
    assert waiting.group(1).strip() == "nothing waits"
    assert queue.group(1).startswith("0 waiting to run · ")
    assert re.search(r"\b[1-9]\d* scheduled for later\b", queue.group(1))


def test_a_private_link_with_email_off_speaks_to_visitors_and_admins_apart(
    live: LiveServer, clip: Path
) -> None:
    assert not live.settings.email_enabled
    add_user(live.settings, "owner@example.org")
    add_user(live.settings, "root@example.org", admin=True)
    with live.client() as client:
        auth = bearer(api_login(client, "owner@example.org")["access"])
        video_id = client.post(
            "/api/videos", headers=auth, files={"file": ("holiday.mp4", clip.read_bytes())}
        ).json()["id"]
        link = client.post(
            f"/api/videos/{video_id}/links",
            headers=auth,
            json={"visibility": "private", "emails": ["bob@example.org"], "expires_in": "1d"},
        ).json()
        path = httpx.URL(link["url"]).path

        visitor = text_of(client.get(path, headers=HTML))
        assert "Ask the person who shared this with you" in visitor
        assert "Email is off" not in visitor and "vidbox.toml" not in visitor

        browser_login(client, "root@example.org")  # an admin, not on the list
        admin = text_of(client.get(path, headers=HTML))
        assert "Email is off on this box" in admin
        assert "[email] host" in admin and "vidbox.toml" in admin
