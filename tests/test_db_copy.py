"""`vidbox db copy`: a SQLite box moved to PostgreSQL works there as it did (sign-in, videos,
share links), a copy cut off by kill -9 is finished by running it again, and what must not be
copied is refused with one line."""

from __future__ import annotations

import contextlib
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.postgres import TEST_SECRET_KEY, Databases, only_postgres, postgres_sql, run_sql
from tests.support import (
    VIDBOX,
    add_user,
    api_login,
    bearer,
    browser_login,
    clean_env,
    run_cli,
    start_server,
    wait_for_status,
    wait_until,
)
from tests.web.test_share_support import media_paths
from vidbox.config import Settings
from vidbox.db import head_revision, migrate_sync
from vidbox.dbcopy import tables

# Port 9 (discard): nothing listens there on loopback.
NOWHERE = "postgresql+asyncpg://vidbox:pw-not-shown@127.0.0.1:9/vidbox"


@pytest.fixture
def sqlite_box(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    """A SQLite box even on PostgreSQL runs (an empty database.url is SQLite)."""
    return make_settings({"VIDBOX_DATABASE__URL": ""}, data_dir=tmp_path / "old")


@pytest.fixture
def target(postgres_databases: Databases | None) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards."""
    assert postgres_databases is not None
    url = postgres_databases.create(migrated=False)
    yield url
    postgres_databases.drop(url)


def copy(box: Settings, url: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(VIDBOX_DATA_DIR=str(box.data_dir), VIDBOX_DATABASE__URL="")
    return run_cli("db", "copy", "--to", url, env=env)


def summary(done: subprocess.CompletedProcess[str]) -> tuple[int, int, int, int]:
    """(rows, copied, updated, already there) from the command's report."""
    found = re.search(r"(\d+) rows: (\d+) copied, (\d+) updated, (\d+) already there", done.stdout)
    assert found, done.stdout + done.stderr
    rows, copied, updated, there = (int(n) for n in found.groups())
    return rows, copied, updated, there


def row_counts(box: Settings, url: str | None = None) -> dict[str, int]:
    counts = {}
    for table in tables():
        query = f"SELECT count(*) FROM {table.name}"  # noqa: S608 (names from the models)
        rows = postgres_sql(url, query, ()) if url else run_sql(box, query)
        counts[table.name] = rows[0][0]
    return counts


def one_line_error(done: subprocess.CompletedProcess[str], starts: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"Error: {starts}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "pw-not-shown" not in done.stdout + done.stderr


def test_refusals_are_one_line(sqlite_box: Settings, tmp_path: Path) -> None:
    add_user(sqlite_box, "ann@example.org")
    one_line_error(copy(sqlite_box, "mysql://root:pw-not-shown@db/vidbox"), "--to must be a ")
    one_line_error(copy(sqlite_box, NOWHERE), "cannot copy the database: ")
    on_postgres = clean_env(
        VIDBOX_DATA_DIR=str(tmp_path / "pg"),
        VIDBOX_DATABASE__URL=NOWHERE,
        VIDBOX_SERVER__SECRET_KEY=TEST_SECRET_KEY,
    )
    done = run_cli("db", "copy", "--to", NOWHERE, env=on_postgres)
    one_line_error(done, "this box already uses PostgreSQL")


def test_a_source_behind_the_schema_is_sent_to_db_migrate(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    migrate_sync(box / "vidbox.db", "0006")
    env = clean_env(VIDBOX_DATA_DIR=str(box), VIDBOX_DATABASE__URL="")
    done = run_cli("db", "copy", "--to", NOWHERE, env=env)
    one_line_error(done, f"{box / 'vidbox.db'} is at schema 0006, this vidbox copies schema ")
    assert head_revision() in done.stderr
    assert "vidbox db migrate" in done.stderr


def test_a_running_server_of_the_box_is_refused(sqlite_box: Settings) -> None:
    live = start_server(sqlite_box)
    try:
        # The job runner takes its lock while the app starts.
        wait_until(lambda: list((sqlite_box.data_dir / "run").glob("*.lock")))
        one_line_error(copy(sqlite_box, NOWHERE), "vidbox is running on ")
    finally:
        live.stop()


@only_postgres
def test_the_copied_box_signs_in_plays_and_shares(
    sqlite_box: Settings, target: str, make_settings: Callable[..., Settings], clip: Path
) -> None:
    add_user(sqlite_box, "ann@example.org")
    old = start_server(sqlite_box)
    try:
        with old.client() as client:
            ann = bearer(api_login(client, "ann@example.org")["access"])
            files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
            created = client.post("/api/videos", headers=ann, files=files)
            assert created.status_code == 201, created.text
            video_id = created.json()["id"]
            wait_for_status(client, video_id, {"READY"}, headers=ann)
            link = client.post(
                f"/api/videos/{video_id}/links",
                json={"visibility": "public", "expires_in": "1d"},
                headers=ann,
            )
            assert link.status_code == 201, link.text
            share = urlsplit(link.json()["url"]).path
        with old.client() as browser:
            browser_login(browser, "ann@example.org")
            signed_in = dict(browser.cookies)
    finally:
        old.stop()
    source = row_counts(sqlite_box)
    assert source["jobs"] >= 1 and source["renditions"] >= 1

    done = copy(sqlite_box, target)
    assert done.returncode == 0, done.stdout + done.stderr
    total = sum(source.values())
    assert summary(done) == (total, total, 0, 0)
    assert row_counts(sqlite_box, target) == source
    finished = "SELECT count(*) FROM jobs WHERE state = 'succeeded'"
    assert postgres_sql(target, finished, ()) == run_sql(sqlite_box, finished) != [(0,)]
    # What to do next, followed to the letter: the key this box signed its links with.
    key_file = re.search(r"VIDBOX_SERVER__SECRET_KEY_FILE=(\S+) ", done.stdout)
    assert key_file and Path(key_file.group(1)) == sqlite_box.secret_key_path, done.stdout
    assert sqlite_box.secret_key_path.read_text().strip() not in done.stdout

    moved = make_settings(
        {"VIDBOX_DATABASE__URL": target, "VIDBOX_SERVER__SECRET_KEY_FILE": key_file.group(1)},
        data_dir=sqlite_box.data_dir,  # where the media still is
    )
    new = start_server(moved)
    try:
        with new.client(cookies=signed_in) as browser:  # still signed in
            assert browser.get("/settings").status_code == 200
        with new.client() as client:
            browser_login(client, "ann@example.org")
            ann = bearer(api_login(client, "ann@example.org")["access"])
            listed = client.get("/api/videos", headers=ann).json()["items"]
            assert [v["id"] for v in listed] == [video_id]
            assert client.get(share).status_code == 200
            paths = media_paths(client, share)
            assert client.get(paths["segment"]).status_code == 200
            # New rows get ids after the copied ones (the sequences were moved on).
            files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
            again = client.post("/api/videos", headers=ann, files=files)
            assert again.status_code == 201, again.text
            wait_for_status(client, again.json()["id"], {"READY"}, headers=ann)
    finally:
        new.stop()
    assert postgres_sql(target, finished, ()) > run_sql(sqlite_box, finished)


@only_postgres
def test_a_second_copy_finds_everything_there_and_brings_changes(
    sqlite_box: Settings, target: str
) -> None:
    ann = add_user(sqlite_box, "ann@example.org")
    add_user(sqlite_box, "bob@example.org")
    first = copy(sqlite_box, target)
    rows, copied, _, _ = summary(first)
    assert copied == rows >= 2
    second = copy(sqlite_box, target)
    assert summary(second) == (rows, 0, 0, rows)
    run_sql(sqlite_box, "UPDATE users SET name = 'Ann Again' WHERE id = ?", ann)
    third = copy(sqlite_box, target)
    assert summary(third) == (rows, 0, 1, rows - 1)
    assert postgres_sql(target, "SELECT name FROM users WHERE id = $1", (ann,)) == [("Ann Again",)]


@only_postgres
def test_a_database_of_another_box_is_refused(
    sqlite_box: Settings, target: str, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    add_user(sqlite_box, "ann@example.org")
    other = make_settings(
        {"VIDBOX_DATABASE__URL": target, "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY},
        data_dir=tmp_path / "other",
    )
    add_user(other, "zed@example.org")
    done = copy(sqlite_box, target)
    one_line_error(done, "postgresql://vidbox@")
    assert "already holds another box (1 account(s)" in done.stderr
    assert postgres_sql(target, "SELECT email FROM users", ()) == [("zed@example.org",)]


ROWS = 100_000  # rate-limit counters: enough that the copy is still running when it is killed


def _fill_rate_limits(box: Settings) -> None:
    when = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    with contextlib.closing(sqlite3.connect(box.database_path)) as db, db:
        db.executemany(
            "INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, ?)",
            ((f"login:{n:07d}", when, n % 7) for n in range(ROWS)),
        )


def _target_rows(url: str) -> int:
    try:
        return int(postgres_sql(url, "SELECT count(*) FROM rate_limits", ())[0][0])
    except Exception:  # the copy has not created the schema yet
        return 0


def _interrupt(box: Settings, url: str, sig: signal.Signals, after: int) -> tuple[int, str]:
    """Start a copy, send it ``sig`` once the target holds more than ``after`` counters;
    (exit code, stderr)."""
    env = clean_env(VIDBOX_DATA_DIR=str(box.data_dir), VIDBOX_DATABASE__URL="")
    run = subprocess.Popen(
        [*VIDBOX, "db", "copy", "--to", url],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _target_rows(url) > after, timeout=60, what="the copy to go on")
        run.send_signal(sig)
        _, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
        run.wait(timeout=30)
    return run.returncode, stderr


@only_postgres
def test_a_copy_interrupted_or_killed_midway_is_finished_by_running_it_again(
    sqlite_box: Settings, target: str
) -> None:
    add_user(sqlite_box, "ann@example.org")
    _fill_rate_limits(sqlite_box)
    source = row_counts(sqlite_box)
    code, stderr = _interrupt(sqlite_box, target, signal.SIGINT, 0)
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        "Error: interrupted; run the same command again to copy the rest"
    )
    stopped = _target_rows(target)
    code, _ = _interrupt(sqlite_box, target, signal.SIGKILL, stopped)
    assert code == -signal.SIGKILL
    partial = row_counts(sqlite_box, target)
    assert stopped < partial["rate_limits"] < ROWS, partial

    again = copy(sqlite_box, target)
    assert again.returncode == 0, again.stdout + again.stderr
    total, there = sum(source.values()), sum(partial.values())
    assert summary(again) == (total, total - there, 0, there)
    assert row_counts(sqlite_box, target) == source
    copied = postgres_sql(target, "SELECT key, count FROM rate_limits", ())
    assert sorted(copied) == sorted(run_sql(sqlite_box, "SELECT key, count FROM rate_limits"))
