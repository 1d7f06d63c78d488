"""Ending sign-ins over real HTTP: what a password change, "sign out everywhere", logout and
revocation reach (API tokens, open event streams), and CSRF tokens bound to one sign-in."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import (
    PASSWORD,
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    start_server,
)
from vidbox.config import Settings

NEW_PASSWORD = "a brand new secret"


def personal_token(client: httpx.Client, auth: dict[str, str]) -> tuple[str, str]:
    created = client.post("/api/tokens", json={"name": "backup"}, headers=auth)
    assert created.status_code == 201, created.text
    return created.json()["token"], created.json()["id"]


def test_a_password_change_revokes_api_tokens_too(live: LiveServer) -> None:
    add_user(live.settings, "ann@example.org")
    with live.client() as browser, live.client() as api:
        csrf = browser_login(browser, "ann@example.org")
        assert "API tokens" in browser.get("/settings").text
        assert "and revokes your API tokens" in browser.get("/settings").text
        token, _ = personal_token(api, bearer(api_login(api, "ann@example.org")["access"]))
        assert api.get("/api/me", headers=bearer(token)).status_code == 200
        done = browser.post(
            "/settings/password",
            data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "_csrf": csrf},
        )
        assert done.status_code == 303
        assert "API tokens" in done.cookies.get("vidbox_flash", "")
        # Whoever knew the old password may have made themselves a token with it.
        assert api.get("/api/me", headers=bearer(token)).status_code == 401


def test_signing_out_everywhere_revokes_api_tokens_too(live: LiveServer) -> None:
    add_user(live.settings, "bob@example.org")
    with live.client() as browser, live.client() as api:
        csrf = browser_login(browser, "bob@example.org")
        token, _ = personal_token(browser, {"X-CSRF-Token": csrf})
        assert api.get("/api/me", headers=bearer(token)).status_code == 200
        page = browser.get("/settings").text
        assert "revokes your API tokens" in page
        done = browser.post("/settings/signout-everywhere", data={"_csrf": csrf})
        assert done.status_code == 303
        assert "API tokens" in done.cookies.get("vidbox_flash", "")
        assert api.get("/api/me", headers=bearer(token)).status_code == 401
        assert browser.get("/api/me").status_code == 401


def test_revoking_someone_elses_token_is_not_found(live: LiveServer) -> None:
    add_user(live.settings, "cat@example.org")
    add_user(live.settings, "dan@example.org")
    with live.client() as owner, live.client() as other:
        token, token_id = personal_token(
            owner, bearer(api_login(owner, "cat@example.org")["access"])
        )
        csrf = browser_login(other, "dan@example.org")
        nonexistent = other.post("/settings/tokens/nosuchtoken/revoke", data={"_csrf": csrf})
        theirs = other.post(f"/settings/tokens/{token_id}/revoke", data={"_csrf": csrf})
        assert nonexistent.status_code == theirs.status_code == 404
        api = {"X-CSRF-Token": csrf}
        assert other.delete("/api/tokens/nosuchtoken", headers=api).status_code == 404
        answer = other.delete(f"/api/tokens/{token_id}", headers=api)
        assert answer.status_code == 404
        assert answer.json() == {"detail": "No such token."}
        assert owner.get("/api/me", headers=bearer(token)).status_code == 200


# --- event streams ---------------------------------------------------------------------


def events_until_end(response: httpx.Response) -> list[tuple[str, dict[str, object]]]:
    """Every event of a stream until the server ends it (the client's read timeout is the
    deadline: a stream that stays open fails the test)."""
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


@pytest.fixture
def quick_recheck(make_settings: Callable[..., Settings]) -> Iterator[LiveServer]:
    server = start_server(make_settings({"VIDBOX_AUTH__STREAM_RECHECK_SECONDS": "1"}))
    yield server
    server.stop()


def test_an_open_stream_ends_after_logout(quick_recheck: LiveServer) -> None:
    live = quick_recheck
    add_user(live.settings, "eve@example.org")
    timeout = httpx.Timeout(30, read=10)  # below the 15 s heartbeat
    with httpx.Client(base_url=live.url, timeout=timeout) as browser:
        csrf = browser_login(browser, "eve@example.org")
        with browser.stream("GET", "/api/events") as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert "event: notifications" in lines  # the stream is live
            assert browser.post("/logout", data={"_csrf": csrf}).status_code == 303
            for _ in lines:  # ends by itself
                pass


def test_a_revoked_stream_delivers_no_further_event(live: LiveServer) -> None:
    """Between two periodic checks (30 s here), an event is not sent to a revoked sign-in."""
    add_user(live.settings, "fay@example.org")
    timeout = httpx.Timeout(30, read=10)
    with (
        httpx.Client(base_url=live.url, timeout=timeout) as client,
        httpx.Client(base_url=live.url, timeout=timeout) as watcher,
    ):
        access = api_login(client, "fay@example.org")["access"]
        token, _ = personal_token(client, bearer(access))
        with watcher.stream("GET", "/api/events", headers=bearer(access)) as stream:
            lines = stream.iter_lines()
            assert "event: notifications" in lines
            assert client.post("/api/auth/logout", headers=bearer(access)).status_code == 204
            created = client.post(
                "/api/uploads",
                headers={**bearer(token), "Tus-Resumable": "1.0.0", "Upload-Length": "1000"},
            )
            assert created.status_code == 201
            rest = "\n".join(lines)
    assert "event: video" not in rest


# --- CSRF ------------------------------------------------------------------------------


def test_a_csrf_token_works_only_for_its_own_sign_in(live: LiveServer) -> None:
    add_user(live.settings, "gus@example.org")
    add_user(live.settings, "hal@example.org")
    with live.client() as attacker, live.client() as victim:
        attacker_csrf = browser_login(attacker, "gus@example.org")
        attacker_seed = attacker.cookies["vidbox_csrf"]
        victim.get("/login")
        seed_before = victim.cookies["vidbox_csrf"]
        victim_csrf = browser_login(victim, "hal@example.org")
        assert victim.cookies["vidbox_csrf"] != seed_before  # renewed at sign-in
        session = victim.cookies["vidbox_session"]
    # The attacker plants their own CSRF cookie in the victim's browser (a sibling subdomain
    # can) and submits the token that goes with it: it belongs to another sign-in.
    planted = {"vidbox_session": session, "vidbox_csrf": attacker_seed}
    with live.client(cookies=planted) as victim:
        forged = victim.post("/settings/profile", data={"name": "Mallory", "_csrf": attacker_csrf})
        assert forged.status_code == 403
        assert victim.get("/api/me").json()["name"] == ""
    # Signed out and in again: the earlier sign-in's token is no good either.
    with live.client() as browser:
        first = browser_login(browser, "hal@example.org")
        assert browser.post("/logout", data={"_csrf": first}).status_code == 303
        second = browser_login(browser, "hal@example.org")
        assert first != second
        stale = browser.post("/settings/profile", data={"name": "Old", "_csrf": first})
        assert stale.status_code == 403
        ok = browser.post("/settings/profile", data={"name": "New", "_csrf": second})
        assert ok.status_code == 303
    assert victim_csrf != attacker_csrf
