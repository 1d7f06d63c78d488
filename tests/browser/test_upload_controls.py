"""The upload panel's controls in a real browser: pause and resume, cancel (also of a file
still waiting its turn), resume after a reload, and retrying a dropped connection.

A ``PatchGate`` holds the browser's tus PATCH requests once some have passed, so each test
acts while an upload is surely mid-way, with no timing involved. While Playwright routes a
page's requests, that page's event stream delivers nothing (Chromium holds the streamed
answer), so the tests load the page afresh before waiting on live updates; the live events
themselves are tested over HTTP in tests/web/test_events.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Locator, Page, Request, Route, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import WAIT_MS, shoot
from tests.browser.test_ui import choose_files, expect_ready_download, expect_sent, sign_in
from tests.support import LiveServer, add_user, make_test_clip, start_server, wait_until
from vidbox.config import Settings

PART = 256 * 1024
UPLOADS = "**/api/uploads/*"


WAIT_SECONDS = WAIT_MS / 1000


def wait_in_page(page: Page, predicate: Callable[[], object], *, what: str) -> None:
    """Poll ``predicate`` while Playwright delivers the page's events (routes, dialogs), which
    it does only inside its own calls."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            panel = page.locator("#upload-list").inner_text()
            raise AssertionError(f"timed out waiting for {what}; the upload panel says: {panel}")
        page.wait_for_timeout(20)


class PatchGate:
    """Lets the first ``let_through`` PATCH requests of the page go, and holds the rest (and,
    with ``hold_heads``, every HEAD)."""

    def __init__(self, page: Page, let_through: int, *, hold_heads: bool = False) -> None:
        self.page, self.let_through, self.hold_heads = page, let_through, hold_heads
        self.held: list[Route] = []
        self.heads: list[Route] = []
        self.opened = False
        page.route(UPLOADS, self._route)

    def _route(self, route: Route) -> None:
        method = route.request.method
        if self.opened:
            route.continue_()
        elif method == "HEAD" and self.hold_heads:
            self.heads.append(route)
        elif method != "PATCH":
            route.continue_()
        elif self.let_through > 0:
            self.let_through -= 1
            route.continue_()
        else:
            self.held.append(route)

    def wait_for_held(self, count: int = 1) -> None:
        wait_in_page(self.page, lambda: len(self.held) >= count, what="a PATCH request to be held")

    def wait_for_head(self, count: int = 1) -> None:
        wait_in_page(self.page, lambda: len(self.heads) >= count, what="a HEAD request to be held")

    @staticmethod
    def release(route: Route) -> None:
        """Send a held request on. One the page gave up meanwhile (a pause, a cancel or a
        reload aborted it) cannot be: that is fine, nobody waits for its answer."""
        with contextlib.suppress(PlaywrightError):
            route.continue_()

    def open(self) -> None:
        """Every held request goes on, then every later one; then routing ends, so that the
        page's event stream flows again."""
        self.opened = True
        for route in [*self.held, *self.heads]:
            self.release(route)
        self.held, self.heads = [], []
        self.page.unroute(UPLOADS, self._route)


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = make_test_clip(
        tmp_path_factory.mktemp("controls") / "holiday.mp4", seconds=4, lossless=True
    )
    assert clip.stat().st_size > 3 * PART
    return clip


@pytest.fixture
def live_parts(make_settings: Callable[..., Settings]) -> Iterator[LiveServer]:
    """vidbox sending the browser's uploads in parts of 256 KiB, so a clip takes several."""
    live = start_server(make_settings({"VIDBOX_UPLOADS__PART_BYTES": str(PART)}))
    yield live
    live.stop()


def reload_then_ready_download(page: Page, expected: bytes) -> None:
    page.reload()
    expect_ready_download(page, expected)


def patch_offsets(page: Page) -> list[int]:
    """Upload-Offset of every PATCH the page sends from now on."""
    offsets: list[int] = []

    def record(request: Request) -> None:
        if request.method == "PATCH":
            offsets.append(int(request.headers["upload-offset"]))

    page.on("request", record)
    return offsets


