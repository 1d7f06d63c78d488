"""`vidbox db migrate`: the schema brought up to date from the shell, once even when several
processes run it at once."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.postgres import TEST_SECRET_KEY, Databases, only_postgres
from tests.support import PASSWORD, VIDBOX, Serve, browser_login, clean_env, run_cli
from vidbox.config import ConfigError, load_settings
from vidbox.db import (
    configured_url,
    describe_url,
    head_revision,
    postgres_schema_status,
    schema_status,
)


def test_db_migrate_creates_and_then_keeps_the_schema(
    tmp_path: Path, postgres_databases: Databases | None
) -> None:
    empty = {}
    if postgres_databases is not None:
        empty = {
            "VIDBOX_DATABASE__URL": postgres_databases.create(migrated=False),
            "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY,
        }
    env = clean_env(VIDBOX_DATA_DIR=str(tmp_path / "box"), **empty)
    first = run_cli("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"schema upgraded from empty to {head_revision()}" in first.stdout
    again = run_cli("db", "migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert f"schema {head_revision()}, already up to date" in again.stdout
    if postgres_databases is None:
        assert schema_status(tmp_path / "box" / "vidbox.db") == (head_revision(),) * 2
    else:
        postgres_databases.drop(empty["VIDBOX_DATABASE__URL"])


def test_db_migrate_on_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    env = clean_env(
        VIDBOX_DATA_DIR=str(tmp_path / "box"),
        # Port 9 (discard): nothing listens there on loopback.
        VIDBOX_DATABASE__URL="postgresql+asyncpg://vidbox:hunter2-secret@127.0.0.1:9/vidbox",
        VIDBOX_SERVER__SECRET_KEY=TEST_SECRET_KEY,
    )
    done = run_cli("db", "migrate", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot migrate the database: ")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "hunter2-secret" not in done.stdout + done.stderr


def _fresh_box(tmp_path: Path, databases: Databases | None) -> tuple[dict[str, str], str]:
    """The environment of a box with nothing in it yet: a new data dir and, on PostgreSQL, an
    empty database (also returned, to drop; "" on SQLite)."""
    url = databases.create(migrated=False) if databases is not None else ""
    box = {"VIDBOX_DATA_DIR": str(tmp_path / "box")}
    if url:
        box |= {"VIDBOX_DATABASE__URL": url, "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY}
    return clean_env(**box), url


def test_processes_migrating_at_once_queue_on_a_lock(
    tmp_path: Path, postgres_databases: Databases | None
) -> None:
    env, url = _fresh_box(tmp_path, postgres_databases)
    try:
        runs = [
            subprocess.Popen(
                [*VIDBOX, "db", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [run.communicate(timeout=120) for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, outputs
        upgraded = [out for out, _ in outputs if "schema upgraded from empty" in out]
        assert len(upgraded) == 1, outputs
        if url:
            assert asyncio.run(postgres_schema_status(url)) == (head_revision(),) * 2
        else:
            assert schema_status(tmp_path / "box" / "vidbox.db") == (head_revision(),) * 2
    finally:
        if url and postgres_databases is not None:
            postgres_databases.drop(url)


def test_servers_started_together_on_a_fresh_box_all_come_up_as_one_box(
    tmp_path: Path, postgres_databases: Databases | None
) -> None:
    """Several `vidbox serve` on one empty data dir at once: one migrates, the others wait
    for it; all share the one generated key, so a sign-in made on one works on the others."""
    env, url = _fresh_box(tmp_path, postgres_databases)
    servers = [
        Serve("--role", "web", env={**env, "TEST_LOG": str(tmp_path / f"serve{i}.log")})
        for i in range(3)
    ]
    try:
        for server in servers:
            server.wait_ready()
        assert run_cli("user", "create", "ann@example.org", "--password-stdin", env=env,
                       stdin=PASSWORD + "\n").returncode == 0  # fmt: skip
        with httpx.Client(base_url=servers[0].url) as first:
            browser_login(first, "ann@example.org")  # a cookie signed with the box's key
            cookies = dict(first.cookies)
        for server in servers[1:]:
            page = httpx.get(server.url + "/settings", cookies=cookies)
            assert page.status_code == 200, server.log()
    finally:
        for server in servers:
            server.stop()
        if url and postgres_databases is not None:
            postgres_databases.drop(url)


def test_the_password_comes_from_its_own_setting_or_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret/with@odd:chars\n")
    settings = load_settings(
        data_dir=tmp_path,
        environ={
            "VIDBOX_DATABASE__URL": "postgresql+asyncpg://vidbox@db.example.org:5433/vidbox",
            "VIDBOX_DATABASE__PASSWORD_FILE": str(secret),
            "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY,
        },
    )
    url = sa.make_url(configured_url(settings))
    assert (url.username, url.password, url.host, url.port) == (
        "vidbox",
        "s3cret/with@odd:chars",
        "db.example.org",
        5433,
    )
    assert "s3cret" not in describe_url(configured_url(settings))
    wrong = {"VIDBOX_DATABASE__URL": "mysql://root:pw-not-shown@db/vidbox"}
    with pytest.raises(ConfigError) as refused:
        load_settings(data_dir=tmp_path, environ=wrong)
    assert "database.url" in str(refused.value)
    assert "pw-not-shown" not in str(refused.value)


@only_postgres
def test_check_names_the_postgres_database_without_its_password(
    tmp_path: Path, postgres_databases: Databases
) -> None:
    # The test server trusts loopback, so any password gets in.
    url = sa.make_url(postgres_databases.create()).set(password="pw-not-shown")
    try:
        env = clean_env(
            VIDBOX_DATA_DIR=str(tmp_path / "box"),
            VIDBOX_DATABASE__URL=url.render_as_string(hide_password=False),
            VIDBOX_SERVER__SECRET_KEY=TEST_SECRET_KEY,
        )
        done = run_cli("check", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"/{url.database} (schema {head_revision()}, up to date)" in done.stdout
        assert "pw-not-shown" not in done.stdout + done.stderr
    finally:
        postgres_databases.drop(url.render_as_string(hide_password=False))
