"""The account operations reached from the web and from `vidbox user` are the same functions
(vidbox.auth.accounts): each test does one thing both ways, over real HTTP and a real CLI
process against the same running box, and compares rows, sign-ins and refusals."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from tests.postgres import run_sql
from tests.support import (
    PASSWORD,
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    clean_env,
    csrf_from,
    run_cli,
    start_server,
    wait_until,
)
from vidbox.config import Settings

NEW_PASSWORD = "a brand new secret"


@dataclass
class SignedIn:
    """One account signed in every way there is: a browser, an API login, a personal token."""

    email: str
    browser: httpx.Client
    csrf: str
    access: str
    refresh: str
    personal: str

    def credentials_working(self, api: httpx.Client) -> list[bool]:
        return [
            self.browser.get("/api/me").status_code == 200,
            api.get("/api/me", headers=bearer(self.access)).status_code == 200,
            api.get("/api/me", headers=bearer(self.personal)).status_code == 200,
        ]


def sign_in_everywhere(live: LiveServer, email: str, api: httpx.Client) -> SignedIn:
    browser = live.client()
    csrf = browser_login(browser, email)
    tokens = api_login(api, email)
    made = api.post("/api/tokens", json={"name": "script"}, headers=bearer(tokens["access"]))
    assert made.status_code == 201, made.text
    signed = SignedIn(
        email, browser, csrf, tokens["access"], tokens["refresh"], made.json()["token"]
    )
    assert signed.credentials_working(api) == [True, True, True]
    return signed


def snapshot(live: LiveServer, email: str) -> tuple[tuple[object, ...], list[tuple[str, bool]]]:
    """The account's row (what an operation may change, without what differs by account)
    and its sessions as (kind, revoked), straight from the database."""
    ((user_id, *flags),) = run_sql(
        live.settings,
        "SELECT id, disabled, is_admin, email_verified, name FROM users WHERE email = ?",
        email,
    )
    rows = run_sql(
        live.settings,
        "SELECT kind, revoked_at IS NOT NULL FROM auth_sessions WHERE user_id = ?"
        " ORDER BY kind, created_at",
        user_id,
    )
    # sqlite3 gives 0/1 where PostgreSQL gives booleans.
    flags = [bool(f) if isinstance(f, int) else f for f in flags]
    return tuple(flags), [(kind, bool(revoked)) for kind, revoked in rows]


def cli(live: LiveServer, *args: str, stdin: str = "") -> tuple[int, str]:
    done = run_cli(
        "user", *args, env=clean_env(VIDBOX_DATA_DIR=str(live.settings.data_dir)), stdin=stdin
    )
    return done.returncode, done.stdout + done.stderr


def admin_post(admin: httpx.Client, path: str) -> httpx.Response:
    return admin.post(path, data={"_csrf": csrf_from(admin.get("/admin").text)})


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[LiveServer]:
    """The accounts are added before the server starts: opening the database from this
    process as well (add_user) while the server has it open drops the server's file locks
    (POSIX locks are per process), and a CLI process then takes itself for the last user of
    the file and removes its shared-memory index under the server."""
    live = start_server(settings)
    try:
        yield live
    finally:
        live.stop()


def test_disabling_and_enabling_from_the_admin_page_and_the_cli_do_the_same(
    settings: Settings,
) -> None:
    add_user(settings, "root@example.org", admin=True)
    web_id = add_user(settings, "web@example.org", name="Same Name")
    add_user(settings, "cli@example.org", name="Same Name")
    with serving(settings) as live, live.client() as admin, live.client() as api:
        browser_login(admin, "root@example.org")
        by_web = sign_in_everywhere(live, "web@example.org", api)
        by_cli = sign_in_everywhere(live, "cli@example.org", api)
        before = snapshot(live, "web@example.org")
        assert before == snapshot(live, "cli@example.org")

        assert admin_post(admin, f"/admin/users/{web_id}/disable").status_code == 303
        assert cli(live, "disable", "cli@example.org")[0] == 0
        disabled = snapshot(live, "web@example.org")
        assert disabled == snapshot(live, "cli@example.org")
        assert disabled[0][0] == 1
        assert disabled[1] == [(kind, True) for kind, _ in before[1]]  # every sign-in ended
        # Another process revoked one of them: the server's short auth cache lets it by briefly.
        for signed in (by_web, by_cli):
            wait_until(
                lambda s=signed: s.credentials_working(api) == [False, False, False],
                what=f"{signed.email}'s credentials to stop working",
            )
            refused = api.post("/api/auth/refresh", json={"refresh": signed.refresh}).status_code
            login = api.post("/api/auth/login", json={"email": signed.email, "password": PASSWORD})
            assert (refused, login.status_code) == (401, 403)

        assert admin_post(admin, f"/admin/users/{web_id}/enable").status_code == 303
        assert cli(live, "enable", "cli@example.org")[0] == 0
        enabled = snapshot(live, "web@example.org")
        assert enabled == snapshot(live, "cli@example.org")
        assert enabled[0] == before[0]
        for email in ("web@example.org", "cli@example.org"):
            api_login(api, email)  # signing in works again; the old sign-ins stay ended
        by_web.browser.close()
        by_cli.browser.close()


def test_the_rules_of_disabling(settings: Settings) -> None:
    """An unknown account is refused both ways. An admin on the web cannot disable themself,
    so the web always keeps an admin; the console can (whoever runs it owns the box and can
    enable the account again from there)."""
    root = add_user(settings, "root@example.org", admin=True)
    with serving(settings) as live, live.client() as admin:
        browser_login(admin, "root@example.org")
        unknown = admin_post(admin, "/admin/users/nosuchuser/disable")
        assert unknown.status_code == 404
        code, said = cli(live, "disable", "nobody@example.org")
        assert code == 1
        assert "No account for nobody@example.org" in said

        mine = admin_post(admin, f"/admin/users/{root}/disable")
        assert mine.status_code == 409
        assert "cannot disable yourself" in mine.text
        assert snapshot(live, "root@example.org")[0][0] == 0
        assert cli(live, "disable", "root@example.org")[0] == 0
        assert snapshot(live, "root@example.org")[0][0] == 1


def test_changing_a_password_in_settings_and_with_the_cli_does_the_same(
    settings: Settings,
) -> None:
    add_user(settings, "web@example.org", name="Same Name")
    add_user(settings, "cli@example.org", name="Same Name")
    with serving(settings) as live, live.client() as api:
        by_web = sign_in_everywhere(live, "web@example.org", api)
        by_cli = sign_in_everywhere(live, "cli@example.org", api)
        before = snapshot(live, "web@example.org")

        # The same password rules, with the same words.
        weak_web = by_web.browser.post(
            "/settings/password",
            data={"current_password": PASSWORD, "new_password": "short", "_csrf": by_web.csrf},
        )
        code, said = cli(
            live, "set-password", "cli@example.org", "--password-stdin", stdin="short\n"
        )
        assert (weak_web.status_code, code) == (400, 1)
        assert "at least 10 characters" in weak_web.text
        assert "at least 10 characters" in said
        assert snapshot(live, "web@example.org") == snapshot(live, "cli@example.org") == before

        done = by_web.browser.post(
            "/settings/password",
            data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "_csrf": by_web.csrf},
        )
        assert done.status_code == 303
        code, said = cli(
            live, "set-password", "cli@example.org", "--password-stdin", stdin=NEW_PASSWORD + "\n"
        )
        assert code == 0, said
        changed = snapshot(live, "web@example.org")
        assert changed == snapshot(live, "cli@example.org")
        assert changed[0] == before[0]
        assert changed[1] == [(kind, True) for kind, _ in before[1]]  # every sign-in ended
        for signed in (by_web, by_cli):
            wait_until(
                lambda s=signed: s.credentials_working(api) == [False, False, False],
                what=f"{signed.email}'s credentials to stop working",
            )
            old = api.post("/api/auth/login", json={"email": signed.email, "password": PASSWORD})
            assert old.status_code == 401
            api_login(api, signed.email, NEW_PASSWORD)
        by_web.browser.close()
        by_cli.browser.close()
