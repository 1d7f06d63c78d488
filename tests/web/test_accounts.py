"""Accounts over real HTTP: setup, sign-in for browser and API, tokens, roles, rate limits."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.postgres import database_dump
from tests.support import (
    PASSWORD,
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    csrf_from,
    logged_setup_token,
    start_server,
)
from vidbox.config import Settings


def test_setup_token_creates_the_first_admin_once(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = logged_setup_token(caplog.get_records("setup"))
    assert token
    with live.client() as browser:
        assert browser.get("/setup?token=wrong").status_code == 404
        form = browser.get(f"/setup?token={token}")
        assert form.status_code == 200
        csrf = csrf_from(form.text)
        weak = browser.post(
            f"/setup?token={token}",
            data={"email": "ann@example.org", "password": "short", "_csrf": csrf},
        )
        assert weak.status_code == 400
        assert "at least 10 characters" in weak.text
        done = browser.post(
            f"/setup?token={token}",
            data={"email": "Ann@Example.org", "password": PASSWORD, "name": "Ann", "_csrf": csrf},
        )
        assert done.status_code == 303
        me = browser.get("/api/me")
        assert me.json()["email"] == "ann@example.org"
        assert me.json()["is_admin"] is True
        assert browser.get(f"/setup?token={token}").status_code == 404
    with live.client() as other:
        again = other.post(
            f"/setup?token={token}",
            data={"email": "eve@example.org", "password": PASSWORD},
        )
        assert again.status_code == 404


def test_api_login_refresh_rotation_reuse_and_logout(live: LiveServer) -> None:
    add_user(live.settings, "bob@example.org", name="Bob")
    with live.client() as client:
        tokens = api_login(client, "BOB@example.org")
        assert tokens["user"]["email"] == "bob@example.org"  # type: ignore[index]
        assert tokens["access"].startswith("vbx_at_")
        assert len(tokens["access"]) >= 43
        assert client.get("/api/me", headers=bearer(tokens["access"])).status_code == 200

        rotated = client.post("/api/auth/refresh", json={"refresh": tokens["refresh"]})
        assert rotated.status_code == 200
        new = rotated.json()
        assert new["refresh"] != tokens["refresh"]
        assert client.get("/api/me", headers=bearer(new["access"])).status_code == 200

        # The old refresh token is spent; replaying it revokes the whole family.
        replay = client.post("/api/auth/refresh", json={"refresh": tokens["refresh"]})
        assert replay.status_code == 401
        assert "already used" in replay.json()["detail"]
        assert client.get("/api/me", headers=bearer(new["access"])).status_code == 401
        assert client.post("/api/auth/refresh", json={"refresh": new["refresh"]}).status_code == 401

        fresh = api_login(client, "bob@example.org")
        assert client.post("/api/auth/logout", headers=bearer(fresh["access"])).status_code == 204
        assert client.get("/api/me", headers=bearer(fresh["access"])).status_code == 401
        refused = client.post("/api/auth/refresh", json={"refresh": fresh["refresh"]})
        assert refused.status_code == 401


def test_bad_requests_get_clear_answers(live: LiveServer) -> None:
    with live.client() as client:
        assert client.get("/api/me").status_code == 401
        garbage = client.get("/api/me", headers=bearer("vbx_at_nonsense"))
        assert garbage.status_code == 401
        assert "not valid" in garbage.json()["detail"]
        basic = client.get("/api/me", headers={"Authorization": "Basic abc"})
        assert basic.status_code == 401
        not_json = client.post(
            "/api/auth/login", content=b"email=a", headers={"Content-Type": "text/plain"}
        )
        assert not_json.status_code == 415
        broken = client.post(
            "/api/auth/login", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        missing = client.post("/api/auth/login", json={"email": "a@b.org"})
        assert missing.status_code == 400
        assert missing.json()["errors"] == {"password": ["password is required."]}


def test_personal_api_tokens(live: LiveServer) -> None:
    add_user(live.settings, "cat@example.org")
    add_user(live.settings, "dan@example.org")
    with live.client() as client:
        access = api_login(client, "cat@example.org")["access"]
        created = client.post("/api/tokens", json={"name": "backup"}, headers=bearer(access))
        assert created.status_code == 201
        token, token_id = created.json()["token"], created.json()["id"]
        assert token.startswith("vbx_pat_")
        listed = client.get("/api/tokens", headers=bearer(access)).json()["items"]
        assert [t["name"] for t in listed] == ["backup"]
        assert "token" not in listed[0]
        assert client.get("/api/me", headers=bearer(token)).json()["email"] == "cat@example.org"

        # Someone else cannot revoke it, and learns nothing about it.
        other = api_login(client, "dan@example.org")["access"]
        assert client.delete(f"/api/tokens/{token_id}", headers=bearer(other)).status_code == 404
        assert client.get("/api/me", headers=bearer(token)).status_code == 200

        assert client.delete(f"/api/tokens/{token_id}", headers=bearer(access)).status_code == 204
        assert client.get("/api/me", headers=bearer(token)).status_code == 401


def test_tokens_are_stored_hashed(live: LiveServer) -> None:
    add_user(live.settings, "eve@example.org")
    with live.client() as client:
        tokens = api_login(client, "eve@example.org")
    dump = database_dump(live.settings)
    assert tokens["access"] not in dump
    assert tokens["refresh"] not in dump
    assert PASSWORD not in dump


def test_cookie_session_and_csrf(live: LiveServer) -> None:
    add_user(live.settings, "fay@example.org", name="Fay")
    with live.client() as browser:
        login_page = browser.get("/login")
        assert login_page.status_code == 200
        forged_login = browser.post(
            "/login", data={"email": "fay@example.org", "password": PASSWORD}
        )
        assert forged_login.status_code == 403

        csrf = browser_login(browser, "fay@example.org")
        cookie = next(c for c in browser.cookies.jar if c.name == "vidbox_session")
        assert cookie.has_nonstandard_attr("HttpOnly")
        set_cookie = [h for h in browser.get("/login").headers.get_list("set-cookie")]
        assert all("token" not in h for h in set_cookie)

        forged = browser.post("/settings/profile", data={"name": "Mallory"})
        assert forged.status_code == 403
        wrong_token = browser.post("/settings/profile", data={"name": "Mallory", "_csrf": "x" * 64})
        assert wrong_token.status_code == 403
        other_site = browser.post(
            "/settings/profile",
            data={"name": "Mallory", "_csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        fetch_without_header = browser.post(
            "/api/tokens", json={"name": "x"}, headers={"Origin": live.url}
        )
        assert fetch_without_header.status_code == 403
        assert browser.get("/api/me").json()["name"] == "Fay"

        ok = browser.post("/settings/profile", data={"name": "Fay F.", "_csrf": csrf})
        assert ok.status_code == 303
        fetch = browser.post("/api/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
        assert fetch.status_code == 201
        assert browser.get("/api/me").json()["name"] == "Fay F."

        out = browser.post("/logout", data={"_csrf": csrf})
        assert out.status_code == 303
        assert browser.get("/api/me").status_code == 401


def test_stolen_cookie_stops_working_after_logout(live: LiveServer) -> None:
    add_user(live.settings, "gus@example.org")
    with live.client() as browser:
        csrf = browser_login(browser, "gus@example.org")
        stolen = browser.cookies["vidbox_session"]
        browser.post("/logout", data={"_csrf": csrf})
    with live.client(cookies={"vidbox_session": stolen}) as thief:
        assert thief.get("/api/me").status_code == 401


def test_pages_redirect_to_login_and_back(live: LiveServer) -> None:
    add_user(live.settings, "hal@example.org")
    with live.client() as browser:
        page = browser.get("/settings", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fsettings"
        login_page = browser.get(page.headers["location"])
        done = browser.post(
            "/login?next=%2Fsettings",
            data={
                "email": "hal@example.org",
                "password": PASSWORD,
                "_csrf": csrf_from(login_page.text),
            },
        )
        assert done.headers["location"] == "/settings"
        browser.cookies.clear()
        login_page = browser.get("/login")
        evil = browser.post(
            "/login?next=//evil.example/x",
            data={
                "email": "hal@example.org",
                "password": PASSWORD,
                "_csrf": csrf_from(login_page.text),
            },
        )
        assert evil.headers["location"] == "/"


def test_rate_limit_and_identical_failures(live: LiveServer) -> None:
    add_user(live.settings, "ivy@example.org")
    with live.client() as client:
        wrong = client.post(
            "/api/auth/login", json={"email": "ivy@example.org", "password": "x" * 12}
        )
        unknown = client.post(
            "/api/auth/login", json={"email": "nobody@example.org", "password": "x" * 12}
        )
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() == {"detail": "Wrong email or password."}
        statuses = [
            client.post(
                "/api/auth/login", json={"email": "ivy@example.org", "password": "y" * 12}
            ).status_code
            for _ in range(10)
        ]
        assert statuses[-1] == 429
        limited = client.post(
            "/api/auth/login", json={"email": "ivy@example.org", "password": PASSWORD}
        )
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert set(limited.json()) == {"detail"}


def test_disabled_users_cannot_sign_in(live: LiveServer) -> None:
    add_user(live.settings, "root@example.org", admin=True)
    jim = add_user(live.settings, "jim@example.org")
    with live.client() as admin, live.client() as client:
        jim_tokens = api_login(client, "jim@example.org")
        csrf = browser_login(admin, "root@example.org")
        done = admin.post(f"/admin/users/{jim}/disable", data={"_csrf": csrf})
        assert done.status_code == 303
        refused = client.post(
            "/api/auth/login", json={"email": "jim@example.org", "password": PASSWORD}
        )
        assert refused.status_code == 403
        assert "disabled" in refused.json()["detail"]
        assert client.get("/api/me", headers=bearer(jim_tokens["access"])).status_code == 401
        # The box keeps an admin: the only admin cannot demote themself.
        admin_page = admin.get("/admin")
        me = admin.get("/api/me").json()["id"]
        self_demote = admin.post(
            f"/admin/users/{me}/remove-admin", data={"_csrf": csrf_from(admin_page.text)}
        )
        assert self_demote.status_code == 409


def test_admin_pages_are_hidden_from_members(live: LiveServer) -> None:
    add_user(live.settings, "kim@example.org")
    with live.client() as browser:
        csrf = browser_login(browser, "kim@example.org")
        assert browser.get("/admin").status_code == 404
        made = browser.post(
            "/admin/users",
            data={"email": "x@example.org", "password": PASSWORD, "is_admin": "on", "_csrf": csrf},
        )
        assert made.status_code == 404


@pytest.mark.parametrize("mode", ["closed", "open", "invite"])
def test_registration_modes(make_settings: object, mode: str) -> None:
    settings: Settings = make_settings({"VIDBOX_AUTH__REGISTRATION": mode})  # type: ignore[operator]
    live = start_server(settings)
    try:
        with live.client() as client:
            response = client.post(
                "/api/auth/register", json={"email": "new@example.org", "password": PASSWORD}
            )
            if mode == "open":
                assert response.status_code == 201
                assert response.json()["email"] == "new@example.org"
                api_login(client, "new@example.org")
                dup = client.post(
                    "/api/auth/register", json={"email": "NEW@example.org", "password": PASSWORD}
                )
                assert dup.status_code == 409
                weak = client.post(
                    "/api/auth/register",
                    json={"email": "w@example.org", "password": "password12345"},
                )
                assert weak.status_code == 400
                assert "password" in weak.json()["errors"]
                for breached in ("qwerty12345", "iloveyou123", "football123", "letmein1234"):
                    refused = client.post(
                        "/api/auth/register",
                        json={"email": "w@example.org", "password": breached},
                    )
                    assert refused.status_code == 400, breached
                    assert "too easy to guess" in refused.json()["errors"]["password"][0]
            else:
                assert response.status_code == 403
                assert client.get("/register", headers={"Accept": "text/html"}).status_code == 404
        if mode == "invite":
            _invite_flow(live)
    finally:
        live.stop()


def _invite_flow(live: LiveServer) -> None:
    add_user(live.settings, "boss@example.org", admin=True)
    with live.client() as admin:
        csrf = browser_login(admin, "boss@example.org")
        page = admin.post("/admin/invites", data={"email": "guest@example.org", "_csrf": csrf})
        url = re.search(r'id="invite-url">([^<]+)<', page.text)
        assert url, page.text
        path = httpx.URL(url.group(1)).path
    with live.client() as guest:
        form = guest.get(path)
        assert form.status_code == 200
        assert 'value="guest@example.org" readonly' in form.text
        done = guest.post(
            path,
            data={
                "email": "other@example.org",
                "password": PASSWORD,
                "_csrf": csrf_from(form.text),
            },
        )
        assert done.status_code == 303
        assert guest.get("/api/me").json()["email"] == "guest@example.org"
    with live.client() as again:
        assert again.get(path).status_code == 404


def test_password_change_checks_the_old_one_and_signs_out_everywhere(live: LiveServer) -> None:
    add_user(live.settings, "lee@example.org")
    with live.client() as browser, live.client() as api:
        tokens = api_login(api, "lee@example.org")
        csrf = browser_login(browser, "lee@example.org")
        wrong = browser.post(
            "/settings/password",
            data={
                "current_password": "not it at all",
                "new_password": "a brand new secret",
                "_csrf": csrf,
            },
        )
        assert wrong.status_code == 400
        assert "current password is not right" in wrong.text
        done = browser.post(
            "/settings/password",
            data={
                "current_password": PASSWORD,
                "new_password": "a brand new secret",
                "_csrf": csrf,
            },
        )
        assert done.status_code == 303
        assert browser.get("/api/me").status_code == 401
        assert api.get("/api/me", headers=bearer(tokens["access"])).status_code == 401
        assert api_login(api, "lee@example.org", "a brand new secret")["access"]
        csrf = browser_login(browser, "lee@example.org", "a brand new secret")
        statuses = [
            browser.post(
                "/settings/password",
                data={
                    "current_password": f"guess number {i}",
                    "new_password": "x" * 12,
                    "_csrf": csrf,
                },
            ).status_code
            for i in range(9)
        ]
    # Eight wrong guesses per window, counting the one before the change.
    assert statuses == [400] * 7 + [429] * 2
