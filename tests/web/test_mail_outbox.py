"""Queued mail holds ids, not secrets (issue 14): share tokens, one-time sign-in links and
confirmation links are built when the mail is sent, so none of them is in the jobs table (kept
for days, and in every backup) or anywhere else in the database files."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.postgres import database_dump, db_time
from tests.support import add_user, api_login, bearer, wait_until
from tests.web.test_share_support import (
    BASE_URL,
    HTML,
    Smtp,
    link_in,
    mail_jobs,
    mail_settings,
    serve,
    sql,
    text_of,
    tus_video,
)
from vidbox.models import utcnow

ANN, BOB, CAROL, DORA = (
    "ann@example.org",
    "bob@example.org",
    "carol@outside.example",
    "dora@example.org",
)


def test_no_token_is_stored_with_queued_mail(tmp_path: Path) -> None:
    smtp = Smtp()
    smtp.start()
    settings = mail_settings(tmp_path / "data", smtp.port, VIDBOX_AUTH__REGISTRATION="open")
    for address in (ANN, BOB):
        add_user(settings, address, name=address[:3].title())
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
            created = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "private", "emails": [BOB, CAROL], "expires_in": "1d"},
                headers=ann,
            )
            assert created.status_code == 201
            share_path = urlsplit(created.json()["url"]).path
            assert client.post(f"{share_path}/access", json={"email": CAROL}).status_code == 202
            registered = client.post(
                "/api/auth/register",
                json={"email": DORA, "password": "correct horse battery"},
            )
            assert registered.status_code == 201
        wait_until(
            lambda: all(smtp.inbox.to(a) for a in (BOB, CAROL, DORA)), what="the three mails"
        )
        wait_until(
            lambda: {job[2] for job in mail_jobs(settings)} == {"succeeded"},
            what="every mail job to finish",
        )
        # What the mails carried, and must not be stored anywhere.
        secrets = {share_path.removeprefix("/s/")}
        assert BASE_URL + share_path in text_of(smtp.inbox.to(BOB)[0])
        for address in (CAROL, DORA):
            secrets.add(link_in(smtp.inbox.to(address)[0]).rpartition("/")[2])
        assert all(len(secret) > 20 for secret in secrets)

        jobs = mail_jobs(settings)
        stored = database_dump(settings)
        for secret in secrets:
            assert all(secret not in job[1] for job in jobs)
            assert secret not in stored, secret
        # The jobs are still there (kept for days), holding only what rebuilds the mail.
        kinds = {json.loads(job[1]).get("message") for job in jobs}
        assert kinds == {"share_notification", "access_link", "verify_email"}
    finally:
        live.stop()
        smtp.stop()


def _run_now(settings: Any) -> None:
    # Skips what is left of the retry backoff instead of waiting it out.
    sql(settings, "UPDATE jobs SET run_at = ? WHERE state = 'queued'", db_time(utcnow()))


def test_mail_for_a_link_revoked_while_queued_is_not_sent(tmp_path: Path) -> None:
    smtp = Smtp()  # down: the mails wait in the queue
    settings = mail_settings(tmp_path / "data", smtp.port)
    for address in (ANN, BOB):
        add_user(settings, address, name=address[:3].title())
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
            link = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "private", "emails": [BOB, CAROL], "expires_in": "1d"},
                headers=ann,
            ).json()
            path = urlsplit(link["url"]).path
            assert client.post(f"{path}/access", json={"email": CAROL}).status_code == 202

            def both_tried() -> bool:
                jobs = mail_jobs(settings)
                # Back in the queue with an error: the attempt is over, not still connecting
                # (an attempt under way when the mail server comes up would send).
                return len(jobs) == 2 and all(
                    job[2] == "queued" and job[3] >= 1 and job[4] for job in jobs
                )

            wait_until(both_tried, what="a failed attempt of both mails")
            assert client.delete(f"/api/links/{link['id']}", headers=ann).status_code == 204
        smtp.start()

        def dropped() -> bool:
            # An attempt already under way when the mail server came up may still fail and
            # back off again: skip each backoff as it comes.
            _run_now(settings)
            return {job[2] for job in mail_jobs(settings)} == {"failed"}

        try:
            wait_until(dropped, what="both mails to be dropped")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {mail_jobs(settings)}") from None
        assert all("revoked" in (job[4] or "") for job in mail_jobs(settings))
        assert not smtp.inbox.to(BOB) and not smtp.inbox.to(CAROL)
    finally:
        live.stop()
        smtp.stop()


def test_a_sign_in_link_lasts_15_minutes_from_the_request(tmp_path: Path) -> None:
    smtp = Smtp()
    smtp.start()
    settings = mail_settings(tmp_path / "data", smtp.port)
    add_user(settings, ANN, name="Ann")
    live = serve(settings)
    try:
        with live.client() as client:
            ann = bearer(api_login(client, ANN)["access"])
            video_id = tus_video(client, ann)
            link = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "private", "emails": [CAROL], "expires_in": "1d"},
                headers=ann,
            ).json()
            path = urlsplit(link["url"]).path
            assert client.post(f"{path}/access", json={"email": CAROL}).status_code == 202
            wait_until(lambda: smtp.inbox.to(CAROL), what="the sign-in mail")
            enter = link_in(smtp.inbox.to(CAROL)[0])
            assert client.get(enter, headers=HTML).status_code == 200
            # Signed when sent, but its life counts from when it was asked for.
            late = db_time(utcnow() - timedelta(minutes=16))
            sql(settings, "UPDATE share_grants SET created_at = ?", late)
            expired = client.get(enter, headers=HTML)
            assert expired.status_code == 410 and "expired" in expired.text
    finally:
        live.stop()
        smtp.stop()
