"""`vidbox user`, `vidbox storage migrate` and `vidbox check` against real services."""

from __future__ import annotations

import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from tests.postgres import settings_for
from tests.support import (
    PASSWORD,
    add_user,
    api_login,
    bearer,
    clean_env,
    free_port,
    run_async,
    run_cli,
    s3_environ,
    start_server,
    wait_until,
)
from vidbox.config import load_settings
from vidbox.storage import load


def test_user_commands(tmp_path: Path) -> None:
    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path))
    made = run_cli(
        "user",
        "create",
        "Ann@Example.org",
        "--name",
        "Ann",
        "--admin",
        "--password-stdin",
        env=env,
        stdin=PASSWORD + "\n",
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    weak = run_cli(
        "user", "create", "bob@example.org", "--password-stdin", env=env, stdin="short\n"
    )
    assert weak.returncode == 1
    assert "at least 10 characters" in weak.stderr
    dup = run_cli(
        "user", "create", "ann@example.org", "--password-stdin", env=env, stdin=PASSWORD + "\n"
    )
    assert "already exists" in dup.stderr
    assert run_cli("user", "disable", "ann@example.org", env=env).returncode == 0
    listed = run_cli("user", "list", env=env)
    assert listed.stdout.strip() == "ann@example.org\tAnn\tadmin,disabled"
    changed = run_cli(
        "user",
        "set-password",
        "ann@example.org",
        "--password-stdin",
        env=env,
        stdin="another long secret\n",
    )
    assert changed.returncode == 0
    missing = run_cli("user", "enable", "nobody@example.org", env=env)
    assert missing.returncode == 1
    assert "No account for nobody@example.org" in missing.stderr


def test_set_password_revokes_api_tokens_too(tmp_path: Path) -> None:
    settings = settings_for(data_dir=tmp_path, environ={})
    add_user(settings, "cy@example.org")
    live = start_server(settings)
    try:
        with live.client() as client:
            access = api_login(client, "cy@example.org")["access"]
            token = client.post("/api/tokens", json={"name": "x"}, headers=bearer(access))
            personal = token.json()["token"]
            changed = run_cli(
                "user",
                "set-password",
                "cy@example.org",
                "--password-stdin",
                env=clean_env(VIDBOX_DATA_DIR=str(tmp_path)),
                stdin="another long secret\n",
            )
            assert changed.returncode == 0, changed.stderr
            # Another process revoked it: the server's short auth cache lets it through briefly.
            wait_until(
                lambda: client.get("/api/me", headers=bearer(personal)).status_code == 401,
                what="the personal token to stop working",
            )
    finally:
        live.stop()


def test_storage_migrate_to_s3_is_resumable(tmp_path: Path, moto_endpoint: str) -> None:
    # The box is on local storage, whatever storage the suite runs on: it moves from there.
    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path / "data"), VIDBOX_STORAGE__BACKEND="local")
    media = tmp_path / "data" / "media" / "videos" / "u1" / "v1"
    media.mkdir(parents=True)
    (media / "original.mp4").write_bytes(b"x" * 1000)
    (media / "thumbnail.jpg").write_bytes(b"y" * 10)
    s3 = {k: v for k, v in s3_environ(moto_endpoint).items() if k != "VIDBOX_STORAGE__BACKEND"}
    first = run_cli("storage", "migrate", "--to", "s3", env={**env, **s3})
    assert first.returncode == 0, first.stderr
    assert "Copied 2 files" in first.stdout
    assert 'storage.backend = "s3"' in first.stdout
    again = run_cli("storage", "migrate", "--to", "s3", env={**env, **s3})
    assert "Copied 0 files" in again.stdout
    assert "2 were already there" in again.stdout

    async def keys() -> list[str]:
        storage = load(load_settings(environ={**env, **s3, "VIDBOX_STORAGE__BACKEND": "s3"}))
        try:
            return [o.key for o in await storage.list_prefix("videos/")]
        finally:
            await storage.close()

    assert run_async(keys()) == ["videos/u1/v1/original.mp4", "videos/u1/v1/thumbnail.jpg"]
    broken = run_cli(
        "storage",
        "migrate",
        "--to",
        "s3",
        env={**env, **{k: v for k, v in s3.items() if "ENDPOINT" not in k}},
    )
    assert broken.returncode == 1
    assert "storage.endpoint" in broken.stderr


def test_check_reports_stores_and_sends_a_test_mail(tmp_path: Path) -> None:
    received: list[object] = []
    lock = threading.Lock()

    class Inbox(Message):
        def handle_message(self, message: object) -> None:
            with lock:
                received.append(message)

    port = free_port()
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        env = clean_env(
            VIDBOX_DATA_DIR=str(tmp_path),
            VIDBOX_EMAIL__HOST="127.0.0.1",
            VIDBOX_EMAIL__PORT=str(port),
            VIDBOX_EMAIL__SECURITY="none",
            VIDBOX_EMAIL__FROM_ADDRESS="box@example.org",
        )
        result = run_cli("check", "--send-test-mail", "me@example.org", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "test mail accepted for me@example.org" in result.stdout
        with lock:
            assert len(received) == 1
        starttls = run_cli("check", env={**env, "VIDBOX_EMAIL__SECURITY": "starttls"})
        assert starttls.returncode == 1
        assert "STARTTLS" in starttls.stdout
    finally:
        controller.stop()
    down = run_cli(
        "check",
        env={**clean_env(VIDBOX_DATA_DIR=str(tmp_path)), **s3_environ(f"127.0.0.1:{free_port()}")},
    )
    assert down.returncode == 1
    assert "FAIL  storage" in down.stdout
    assert "unreachable" in down.stdout
    assert "do-not-print" not in down.stdout
