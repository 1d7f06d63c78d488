from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import LiveServer, wait_until


def _replace_with_a_file(folder: Path) -> bool:
    """The server's start-up jobs may still be writing into ``folder``: try again then."""
    try:
        shutil.rmtree(folder)
        folder.write_text("not a folder any more")
    except OSError:
        return False
    return True


def test_healthz_and_readyz(live: LiveServer) -> None:
    with live.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) >= {"database", "data_dir", "ffmpeg"}
    assert all(c["ok"] for c in checks.values())
    assert "ffmpeg version" in checks["ffmpeg"]["detail"]


def test_readyz_names_what_is_wrong(live: LiveServer) -> None:
    data_dir = live.settings.data_dir
    wait_until(lambda: _replace_with_a_file(data_dir), what="the data folder to go")
    with live.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["data_dir"]["ok"] is False
    assert body["detail"].startswith("Not ready: ")
    assert f"data_dir: {data_dir} is not writable" in body["detail"]
    # The database file lived in that folder too: its check says so in one line.
    assert body["checks"]["database"]["detail"].endswith("vidbox.db is missing")
