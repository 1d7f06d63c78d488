"""The bundled hls.js, in a browser without native HLS (as Firefox is): the player streams
adaptively, switches quality mid-play and plays to the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_ui import sign_in, wait_js
from tests.support import add_user, api_login, bearer, make_test_clip, start_server, wait_for_status
from vidbox.config import Settings

# Chromium 142+ plays HLS natively; hiding that makes the player take the hls.js path.
NO_NATIVE_HLS = """
(() => {
  const original = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(type) ? "" : original.call(this, type);
  };
})();
"""


def test_hls_js_plays_to_the_end_with_a_level_switch(
    make_settings: Callable[..., Settings], page: Page, tmp_path: Path
) -> None:
    settings = make_settings({"VIDBOX_PROCESSING__SEGMENT_SECONDS": "1"})
    live = start_server(settings)
    try:
        add_user(settings, "fay@example.org")
        clip = make_test_clip(tmp_path / "four.mp4", size="640x480", seconds=4)
        with httpx.Client(base_url=live.url, timeout=60) as client:
            token = api_login(client, "fay@example.org")["access"]
            with clip.open("rb") as body:
                created = client.post(
                    "/api/videos", headers=bearer(token), files={"file": ("four.mp4", body)}
                )
            assert created.status_code == 201, created.text
            video = wait_for_status(client, created.json()["id"], {"READY"}, headers=bearer(token))
        assert len(video["renditions"]) >= 2, video["renditions"]

        page.add_init_script(NO_NATIVE_HLS)
        sign_in(page, live, "fay@example.org")
        page.goto(f"{live.url}/videos/{video['id']}")
        player = page.locator("#player")
        expect(player).to_be_visible()
        # hls.js feeds the element through Media Source Extensions: a blob: URL, not the
        # playlist's own address.
        wait_js(page, "document.getElementById('player').src.startsWith('blob:')")
        wait_js(page, "(document.getElementById('player').hls?.levels.length ?? 0) >= 2")
        page.evaluate("document.getElementById('player').muted = true")
        page.evaluate("document.getElementById('player').play()")
        wait_js(page, "document.getElementById('player').currentTime > 0.3")

        start_level = page.evaluate("document.getElementById('player').hls.currentLevel")
        target = 0 if start_level != 0 else 1
        page.evaluate(f"document.getElementById('player').hls.currentLevel = {target}")
        wait_js(page, f"document.getElementById('player').hls.currentLevel === {target}")
        wait_js(page, "document.getElementById('player').ended")
        duration = page.evaluate("document.getElementById('player').duration")
        assert abs(duration - 4) < 0.5, duration
        errors = page.evaluate("document.getElementById('player').error")
        assert errors is None
    finally:
        live.stop()
