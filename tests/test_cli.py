"""`vidbox` as a person runs it: a real subprocess answering over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Serve, clean_env, run_cli


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    env = clean_env(XDG_DATA_HOME=str(tmp_path / "xdg"), TEST_LOG=str(tmp_path / "serve.log"))
    server = Serve(env=env)
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_serve_on_defaults(served: Serve, tmp_path: Path) -> None:
    served.wait_ready()
    assert httpx.get(served.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(served.url + "/readyz").status_code == 200
    videos = httpx.get(served.url + "/api/videos")
    assert videos.status_code == 401
    assert set(videos.json()) == {"detail"}

    data_dir = tmp_path / "xdg" / "vidbox"
    assert (data_dir / "vidbox.db").is_file()
    assert (data_dir / "secret.key").stat().st_mode & 0o777 == 0o600
    log = served.log()
    assert str(data_dir) in log
    assert 'sources="defaults only"' in log
    match = re.search(r"url=\"?(http://[^\s\"]+/setup\?token=[\w-]{40,})", log)
    assert match, log
    setup = httpx.get(match.group(1).replace("localhost", "127.0.0.1"))
    assert setup.status_code == 200
    # uvicorn re-raises SIGTERM after a graceful shutdown; systemd counts that as a clean stop.
    assert served.stop() in (0, -15)
    assert "Application shutdown complete" in served.log()
    assert "job runner stopped" in served.log()
    # The token travelled in a query string: the access log shows the path only.
    assert "token=" not in "\n".join(
        line for line in served.log().splitlines() if "msg=request" in line
    )


def test_secret_key_survives_restart(tmp_path: Path) -> None:
    # The generated key is a SQLite box's: PostgreSQL needs server.secret_key instead.
    env = clean_env(
        VIDBOX_DATA_DIR=str(tmp_path / "d"),
        VIDBOX_DATABASE__URL="",
        TEST_LOG=str(tmp_path / "a.log"),
    )
    first = Serve(env=env)
    first.wait_ready()
    first.stop()
    key = (tmp_path / "d" / "secret.key").read_bytes()
    second = Serve(env={**env, "TEST_LOG": str(tmp_path / "b.log")})
    second.wait_ready()
    second.stop()
    assert (tmp_path / "d" / "secret.key").read_bytes() == key


def test_bad_config_stops_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "vidbox.toml"
    cfg.write_text('[server]\nport = "not-a-port"\n')
    started = time.monotonic()
    result = run_cli("serve", "--config", str(cfg), "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "server.port" in lines[0]
    assert str(cfg) in lines[0]
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    env = clean_env(VIDBOX_AUTH__REGISTRATION="sometimes")
    result = run_cli("check", "--data-dir", str(tmp_path), env=env)
    assert result.returncode != 0
    assert "auth.registration" in result.stderr
    assert "VIDBOX_AUTH__REGISTRATION" in result.stderr


def test_version() -> None:
    from vidbox import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_check_passes_on_a_fresh_box(tmp_path: Path) -> None:
    result = run_cli("check", "--data-dir", str(tmp_path / "new"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout
    assert "ffmpeg" in result.stdout
    assert not (tmp_path / "new").exists(), "check must not change anything"


def test_check_fails_with_a_readable_report(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data dir should be")
    result = run_cli("check", "--data-dir", str(blocker / "vidbox"))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert "data_dir" in result.stdout
    assert "check(s) failed" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_box_options_go_before_or_after_the_subcommand(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data dir should be")
    options = ["--data-dir", str(blocker / "vidbox")]
    args = [*options, "check"] if where == "before" else ["check", *options]
    result = run_cli(*args)
    # The data dir given was used: it is the one reported as unusable.
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(blocker) in result.stdout
    users = run_cli("--data-dir", str(tmp_path / "box"), "user", "list")
    assert users.returncode == 0, users.stderr
    assert (tmp_path / "box" / "vidbox.db").exists()


def test_an_unknown_log_level_is_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", "--log-level", "loud", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'loud' is not one of" in result.stderr


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: port {port} is in use; choose another with --port"
    assert "setup?token" not in result.stdout + result.stderr
    assert "job runner started" not in result.stdout + result.stderr
