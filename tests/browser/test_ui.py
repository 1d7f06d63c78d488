"""The web UI in a real browser: sign in, upload, watch it turn READY live, play, delete."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, Request, expect

from tests.browser.conftest import WAIT_MS, shoot
from tests.proxy import BodyLimitProxy
from tests.support import (
    PASSWORD,
    LiveServer,
    add_user,
    make_test_clip,
    start_server,
    wait_until,
)
from vidbox.config import Settings


def wait_js(page: Page, expression: str, element: Locator | None = None) -> None:
    """Poll a JavaScript condition. (page.wait_for_function evaluates strings with eval,
    which the app's Content-Security-Policy rightly forbids.)"""
    if element is not None:
        wait_until(lambda: element.evaluate(expression), timeout=WAIT_MS / 1000, what=expression)
    else:
        wait_until(lambda: page.evaluate(expression), timeout=WAIT_MS / 1000, what=expression)


def expect_ready_download(page: Page, expected: bytes) -> None:
    """The newest video turns READY live, and its download is ``expected``, byte for byte."""
    row = page.locator("#video-list .video-row").first
    expect(row.locator(".badge")).to_have_text("READY")
    with page.expect_download() as download_info:
        row.locator("[data-action=download]").click()
    assert Path(download_info.value.path()).read_bytes() == expected


def expect_sent(upload: Locator) -> None:
    """Every byte of ``upload`` (a card in the upload panel) is on the server. A stable
    condition: the card's words go on to follow the video's processing."""
    expect(upload).to_have_class(re.compile(r"\bdone\b"))
    expect(upload.locator(".stats")).to_contain_text("100%")


def choose_files(page: Page, files: str | list[str]) -> None:
    """Choose files in the dashboard's upload panel, once its scripts listen: a page that has
    loaded its HTML may not have run them yet, and a change nobody hears uploads nothing."""
    expect(page.locator("#dropzone")).to_have_attribute("data-ready", "true")
    page.set_input_files("#file-input", files)


def sign_in(page: Page, live: LiveServer, email: str) -> None:
    page.goto(live.url + "/")
    expect(page).to_have_url(live.url + "/login?next=%2F")
    shoot(page, "login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(live.url + "/")


def test_upload_play_download_delete(live: LiveServer, page: Page, clip: Path) -> None:
    add_user(live.settings, "ann@example.org", name="Ann", admin=True)
    sign_in(page, live, "ann@example.org")
    expect(page.locator("#empty-state")).to_be_visible()
    shoot(page, "dashboard-empty")

    choose_files(page, str(clip))
    upload = page.locator("#upload-list .upload").first
    expect_sent(upload)
    row = page.locator("#video-list .video-row").first
    expect(row.locator(".title")).to_have_text("clip")
    # The row turns READY from the event stream, without a reload, and so does the card.
    expect(row.locator(".badge")).to_have_text("READY")
    expect(upload.locator(".state")).to_have_text("Ready")
    thumb = row.locator("img")
    expect(thumb).to_be_visible()
    wait_js(page, "(img => img.complete && img.naturalWidth === 1280)", thumb)
    shoot(page, "dashboard")

    with page.expect_download() as download_info:
        row.locator("[data-action=download]").click()
    download = download_info.value
    assert Path(download.path()).read_bytes() == clip.read_bytes()
    assert download.suggested_filename == "clip.mp4"

    row.locator(".title").click()
    expect(page.locator("h1.video-title")).to_have_text("clip")
    details = page.locator(".details")
    expect(details).to_contain_text("clip.mp4")
    expect(details).to_contain_text("320\u00d7240")
    expect(details).to_contain_text("0:02")
    page.evaluate("document.getElementById('player').muted = true")
    page.evaluate("document.getElementById('player').play()")
    wait_js(page, "document.getElementById('player').currentTime > 0.5")
    shoot(page, "player")

    page.goto(live.url + "/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#video-list .video-row [data-action=delete]").first.click()
    expect(page.locator("#video-list .video-row")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    page.reload()
    expect(page.locator("#video-list .video-row")).to_have_count(0)


def test_large_files_go_in_parts_of_the_configured_size(
    make_settings: Callable[..., Settings], page: Page, tmp_path: Path
) -> None:
    part = 256 * 1024
    settings = make_settings({"VIDBOX_UPLOADS__PART_BYTES": str(part)})
    clip = make_test_clip(tmp_path / "parts.mp4", seconds=4, lossless=True)
    size = clip.stat().st_size
    assert size > 3 * part
    live = start_server(settings)
    try:
        add_user(settings, "parts@example.org")
        sign_in(page, live, "parts@example.org")
        patches: list[int] = []

        def record(request: Request) -> None:
            if request.method == "PATCH":
                patches.append(int(request.headers["upload-offset"]))

        page.on("request", record)
        choose_files(page, str(clip))
        upload = page.locator("#upload-list .upload").first
        expect_sent(upload)
        # One PATCH per part, each starting where the previous one ended.
        assert patches == list(range(0, size, part))
        expect_ready_download(page, clip.read_bytes())
    finally:
        live.stop()


def test_parts_shrink_to_pass_a_proxys_body_limit(
    settings: Settings, page: Page, tmp_path: Path
) -> None:
    clip = make_test_clip(tmp_path / "proxied.mp4", size="640x360", seconds=6, lossless=True)
    size = clip.stat().st_size
    assert size > 2 * 1024 * 1024
    vidbox_server = start_server(settings)
    # In front of vidbox, a proxy refusing bodies over 1 MiB, as nginx does by default.
    proxy = BodyLimitProxy(vidbox_server.url, max_body=1024 * 1024)
    front = start_server(settings, app=proxy)  # type: ignore[arg-type]
    try:
        add_user(settings, "proxied@example.org")
        sign_in(page, front, "proxied@example.org")

        def patches() -> list[tuple[int, bool]]:
            return [
                (length, refused) for method, length, refused in proxy.bodies if method == "PATCH"
            ]

        choose_files(page, str(clip))
        upload = page.locator("#upload-list .upload").first
        expect_sent(upload)
        # The whole file, then half of it, were refused; a quarter passed, and so on.
        first = patches()
        assert first[:3] == [(size, True), (size // 2, True), (size // 4, False)]
        assert sum(length for length, refused in first if not refused) == size
        expect_ready_download(page, clip.read_bytes())

        # The next upload starts with parts of the size that passed, and none is refused.
        choose_files(page, str(clip))
        expect_sent(page.locator("#upload-list .upload").first)
        second = patches()[len(first) :]
        assert max(second) == (size // 4, False)
        assert sum(length for length, _ in second) == size
    finally:
        page.goto("about:blank")  # ends the event stream, so both servers stop at once
        front.stop()
        vidbox_server.stop()


def test_a_full_disk_is_explained_and_the_upload_resumes_later(
    settings: Settings, small_spool: Path, page: Page, tmp_path: Path
) -> None:
    clip = make_test_clip(tmp_path / "full.mp4", size="640x360", seconds=6, lossless=True)
    assert clip.stat().st_size > 2 * 1024 * 1024  # more than the spool can hold
    live = start_server(settings)
    try:
        add_user(settings, "full@example.org")
        sign_in(page, live, "full@example.org")
        choose_files(page, str(clip))
        upload = page.locator("#upload-list .upload").first
        expect(upload.locator(".state")).to_contain_text("disk is full")
        expect(upload.locator("[data-action=retry]")).to_be_visible()
        shoot(page, "upload-disk-full")
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_spool)], check=True)
        upload.locator("[data-action=retry]").click()
        expect_sent(upload)
        expect_ready_download(page, clip.read_bytes())
    finally:
        live.stop()


def test_client_side_validation_sends_nothing(live: LiveServer, page: Page, tmp_path: Path) -> None:
    add_user(live.settings, "bob@example.org")
    sign_in(page, live, "bob@example.org")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    choose_files(page, str(notes))
    expect(page.locator("#upload-list .upload .state")).to_contain_text("Only MP4")
    assert list(live.settings.spool_dir.glob("*.part")) == []


def test_pages_look_finished(live: LiveServer, page: Page) -> None:
    add_user(live.settings, "cat@example.org", name="Catherine Example-Longname", admin=True)
    sign_in(page, live, "cat@example.org")
    for path, name in [("/settings", "settings"), ("/admin", "admin"), ("/no-such-page", "404")]:
        page.goto(live.url + path)
        shoot(page, name)
    page.goto(live.url + "/settings")
    expect(page.locator("h1")).to_have_text("Settings")
    # No part of the page is wider than a phone screen, and the header stays one row.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ["/", "/links", "/settings", "/admin", "/notifications"]:
        page.goto(live.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
        brand = page.locator("header .brand").bounding_box()
        menu = page.locator("header .usermenu summary").bounding_box()
        assert brand and menu
        assert menu["y"] < brand["y"] + brand["height"], f"{path}: the header wraps on a phone"
        assert menu["x"] + menu["width"] <= 390
