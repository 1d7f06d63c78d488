"""Private share links against a real SMTP server (aiosmtpd): mail and notifications on
creation, the access request that reveals nothing, the one-time sign-in link and its cookie,
rate limits, email off, and mail that waits out an SMTP outage and a restart."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.postgres import db_time
from tests.support import add_user, api_login, bearer, browser_login, csrf_from, wait_until
from tests.web.test_share_support import (
    BASE_URL,
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
    text_of,
    tus_video,
)
from vidbox.jobs import JobContext, PermanentJobError
from vidbox.jobs.send_mail import SEND_MAIL, send_mail
from vidbox.models import utcnow
from vidbox.sharing.access import ACCESS_PER_IP, ACCESS_PER_LINK

ANN, BOB, EVE = "ann@example.org", "bob@example.org", "eve@example.org"
CAROL = "carol@outside.example"  # listed, without an account
NOBODY = "nobody@outside.example"  # neither
DAVE = "dave@example.org"  # has an account, but his mail server refuses everything


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    smtp = Smtp()
    smtp.inbox.refused.add(DAVE)
    smtp.start()
    settings = mail_settings(tmp_path_factory.mktemp("share-private") / "data", smtp.port)
    for address, name in ((ANN, "Ann"), (BOB, "Bob"), (EVE, "Eve"), (DAVE, "Dave")):
        add_user(settings, address, name=name)
    live = serve(settings)
    try:
        with live.client() as client:
            auth = {
                name: bearer(api_login(client, address)["access"])
                for name, address in (("ann", ANN), ("bob", BOB), ("eve", EVE))
            }
            # Sign-in and access work the same whether or not the video is processed yet.
            video_id = tus_video(client, auth["ann"])
            client.patch(
                f"/api/videos/{video_id}", json={"title": "Holiday 2026"}, headers=auth["ann"]
            )
        yield Box(live, smtp, video_id, auth)
    finally:
        live.stop()
        smtp.stop()


def settle(box: Box) -> None:
    """Wait until every access request has been looked at (share_access jobs): the request
    only queues one, listed or not, so its mail (or none) comes a moment later."""
    wait_until(
        lambda: (
            not sql(
                box.settings,
                "SELECT id FROM jobs WHERE kind = 'share_access'"
                " AND state IN ('queued', 'running')",
            )
        ),
        what="the access requests to be handled",
    )


@pytest.fixture(autouse=True)
def fresh_rate_limits(box: Box) -> None:
    settle(box)
    sql(box.settings, "DELETE FROM rate_limits WHERE key LIKE 'share-access%'")


def same_headers(a: httpx.Response, b: httpx.Response) -> bool:
    # Only what differs for every response anyway: the clock and the request id.
    def kept(r: httpx.Response) -> list[tuple[str, str]]:
        skip = {"date", "x-request-id"}
        return sorted((k, v) for k, v in r.headers.multi_items() if k not in skip)

    return kept(a) == kept(b)


def private_link(box: Box, *emails: str, **body: Any) -> dict[str, Any]:
    return make_link(box, visibility="private", emails=list(emails), **body)


def jobs_to(box: Box, address: str) -> list[tuple[Any, ...]]:
    return [job for job in mail_jobs(box.settings) if json.loads(job[1])["to"] == address]


def ask(client: httpx.Client, path: str, address: str) -> httpx.Response:
    return client.post(f"{path}/access", json={"email": address})


def test_creation_mails_and_notifies_registered_people_only(box: Box) -> None:
    link = private_link(box, BOB, CAROL, ANN)  # the owner on her own list is not notified
    path = path_of(link)
    # Queued in the link's own transaction: there when the 201 is.
    assert len(jobs_to(box, BOB)) == 1
    assert jobs_to(box, CAROL) == [] and jobs_to(box, ANN) == []
    wait_until(lambda: box.smtp.inbox.to(BOB), what="the mail to Bob")
    mail = box.smtp.inbox.to(BOB)[0]
    assert mail["Subject"] == 'Ann shared "Holiday 2026" with you'
    assert link["url"] in text_of(mail)
    assert str(mail["From"]).startswith("Family Videos")

    with box.client() as client:
        bob = client.get("/api/notifications", headers=box.auth["bob"]).json()
        assert bob["unread"] >= 1
        latest = bob["items"][0]
        assert latest["text"] == 'Ann shared "Holiday 2026" with you' and not latest["read"]
        assert latest["url"] == f"/shared/{link['id']}"
        # The notification leads to the share page, for listed accounts only.
        opened = client.get(latest["url"], headers=box.auth["bob"])
        assert opened.status_code == 303 and opened.headers["location"] == path
        assert client.get(latest["url"], headers=box.auth["eve"]).status_code == 404
        assert client.get("/api/notifications", headers=box.auth["ann"]).json()["unread"] == 0
        read = client.post("/api/notifications/read", headers=box.auth["bob"])
        assert read.status_code == 200 and read.json()["unread"] == 0
        assert client.get("/api/notifications", headers=box.auth["bob"]).json()["unread"] == 0


def test_a_refused_recipient_fails_the_job_for_good(box: Box) -> None:
    private_link(box, DAVE)
    [(job_id, *_)] = jobs_to(box, DAVE)

    def failed() -> tuple[Any, ...] | None:
        job = next(j for j in mail_jobs(box.settings) if j[0] == job_id)
        return job if job[2] == "failed" else None

    wait_until(failed, what="the job to fail")
    job = failed()
    assert job is not None and job[3] == 1  # not retried
    assert "refused the recipient" in job[4] and "550" in job[4]


def test_the_mail_handler_drops_what_cannot_or_should_not_be_sent() -> None:
    mail = {"to": CAROL, "subject": "s", "text": "t", "html": "<p>h</p>"}
    late = {**mail, "not_after": (utcnow() - timedelta(seconds=1)).isoformat()}
    # Both are refused before any service is touched, so none is needed here.
    for payload, words in (({"to": CAROL}, "incomplete"), (late, "expired")):
        ctx = JobContext(1, SEND_MAIL, payload, 1, cast(Any, None))
        with pytest.raises(PermanentJobError, match=words):
            asyncio.run(send_mail(ctx))


def test_who_gets_straight_in_and_what_strangers_see(box: Box) -> None:
    link = private_link(box, BOB, CAROL)
    path = path_of(link)
    with box.client() as client:
        stranger = client.get(path, headers=HTML)
        assert stranger.status_code == 200
        assert f'action="{path}/access"' in stranger.text
        assert "data-master" not in stranger.text and "still being processed" not in stranger.text
        assert "og:" not in stranger.text and "Holiday 2026" not in stranger.text
        # Private media is refused with 403 (the URL already proves the link exists).
        for media in ("/hls/master.m3u8", "/hls/360p/index.m3u8", "/thumbnail.jpg", "/download"):
            refused = client.get(path + media)
            assert refused.status_code == 403, media
            assert "privately" in refused.json()["detail"]
        for name in ("ann", "bob"):
            page = client.get(path, headers={**HTML, **box.auth[name]})
            assert "still being processed" in page.text, name
            assert "og:" not in page.text
        eve = client.get(path, headers={**HTML, **box.auth["eve"]})
        assert f'action="{path}/access"' in eve.text and "signed in as eve@" in eve.text
    # Only views of the video count, not strangers held at the form.
    assert box.link(link["id"])["view_count"] == 2


def test_access_request_answers_the_same_and_mails_only_listed(box: Box) -> None:
    link = private_link(box, BOB, CAROL)
    path = path_of(link)
    with box.client() as client:
        listed, unlisted = ask(client, path, CAROL), ask(client, path, NOBODY)
        shouty = ask(client, path, "  CAROL@Outside.Example ")
        bad = ask(client, path, "carol")
        page = client.get(path, headers=HTML)
        csrf = csrf_from(page.text)
        forms = [
            client.post(f"{path}/access", data={"email": address, "_csrf": csrf}, headers=HTML)
            for address in (CAROL, NOBODY)
        ]
        no_csrf = client.post(f"{path}/access", data={"email": CAROL})
    assert listed.status_code == unlisted.status_code == shouty.status_code == 202
    assert listed.content == unlisted.content == shouty.content
    assert same_headers(listed, unlisted) and same_headers(listed, shouty)
    assert "sign-in link" in listed.json()["detail"]
    assert bad.status_code == 400 and set(bad.json()["errors"]) == {"email"}
    assert [f.status_code for f in forms] == [202, 202]
    assert forms[0].text.replace(csrf, "") == forms[1].text.replace(csrf, "")
    assert same_headers(forms[0], forms[1])
    assert no_csrf.status_code == 403
    settle(box)
    assert len(jobs_to(box, CAROL)) == 3 and jobs_to(box, NOBODY) == []
    wait_until(lambda: len(box.smtp.inbox.to(CAROL)) == 3, what="three mails to Carol")
    mail = box.smtp.inbox.to(CAROL)[0]
    assert mail["Subject"] == 'Your link to "Holiday 2026"'
    assert link_in(mail).startswith(f"{path}/enter/")


def test_sign_in_link_works_once_and_its_cookie_opens_only_that_link(box: Box) -> None:
    link, other = private_link(box, CAROL), private_link(box, CAROL)
    path = path_of(link)
    with box.client() as client:
        assert ask(client, path, CAROL).status_code == 202

    def sign_in_links() -> list[str]:
        return [link_in(m) for m in box.smtp.inbox.to(CAROL) if link_in(m).startswith(path)]

    wait_until(sign_in_links, what="the sign-in mail")
    [enter] = sign_in_links()
    with box.client() as browser:
        # A mail scanner's GETs do not use the link up.
        for _ in range(2):
            shown = browser.get(enter, headers=HTML)
            assert shown.status_code == 200 and "Continue" in shown.text
        csrf = csrf_from(shown.text)
        used = browser.post(enter, data={"_csrf": csrf}, headers=HTML)
        assert used.status_code == 303 and used.headers["location"] == path
        again = browser.post(enter, data={"_csrf": csrf}, headers=HTML)
        assert again.status_code == 410 and "already used" in again.text
        assert browser.post(enter, data={"_csrf": csrf}).status_code == 410
    set_cookie = next(
        h for h in used.headers.get_list("set-cookie") if h.startswith("vidbox_share=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in set_cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes
    assert f"Path={path}" in set_cookie and "samesite=lax" in set_cookie.lower()
    assert "secure" not in attributes  # base_url is http here
    max_age = int(set_cookie.lower().split("max-age=")[1].split(";")[0])
    assert 0 < max_age <= 86400  # the link expires in a day
    cookie = {"Cookie": set_cookie.split(";")[0]}

    with box.client() as client:
        page = client.get(path, headers={**HTML, **cookie})
        assert "still being processed" in page.text
        assert client.get(f"{path}/thumbnail.jpg", headers=cookie).status_code == 404  # none yet
        # The same cookie sent to another link that lists the same address opens nothing.
        elsewhere = path_of(other)
        page = client.get(elsewhere, headers={**HTML, **cookie})
        assert f'action="{elsewhere}/access"' in page.text
        assert client.get(f"{elsewhere}/hls/master.m3u8", headers=cookie).status_code == 403
        # A forged or foreign sign-in link is refused.
        assert client.get(f"{path}/enter/not-signed", headers=HTML).status_code == 404
        foreign = enter.replace(path, elsewhere)
        assert client.get(foreign, headers=HTML).status_code == 404


def test_rate_limits_do_not_depend_on_the_list(box: Box) -> None:
    path = path_of(private_link(box, CAROL))
    before = len(jobs_to(box, CAROL))
    with box.client() as client:
        for _ in range(ACCESS_PER_IP):
            assert ask(client, path, NOBODY).status_code == 202
        for address in (CAROL, NOBODY):
            limited = ask(client, path, address)
            assert limited.status_code == 429
            assert int(limited.headers["retry-after"]) > 0
    settle(box)
    assert len(jobs_to(box, CAROL)) == before

    # Per link: other addresses (127.0.0.x all reach the loopback server) share its budget.
    other = path_of(private_link(box, CAROL))
    answers = []
    for n in range(ACCESS_PER_LINK // ACCESS_PER_IP + 1):
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{n + 10}")
        with httpx.Client(base_url=box.live.url, transport=transport) as client:
            answers += [ask(client, other, NOBODY).status_code for _ in range(ACCESS_PER_IP)]
    assert answers.count(202) == ACCESS_PER_LINK and set(answers[ACCESS_PER_LINK:]) == {429}


def test_browser_pages_for_the_recipient(box: Box) -> None:
    link = private_link(box, BOB)
    with box.client() as browser:
        csrf = browser_login(browser, BOB)
        page = browser.get("/notifications")
        assert page.status_code == 200
        assert 'Ann shared "Holiday 2026" with you' in html.unescape(page.text)
        assert f'href="/shared/{link["id"]}"' in page.text
        assert browser.post("/notifications/read", data={"_csrf": csrf}).status_code == 303
        assert browser.get("/api/notifications").json()["unread"] == 0
        shared = browser.get(path_of(link), headers=HTML)
        assert "still being processed" in shared.text and 'data-poll="' in shared.text


def test_with_email_off_no_mail_is_queued_and_pages_say_so(tmp_path: Path) -> None:
    settings = mail_settings(tmp_path / "data", None)
    for address in (ANN, BOB):
        add_user(settings, address, name=address[:3].title())
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            bob = bearer(api_login(client, BOB)["access"])
            video_id = tus_video(client, ann)
            created = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "private", "emails": [BOB, CAROL], "expires_in": "1d"},
                headers=ann,
            )
            assert created.status_code == 201
            path = path_of(created.json())
            assert client.get("/api/notifications", headers=bob).json()["unread"] == 1
            page = client.get(path, headers=HTML)
            assert "Ask the person who shared this" in page.text  # a visitor's sentence
            refused = ask(client, path, CAROL)
            assert refused.status_code == 503 and "Email is off" in refused.json()["detail"]
            assert "still being processed" in client.get(path, headers={**HTML, **bob}).text
            browser_login(client, ANN)
            assert "Email is off" in client.get("/links").text
        assert mail_jobs(settings) == []
    finally:
        live.stop()


def _wait_for_failed_attempt(settings: Any, job_id: int) -> None:
    def retried() -> bool:
        job = next(j for j in mail_jobs(settings) if j[0] == job_id)
        return job[2] == "queued" and job[3] >= 1

    wait_until(retried, what="a failed delivery attempt")
    job = next(j for j in mail_jobs(settings) if j[0] == job_id)
    assert "Cannot reach the SMTP server" in (job[4] or "")


def _run_now(settings: Any, job_id: int) -> None:
    # Skips the rest of the backoff instead of waiting it out.
    sql(settings, "UPDATE jobs SET run_at = ? WHERE id = ?", db_time(utcnow()), job_id)


def test_mail_waits_out_an_smtp_outage_and_a_restart(tmp_path: Path) -> None:
    smtp = Smtp()  # not started: the SMTP server is down
    settings = mail_settings(tmp_path / "data", smtp.port)
    for address in (ANN, BOB):
        add_user(settings, address, name=address[:3].title())
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)

            def share() -> int:
                body = {"visibility": "private", "emails": [BOB], "expires_in": "1d"}
                response = client.post(f"/api/videos/{video_id}/links", json=body, headers=ann)
                assert response.status_code == 201
                return int(mail_jobs(settings)[-1][0])

            first = share()
            _wait_for_failed_attempt(settings, first)
            smtp.start()
            _run_now(settings, first)
            wait_until(lambda: len(smtp.inbox.to(BOB)) == 1, what="the mail after the outage")

            smtp.stop()
            second = share()
            _wait_for_failed_attempt(settings, second)
        live.stop()
        assert next(j for j in mail_jobs(settings) if j[0] == second)[2] == "queued"
        smtp.start()
        _run_now(settings, second)
        live = serve(settings)
        wait_until(lambda: len(smtp.inbox.to(BOB)) == 2, what="the mail after the restart")
        wait_until(
            lambda: {j[2] for j in mail_jobs(settings)} == {"succeeded"}, what="both jobs done"
        )
        assert all(BASE_URL + "/s/" in text_of(m) for m in smtp.inbox.to(BOB))
    finally:
        live.stop()
        smtp.stop()
