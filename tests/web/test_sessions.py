"""Ending sign-ins over real HTTP: what a password change, "sign out everywhere", logout and
revocation reach (API tokens, open event streams), and CSRF tokens bound to one sign-in."""

from __future__ import annotations

import httpx

from tests.support import (
    PASSWORD,
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
)

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