def spool_bytes(live: LiveServer) -> list[int]:
    return [part.stat().st_size for part in live.settings.spool_dir.glob("*.part")]


def start_held_upload(
    live: LiveServer, page: Page, clip: Path, email: str, *, let_through: int
) -> tuple[PatchGate, Locator]:
    """Signed in as a new user ``email``, ``clip`` chosen, and its upload held after
    ``let_through`` parts; returns the gate and the upload's row in the panel."""
    add_user(live.settings, email)
    sign_in(page, live, email)
    gate = PatchGate(page, let_through=let_through)
    choose_files(page, str(clip))
    gate.wait_for_held()
    return gate, page.locator("#upload-list .upload").first


def test_pause_then_resume_goes_on_from_the_servers_offset(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    gate, upload = start_held_upload(live_parts, page, big_clip, "pia@example.org", let_through=1)
    upload.locator("[data-action=pause]").click()
    expect(upload.locator(".state")).to_have_text("Paused")
    expect(upload.locator("[data-action=resume]")).to_be_visible()
    expect(upload.locator("[data-action=pause]")).to_be_hidden()
    expect(upload).to_have_attribute("data-percent", str(PART * 100 // big_clip.stat().st_size))
    assert spool_bytes(live_parts) == [PART]  # what the server has: the part that passed

    gate.open()
    offsets = patch_offsets(page)
    upload.locator("[data-action=resume]").click()
    expect_sent(upload)
    assert offsets == list(range(PART, big_clip.stat().st_size, PART))
    reload_then_ready_download(page, big_clip.read_bytes())


def test_cancel_ends_the_upload_on_the_server(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    gate, upload = start_held_upload(live_parts, page, big_clip, "cal@example.org", let_through=1)
    expect(page.locator("#video-list .video-row .badge")).to_have_text("UPLOADING")
    upload.locator("[data-action=cancel]").click()
    expect(upload.locator(".state")).to_have_text("Cancelled")
    gate.open()
    # The server forgets the upload and its video; nothing of it stays in the spool or in
    # the browser's memory.
    wait_until(
        lambda: spool_bytes(live_parts) == [], timeout=WAIT_SECONDS, what="the spool to be emptied"
    )
    remembered = "Object.keys(localStorage).filter(k => k.startsWith('vidbox-upload:'))"
    wait_until(
        lambda: page.evaluate(remembered) == [],
        timeout=WAIT_SECONDS,
        what="the browser to forget it",
    )
    page.reload()
    expect(page.locator("#video-list .video-row")).to_have_count(0)
    expect(page.locator("#upload-list .upload")).to_have_count(0)


def test_a_file_cancelled_while_waiting_its_turn_never_reaches_the_server(
    live_parts: LiveServer, page: Page, big_clip: Path, tmp_path: Path
) -> None:
    add_user(live_parts.settings, "quin@example.org")
    sign_in(page, live_parts, "quin@example.org")
    second = tmp_path / "second.mp4"
    second.write_bytes(big_clip.read_bytes())
    creations: list[str] = []
    page.on("request", lambda r: creations.append(r.url) if r.method == "POST" else None)
    gate = PatchGate(page, let_through=1)
    choose_files(page, [str(big_clip), str(second)])
    first = page.locator("#upload-list .upload", has_text="holiday.mp4")
    waiting = page.locator("#upload-list .upload", has_text="second.mp4")
    gate.wait_for_held()
    expect(waiting.locator(".state")).to_have_text("Waiting…")
    waiting.locator("[data-action=cancel]").click()
    expect(waiting.locator(".state")).to_have_text("Cancelled")
    expect(first.locator(".state")).to_have_text("Uploading")  # cancelling one left the other

    gate.open()  # the first upload's held part goes on, and so does the upload
    expect_sent(first)
    reload_then_ready_download(page, big_clip.read_bytes())
    assert creations == [live_parts.url + "/api/uploads"]
    expect(page.locator("#video-list .video-row")).to_have_count(1)


def test_an_upload_cut_by_a_reload_resumes_when_the_file_is_chosen_again(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    size = big_clip.stat().st_size
    gate, upload = start_held_upload(live_parts, page, big_clip, "rey@example.org", let_through=2)
    page.reload()

    # After the reload the panel says what was left unfinished, and how far it got.
    notice = page.locator("#upload-list .upload[data-interrupted]")
    expect(notice.locator(".name")).to_have_text("holiday.mp4")
    expect(notice.locator(".state")).to_contain_text("choose the same file again")
    expect(notice.locator(".stats")).to_contain_text(f"{2 * PART * 100 // size}%")
    expect(page.locator("#video-list .video-row .badge")).to_have_text("UPLOADING")
    shoot(page, "upload-interrupted")

    gate.open()
    offsets = patch_offsets(page)
    choose_files(page, str(big_clip))
    expect(notice).to_have_count(0)
    upload = page.locator("#upload-list .upload").first
    expect_sent(upload)
    assert offsets[0] == 2 * PART  # not from the start
    reload_then_ready_download(page, big_clip.read_bytes())
    page.reload()
    expect(page.locator("#upload-list .upload")).to_have_count(0)


def test_an_interrupted_upload_can_be_dropped_from_the_panel(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    gate, _ = start_held_upload(live_parts, page, big_clip, "ida@example.org", let_through=1)
    page.reload()
    gate.open()
    notice = page.locator("#upload-list .upload[data-interrupted]")
    notice.locator("[data-action=cancel]").click()
    expect(notice).to_have_count(0)
    assert spool_bytes(live_parts) == []
    page.reload()
    expect(page.locator("#video-list .video-row")).to_have_count(0)
    expect(page.locator("#upload-list .upload")).to_have_count(0)


def test_a_dropped_connection_is_retried_on_its_own_waiting_longer_each_time(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    add_user(live_parts.settings, "ned@example.org")
    sign_in(page, live_parts, "ned@example.org")
    # Each retry asks HEAD where to go on from; holding that HEAD keeps the retry's message
    # on the card until the test has read it.
    gate = PatchGate(page, let_through=1, hold_heads=True)
    choose_files(page, str(big_clip))
    upload = page.locator("#upload-list .upload").first
    for retry, seconds in enumerate((1, 2, 4), start=1):
        gate.wait_for_held(retry)
        gate.held[-1].abort("internetdisconnected")
        gate.wait_for_head(retry)
        expect(upload.locator(".state")).to_have_text(f"Connection lost, retrying in {seconds} s…")
        gate.release(gate.heads[-1])
    gate.wait_for_held(4)
    gate.open()
    expect_sent(upload)
    reload_then_ready_download(page, big_clip.read_bytes())


def test_signing_out_mid_upload_keeps_it_for_the_next_sign_in(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    gate, upload = start_held_upload(live_parts, page, big_clip, "sol@example.org", let_through=1)
    page.context.clear_cookies()  # the session ends, as when signing out in another tab
    gate.open()
    expect(upload.locator(".state")).to_have_text(
        "Signed out: sign in again, then choose the same file to resume."
    )

    sign_in(page, live_parts, "sol@example.org")
    notice = page.locator("#upload-list .upload[data-interrupted]")
    expect(notice.locator(".name")).to_have_text("holiday.mp4")
    offsets = patch_offsets(page)
    choose_files(page, str(big_clip))
    expect_sent(page.locator("#upload-list .upload").first)
    assert offsets[0] == PART
    reload_then_ready_download(page, big_clip.read_bytes())


def test_leaving_the_page_mid_upload_asks_first(
    live_parts: LiveServer, page: Page, big_clip: Path
) -> None:
    _, upload = start_held_upload(live_parts, page, big_clip, "lee@example.org", let_through=1)
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.type)
        dialog.dismiss()  # stay

    page.on("dialog", answer)
    page.locator("a", has_text="Links").first.click()
    wait_in_page(page, lambda: asked == ["beforeunload"], what="the question")
    expect(page).to_have_url(live_parts.url + "/")  # stayed
    expect(upload.locator(".state")).to_have_text("Uploading")

    upload.locator("[data-action=pause]").click()
    page.locator("a", has_text="Links").first.click()  # paused: nothing to lose, no question
    expect(page).to_have_url(live_parts.url + "/links")
    assert asked == ["beforeunload"]
