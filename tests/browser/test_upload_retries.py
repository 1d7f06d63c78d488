"""Uploads that outlast trouble: a lost answer to the last part, and a sign-in that is older
than an API access token lives."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Route, expect
from sqlmodel import select

from tests.browser.test_ui import choose_files, expect_ready_download, expect_sent, sign_in
from tests.browser.test_upload_controls import (
    PART,
    UPLOADS,
    WAIT_SECONDS,
    PatchGate,
    patch_offsets,
    wait_in_page,
)
from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    make_test_clip,
    run_async,
    start_server,
    wait_for_status,
    wait_until,
)
from vidbox.config import Settings
from vidbox.models import AuthSession, AuthToken
from vidbox.services import open_services


class LoseLastAnswer:
    """The page's one PATCH reaches the server, but the browser sees the connection drop
    instead of the 204; HEAD requests are held until the test lets them go."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.patches: list[int] = []  # Upload-Offset of each PATCH the page sent
        self.answered: list[int] = []  # statuses the server gave, unseen by the page
        self.heads: list[Route] = []
        self.opened = False
        page.route(UPLOADS, self._route)

    def _route(self, route: Route) -> None:
        request = route.request
        if self.opened:
            route.continue_()
        elif request.method == "HEAD":
            self.heads.append(route)
        elif request.method == "PATCH":
            self.patches.append(int(request.headers["upload-offset"]))
            if len(self.patches) == 1:
                self.answered.append(route.fetch().status)
                route.abort("connectionreset")
            else:
                route.continue_()
        else:
            route.continue_()

    def open(self) -> None:
        # The handler stays: unrouting while the page's next request was already on its way to
        # it left that request unanswered for good (the upload then hung, about one run in 7).
        self.opened = True
        for route in self.heads:
            with contextlib.suppress(PlaywrightError):
                route.continue_()


def test_a_lost_answer_to_the_last_part_ends_the_upload_without_sending_it_again(
    live: LiveServer, page: Page, clip: Path
) -> None:
    add_user(live.settings, "lou@example.org")
    sign_in(page, live, "lou@example.org")
    lose = LoseLastAnswer(page)
    choose_files(page, str(clip))
    upload = page.locator("#upload-list .upload").first
    wait_in_page(page, lambda: lose.heads, what="the retry's HEAD")
    assert lose.answered == [204]

    # Meanwhile processing runs to the end and takes the bytes out of the spool.
    with live.client() as client:
        auth = bearer(api_login(client, "lou@example.org")["access"])
        video_id = client.get("/api/videos", headers=auth).json()["items"][0]["id"]
        wait_for_status(client, video_id, {"READY"}, timeout=WAIT_SECONDS, headers=auth)
    wait_until(
        lambda: not list(live.settings.spool_dir.glob("*.part")),
        timeout=WAIT_SECONDS,
        what="the spool",
    )

    lose.open()
    expect_sent(upload)
    assert lose.patches == [0]  # asked where it stood, and sent nothing again
    page.reload()
    expect_ready_download(page, clip.read_bytes())


def test_a_last_part_sent_twice_is_told_the_upload_is_complete(
    live: LiveServer, page: Page, clip: Path
) -> None:
    add_user(live.settings, "max@example.org")
    sign_in(page, live, "max@example.org")
    lose = LoseLastAnswer(page)
    offsets = patch_offsets(page)
    choose_files(page, str(clip))
    upload = page.locator("#upload-list .upload").first
    wait_in_page(page, lambda: lose.heads, what="the retry's HEAD")
    with live.client() as client:
        auth = bearer(api_login(client, "max@example.org")["access"])
        video_id = client.get("/api/videos", headers=auth).json()["items"][0]["id"]
        wait_for_status(client, video_id, {"READY"}, timeout=WAIT_SECONDS, headers=auth)
    # The retry's HEAD fails too, so the page sends the last part again: the server answers
    # 409 with the offset it has, all of it, and the page stops there.
    lose.heads.pop().abort("connectionreset")
    lose.open()
    expect_sent(upload)
    assert offsets == [0, 0]


def test_an_upload_whose_last_answer_was_lost_is_not_offered_for_resuming(
    live: LiveServer, page: Page, clip: Path
) -> None:
    add_user(live.settings, "liv@example.org")
    sign_in(page, live, "liv@example.org")
    lose = LoseLastAnswer(page)
    choose_files(page, str(clip))
    wait_in_page(page, lambda: lose.heads, what="the retry's HEAD")
    page.reload()  # the tab is reloaded before the retry learns the upload is complete
    lose.open()
    remembered = "Object.keys(localStorage).filter(k => k.startsWith('vidbox-upload:'))"
    wait_until(
        lambda: page.evaluate(remembered) == [],
        timeout=WAIT_SECONDS,
        what="the browser to forget it",
    )
    expect(page.locator("#upload-list .upload")).to_have_count(0)
    expect_ready_download(page, clip.read_bytes())


def test_a_long_upload_outlives_an_access_tokens_lifetime(
    make_settings: Callable[..., Settings], page: Page, tmp_path: Path
) -> None:
    """The web UI signs in with a cookie session (auth.session_days), not with the 15-minute
    API access token, so an upload taking longer than that goes on without a refresh."""
    clip = make_test_clip(tmp_path / "long.mp4", seconds=4, lossless=True)
    settings = make_settings({"VIDBOX_UPLOADS__PART_BYTES": str(PART)})
    live = start_server(settings)
    try:
        add_user(live.settings, "tim@example.org")
        sign_in(page, live, "tim@example.org")
        with live.client() as client:
            access = api_login(client, "tim@example.org")["access"]  # not used yet
        gate = PatchGate(page, let_through=1)
        choose_files(page, str(clip))
        gate.wait_for_held()

        # Every credential of the box ages past the access token's lifetime, as if the
        # upload had been running that long.
        aged = timedelta(minutes=live.settings.auth.access_token_minutes + 5)

        async def age() -> None:
            async with open_services(live.settings) as services, services.db.session() as s:
                for table in (AuthToken, AuthSession):
                    for row in (await s.exec(select(table))).all():
                        row.created_at -= aged
                        if row.expires_at is not None:
                            row.expires_at -= aged
                        s.add(row)

        run_async(age())
        with live.client() as client:
            assert client.get("/api/me", headers=bearer(access)).status_code == 401

        gate.open()
        upload = page.locator("#upload-list .upload").first
        expect_sent(upload)
        page.reload()
        expect_ready_download(page, clip.read_bytes())
    finally:
        live.stop()
