"""The setup link belongs to the box, not to a process: every `vidbox serve` of one database
prints the same one, any of them accepts it, a restart keeps it, `vidbox user setup-link`
replaces it, and once the first admin exists none is printed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import SERVER, TEST_SECRET_KEY, database_env
from tests.support import PASSWORD, Serve, clean_env, csrf_from, run_cli

_LINK = re.compile(r"/setup\?token=([\w-]{40,})")


class Box:
    """Two processes' environments on one database: on SQLite one data dir (the file and its
    generated key are the box), on PostgreSQL two data dirs (two hosts) with the configured
    key."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        first = tmp_path / "a"
        self.envs = [clean_env(VIDBOX_DATA_DIR=str(first))]
        if SERVER:
            shared = {**database_env(first), "VIDBOX_SERVER__SECRET_KEY": TEST_SECRET_KEY}
            self.envs.append(clean_env(VIDBOX_DATA_DIR=str(tmp_path / "b"), **shared))
        else:
            self.envs.append(clean_env(VIDBOX_DATA_DIR=str(first)))
        self.started: list[Serve] = []
        self.runs = 0

    def serve(self, which: int) -> Serve:
        self.runs += 1
        log = str(self.tmp_path / f"serve{which}-{self.runs}.log")
        server = Serve(env={**self.envs[which], "TEST_LOG": log})
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.stop()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    made = Box(tmp_path)
    yield made
    made.stop_all()


def printed_token(text: str) -> str:
    tokens = _LINK.findall(text)
    assert len(tokens) == 1, text
    return str(tokens[0])


def test_every_process_prints_and_accepts_the_one_link_until_it_is_used(box: Box) -> None:
    # Started together, as a deployment starts its processes.
    one, two = box.serve(0), box.serve(1)
    one.wait_ready()
    two.wait_ready()
    token = printed_token(one.log())
    assert printed_token(two.log()) == token
    assert httpx.get(f"{two.url}/setup?token={token}").status_code == 200

    one.stop()
    again = box.serve(0)
    again.wait_ready()
    assert printed_token(again.log()) == token  # a restart keeps it

    # The link printed by the first process finishes setup on the second.
    with httpx.Client(base_url=two.url) as browser:
        form = browser.get(f"/setup?token={token}")
        done = browser.post(
            f"/setup?token={token}",
            data={"email": "ann@example.org", "password": PASSWORD, "_csrf": csrf_from(form.text)},
        )
        assert done.status_code == 303, done.text
        assert browser.get("/api/me").json()["is_admin"] is True
    assert httpx.get(f"{again.url}/setup?token={token}").status_code == 404

    again.stop()
    after = box.serve(0)
    after.wait_ready()
    assert not _LINK.search(after.log())  # the box has its admin: no link any more
    refused = run_cli("user", "setup-link", env=box.envs[0])
    assert refused.returncode == 1
    assert "already has an account" in refused.stderr
    assert not _LINK.search(refused.stdout + refused.stderr)


def test_setup_link_command_replaces_the_printed_link(box: Box) -> None:
    one = box.serve(0)
    one.wait_ready()
    old = printed_token(one.log())

    made = run_cli("user", "setup-link", env=box.envs[1])
    assert made.returncode == 0, made.stderr
    new = printed_token(made.stdout)
    assert new != old
    two = box.serve(1)
    two.wait_ready()
    for server in (one, two):
        assert httpx.get(f"{server.url}/setup?token={old}").status_code == 404
        assert httpx.get(f"{server.url}/setup?token={new}").status_code == 200
    # What the processes print from now on is the new link.
    assert printed_token(two.log()) == new
    one.stop()
    restarted = box.serve(0)
    restarted.wait_ready()
    assert printed_token(restarted.log()) == new
