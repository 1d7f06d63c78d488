from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.postgres import only_sqlite
from tests.support import (
    PASSWORD,
    LiveServer,
    Serve,
    add_user,
    api_login,
    bearer,
    clean_env,
    start_server,
    wait_until,
)
from vidbox.config import Settings


def _replace_with_a_file(folder: Path) -> bool:
    """The server's start-up jobs may still be writing into ``folder``: try again then."""
    try:
        shutil.rmtree(folder)
        folder.write_text("not a folder any more")
    except OSError:
        return False
    return True


def _admin(live: LiveServer) -> dict[str, str]:
    add_user(live.settings, "root@example.org", admin=True)
    with live.client() as client:
        return bearer(api_login(client, "root@example.org")["access"])


def test_healthz_and_readyz(live: LiveServer) -> None:
    admin = _admin(live)
    add_user(live.settings, "ann@example.org")
    with live.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        # Anyone may ask whether the box is ready; only an admin learns its paths and builds.
        assert client.get("/readyz").json() == {"status": "ok"}
        ann = bearer(api_login(client, "ann@example.org")["access"])
        assert client.get("/readyz", headers=ann).json() == {"status": "ok"}
        assert client.get("/readyz", headers={"Authorization": "Bearer nonsense"}).json() == {
            "status": "ok"
        }
        ready = client.get("/readyz", headers=admin)
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) >= {"database", "data_dir", "ffmpeg"}
    assert all(c["ok"] for c in checks.values())
    assert "ffmpeg version" in checks["ffmpeg"]["detail"]


def test_readyz_names_what_is_wrong(live: LiveServer) -> None:
    admin = _admin(live)
    data_dir = live.settings.data_dir
    with live.client() as client:
        assert client.get("/readyz", headers=admin).status_code == 200  # signs in first
        wait_until(lambda: _replace_with_a_file(data_dir), what="the data folder to go")
        anonymous = client.get("/readyz")
        ready = client.get("/readyz", headers=admin)
    assert anonymous.status_code == 503
    assert anonymous.json() == {"status": "unavailable", "detail": "Not ready."}
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["data_dir"]["ok"] is False
    assert body["detail"].startswith("Not ready: ")
    assert f"data_dir: {data_dir} is not writable" in body["detail"]
    if not live.settings.database.url:
        # The database file lived in that folder too: its check says so in one line.
        assert body["checks"]["database"]["detail"].endswith("vidbox.db is missing")


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True, check=False)
    return done.returncode == 0


@only_sqlite
def test_readyz_sees_a_database_that_cannot_be_written(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    add_user(settings, "ann@example.org")
    live = start_server(settings)
    db = settings.database_path
    files = [db, db.with_name(db.name + "-wal")]
    try:
        with live.client() as client:
            assert client.get("/readyz").status_code == 200
            api_login(client, "ann@example.org")
            # Immutable: not even root (this test) may write, through files already open too.
            if not _chattr("+i", *files):
                pytest.skip("this file system cannot make files immutable (chattr +i)")
            try:
                signed_in = client.post(
                    "/api/auth/login", json={"email": "ann@example.org", "password": PASSWORD}
                )
                ready = client.get("/readyz")
            finally:
                _chattr("-i", *files)
    finally:
        live.stop()
    # Reads still work, so a SELECT 1 passed; a write does not, and readiness now says so.
    assert signed_in.status_code != 200
    assert ready.status_code == 503, ready.text


def test_a_lost_data_folder_stops_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = clean_env(VIDBOX_DATA_DIR=str(data_dir), TEST_LOG=str(tmp_path / "serve.log"))
    served = Serve(env=env)
    try:
        served.wait_ready()
        # The start-up cleanup job reads the folder too; its own failures are not this test's.
        wait_until(lambda: "cleanup finished" in served.log(), what="the start-up cleanup")
        shutil.rmtree(data_dir, ignore_errors=True)
        # Writes would "succeed" into the deleted database file: the server stops instead.
        wait_until(lambda: served.proc.poll() is not None, timeout=30, what="the server to stop")
    finally:
        if served.proc.poll() is None:
            served.stop()
    assert served.proc.returncode not in (0, None)
    log = served.log()
    assert "data folder" in log and "is gone" in log, log
    assert "Traceback" not in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(served.url + "/healthz", timeout=2)
