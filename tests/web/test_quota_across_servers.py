"""A user's storage quota holds when their uploads reach several servers of one box at once
(here two in one test process, each with its app and database engine, as two processes have):
the check and the new video's row are one write transaction, which SQLite's BEGIN IMMEDIATE
and PostgreSQL's write lock (vidbox.db) serialise across connections."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.postgres import same_box_env
from tests.support import add_user, api_login, bearer, start_server
from tests.web.test_uploads import create
from vidbox.config import Settings

MB = 1_000_000


def test_parallel_uploads_to_two_servers_stay_within_the_quota(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    quota = {"VIDBOX_UPLOADS__QUOTA_BYTES": str(5 * MB)}
    one = make_settings(quota, data_dir=tmp_path / "one")
    two = make_settings({**same_box_env(one), **quota}, data_dir=tmp_path / "two")
    add_user(one, "ann@example.org")
    servers = [start_server(s) for s in (one, two)]
    try:
        with servers[0].client() as client:
            auth = bearer(api_login(client, "ann@example.org")["access"])

        def start_upload(n: int) -> int:
            with servers[n % 2].client() as client:
                return create(client, auth, MB, filename=f"{n}.mp4").status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(start_upload, range(24)))
        with servers[1].client() as client:
            listed = client.get("/api/videos", headers=auth).json()["meta"]["total"]
    finally:
        for server in servers:
            server.stop()
    assert sorted(answers) == [201] * 5 + [413] * 19
    assert listed == 5
