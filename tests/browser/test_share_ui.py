"""A share link made from the player page plays in a fresh browser without an account."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import shoot
from tests.browser.test_ui import sign_in, wait_js
from tests.support import LiveServer, add_user, api_login, bearer, wait_for_status


def test_create_a_link_and_watch_it_elsewhere(
    live: LiveServer, page: Page, browser: Browser, clip: Path
) -> None:
    add_user(live.settings, "ann@example.org", name="Ann")
    with live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        video_id = client.post(
            "/api/videos", headers=auth, files={"file": ("holiday.mp4", clip.read_bytes())}
        ).json()["id"]
        wait_for_status(client, video_id, {"READY"}, headers=auth)

    sign_in(page, live, "ann@example.org")
    page.goto(f"{live.url}/videos/{video_id}")
    form = page.locator("form.share-form")
    form.locator("select[name=visibility]").select_option("public")
    form.locator("select[name=expires_in]").select_option("1d")
    form.locator("button[type=submit]").click()
    created = page.locator("[data-created-url]")
    expect(created).to_contain_text("/s/")
    url = created.inner_text().strip()
    row = page.locator("tbody[data-links] tr").first
    expect(row.locator("[data-status]")).to_have_text("active")
    shoot(page, "player-with-link")

    stranger = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        viewer = stranger.new_page()
        viewer.goto(url)
        expect(viewer.locator("h1")).to_contain_text("holiday")
        expect(viewer.locator("header .usermenu")).to_have_count(0)
        viewer.evaluate("document.getElementById('player').muted = true")
        viewer.evaluate("document.getElementById('player').play()")
        wait_js(viewer, "document.getElementById('player').currentTime > 0.5")
        shoot(viewer, "share-page")
    finally:
        stranger.close()

    # The owner sees the visit: one view, and a last-viewed time instead of "Never".
    page.reload()
    cells = page.locator("tbody[data-links] tr").first.locator("td")
    expect(cells.nth(5)).to_have_text("1")
    expect(cells.nth(4)).not_to_have_text("Never")

    # Every link begins with the box's address: the end, which tells them apart, shows whole,
    # on a wide screen and on a phone, where the table of links fits the screen.
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(live.url + "/links")
        tail = page.locator("tbody[data-links] tr").first.locator(".url-tail")
        expect(tail).to_have_text(url[-8:])
        box = tail.bounding_box()
        cell = page.locator("tbody[data-links] tr").first.locator(".link-cell").bounding_box()
        assert box and cell and box["x"] + box["width"] <= min(cell["x"] + cell["width"], width)
        assert tail.evaluate("e => e.scrollWidth <= e.clientWidth")  # not cut itself
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"/links scrolls sideways by {overflow}px at {width}px"
    shoot(page, "links")
