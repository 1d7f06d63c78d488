"""A tus upload is written by one request at a time across every process sharing the spool.
On PostgreSQL (processes on several hosts) the writer holds a lease on the upload's row:
another host's writer is waited for until its lease runs out, a dead process of this host is
known at once from its life lock. On SQLite (one host) the writer holds a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx

from tests.postgres import db_time, only_postgres, run_sql
from tests.support import LiveServer, add_user, api_login, bearer, wait_until
from tests.web.test_uploads import PATCH, TUS, create
from vidbox.models import utcnow
from vidbox.uploads.liveness import ProcessMark


def _hold(live: LiveServer, upload_id: str, writer: str, *, seconds: float) -> None:
    run_sql(
        live.settings,
        "UPDATE uploads SET writer = ?, writer_until = ? WHERE id = ?",
        writer,
        db_time(utcnow() + timedelta(seconds=seconds)),
        upload_id,
    )


@contextlib.contextmanager
def _started(
    live: LiveServer, clip: Path
) -> Iterator[tuple[httpx.Client, dict[str, str], bytes, str, str]]:
    """A signed-in client with an upload of ``clip`` created and nothing sent: the client,
    its auth headers, the clip's bytes, the upload's URL and id."""
    add_user(live.settings, "ann@example.org")
    data = clip.read_bytes()
    with live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        url = create(client, auth, len(data), filename="a.mp4").headers["location"]
        yield client, auth, data, url, url.rsplit("/", 1)[1]


def _writer(live: LiveServer, upload_id: str) -> object:
    return run_sql(live.settings, "SELECT writer FROM uploads WHERE id = ?", upload_id)[0][0]


@only_postgres
def test_another_hosts_writer_holds_the_upload_until_its_lease_runs_out(
    live: LiveServer, clip: Path
) -> None:
    with _started(live, clip) as (client, auth, data, url, upload_id):
        part = {**PATCH, **auth, "Upload-Offset": "0"}

        _hold(live, upload_id, f"elsewhere:7:{uuid.uuid4().hex[:16]}/1", seconds=60)
        locked = client.patch(url, content=data[:1000], headers=part)
        assert locked.status_code == 423
        assert locked.headers["tus-resumable"] == "1.0.0"
        assert client.delete(url, headers={**TUS, **auth}).status_code == 423
        assert client.head(url, headers={**TUS, **auth}).headers["upload-offset"] == "0"

        _hold(live, upload_id, f"elsewhere:7:{uuid.uuid4().hex[:16]}/1", seconds=-1)
        assert client.patch(url, content=data[:1000], headers=part).status_code == 204
        assert _writer(live, upload_id) is None  # given back when the request ended


@only_postgres
def test_a_dead_process_of_this_host_does_not_hold_the_upload(live: LiveServer, clip: Path) -> None:
    with _started(live, clip) as (client, auth, data, url, upload_id):
        part = {**PATCH, **auth, "Upload-Offset": "0"}

        # A live process of this host sharing the spool: waited for.
        other = ProcessMark(live.settings.spool_dir)
        other.hold()
        _hold(live, upload_id, f"{other.name}/1", seconds=60)
        assert client.patch(url, content=data[:1000], headers=part).status_code == 423
        # Killed (its life lock dropped): its lease is taken over at once.
        other.release()
        assert client.patch(url, content=data[:1000], headers=part).status_code == 204

        dead = f"{socket.gethostname()[:60]}:7:{uuid.uuid4().hex[:16]}/1"
        _hold(live, upload_id, dead, seconds=60)
        more = {**PATCH, **auth, "Upload-Offset": "1000"}
        assert client.patch(url, content=data[1000:], headers=more).status_code == 204


def test_a_writer_holds_the_upload_until_it_is_done(live: LiveServer, clip: Path) -> None:
    with _started(live, clip) as (client, auth, data, url, upload_id):
        part = {**PATCH, **auth, "Upload-Offset": "0"}
        writer = live.app.state.services.spool.writer_lock_path(upload_id)
        if live.settings.database.url:
            _hold(live, upload_id, f"elsewhere:7:{uuid.uuid4().hex[:16]}/1", seconds=60)
            fd = None
        else:  # another process of this host in the middle of a PATCH
            writer.parent.mkdir(exist_ok=True)
            fd = os.open(writer, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
        assert client.patch(url, content=data[:1000], headers=part).status_code == 423
        assert client.delete(url, headers={**TUS, **auth}).status_code == 423
        if fd is not None:
            os.close(fd)
        else:
            _hold(live, upload_id, f"elsewhere:7:{uuid.uuid4().hex[:16]}/1", seconds=-1)
        assert client.patch(url, content=data[:1000], headers=part).status_code == 204
        assert client.delete(url, headers={**TUS, **auth}).status_code == 204
        assert not writer.exists()


@only_postgres
def test_a_writer_that_loses_its_lease_mid_body_stops_with_423(
    live: LiveServer, clip: Path
) -> None:
    # A request stalled past its lease (another host took the upload over meanwhile) must not
    # go on writing: its renewal finds the lease gone, and the request ends with 423.
    with _started(live, clip) as (_client, auth, data, url, upload_id):
        head = (
            f"PATCH {url} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
            "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        port = int(live.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + data[:1000])  # and then nothing: the body stalls
            wait_until(lambda: _writer(live, upload_id) is not None, what="the lease")
            thief = f"elsewhere:7:{uuid.uuid4().hex[:16]}/1"
            _hold(live, upload_id, thief, seconds=60)
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 423 "), answer
        assert _writer(live, upload_id) == thief  # the new holder keeps it
