"""Server-Sent Events: status and progress reach open pages as processing goes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import LiveServer, add_user, api_login, bearer, start_server
from vidbox.config import Settings

Events = list[tuple[str, dict[str, Any]]]


def read_events(
    response: httpx.Response, *, until: str | Callable[[Events], bool], deadline: float = 60
) -> Events:
    """Events from a stream until the named event arrives (or ``until(events)`` holds)."""
    return read_events_from(response.iter_lines(), until=until, deadline=deadline)


def read_events_from(
    lines: Iterator[str], *, until: str | Callable[[Events], bool], deadline: float = 60
) -> Events:
    """``read_events`` from a stream's line iterator, which can be read on afterwards."""
    events: Events = []
    name = ""
    stop_at = time.monotonic() + deadline
    for line in lines:
        assert time.monotonic() < stop_at, f"no {until!r} event in {deadline}s: {events}"
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            if until(events) if callable(until) else name == until:
                return events
    raise AssertionError(f"stream ended before {until!r}: {events}")


def test_video_events_follow_processing_to_the_end(live: LiveServer, clip: Path) -> None:
    add_user(live.settings, "ann@example.org")
    with live.client() as client:
        auth = bearer(api_login(client, "ann@example.org")["access"])
        created = client.post(
            "/api/videos", headers=auth, files={"file": ("c.mp4", clip.read_bytes())}
        )
        video_id = created.json()["id"]
        with client.stream("GET", f"/api/videos/{video_id}/events", headers=auth) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response, until="end")
    videos = [data for name, data in events if name == "video"]
    assert videos[-1]["status"] == "READY"
    assert videos[-1]["progress"] == 100
    progress = [v["progress"] for v in videos]
    assert progress == sorted(progress)
    assert all(v["id"] == video_id for v in videos)


def test_user_stream_shows_only_the_users_own_videos(live: LiveServer, clip: Path) -> None:
    add_user(live.settings, "bob@example.org")
    add_user(live.settings, "eve@example.org")
    with live.client() as client, live.client() as watcher, live.client() as spy:
        auth = bearer(api_login(client, "bob@example.org")["access"])
        other = bearer(api_login(client, "eve@example.org")["access"])
        with (
            watcher.stream("GET", "/api/events", headers=auth) as stream,
            spy.stream("GET", "/api/events", headers=other) as spying,
        ):
            video_id = client.post(
                "/api/videos", headers=auth, files={"file": ("c.mp4", clip.read_bytes())}
            ).json()["id"]
            ready = read_events(
                stream,
                until=lambda evs: any(
                    n == "video" and d["status"] == "READY" and d["progress"] == 100 for n, d in evs
                ),
            )
            assert {d["id"] for n, d in ready if n == "video"} == {video_id}
            # Another user's stream carries nothing of Bob's: only its notification count.
            first = read_events(spying, until="notifications")
            assert all(n == "notifications" for n, _ in first)
    with live.client() as client:
        assert client.get("/api/videos/" + video_id + "/events", headers=other).status_code == 404
        assert client.get("/api/events").status_code == 401


def test_open_streams_end_when_the_server_shuts_down(settings: Settings) -> None:
    """An open page must not hold a shutdown until uvicorn's wait runs out (here 40 s, then
    the stream is cut mid-chunk, which raises): the stream ends cleanly at once, and the
    app's own shutdown runs."""
    live = start_server(settings, timeout_graceful_shutdown=40)
    try:
        add_user(settings, "cy@example.org")
        with live.client() as client:
            auth = bearer(api_login(client, "cy@example.org")["access"])
            with client.stream("GET", "/api/events", headers=auth) as response:
                lines = response.iter_lines()
                assert "event: notifications" in lines  # the stream is live
                live.server.should_exit = True
                for _ in lines:  # to the end; a body cut off mid-chunk raises here
                    pass
        live.thread.join(timeout=30)
        assert not live.thread.is_alive()
        assert live.app.state.runner is None  # the lifespan's shutdown ran
    finally:
        live.stop()


def test_a_cancelled_upload_leaves_open_pages(live: LiveServer) -> None:
    """tus termination removes the UPLOADING video; open dashboards hear of it."""
    add_user(live.settings, "dee@example.org")
    with live.client() as client, live.client() as watcher:
        auth = bearer(api_login(client, "dee@example.org")["access"])
        tus = {**auth, "Tus-Resumable": "1.0.0"}
        with watcher.stream("GET", "/api/events", headers=auth) as stream:
            lines = stream.iter_lines()
            created = client.post("/api/uploads", headers={**tus, "Upload-Length": "1000"})
            assert created.status_code == 201
            video_id = created.headers["Vidbox-Video-Id"]
            seen = read_events_from(lines, until=lambda e: e[-1][0] == "video")
            assert seen[-1][1]["id"] == video_id
            assert client.delete(created.headers["Location"], headers=tus).status_code == 204
            gone = read_events_from(lines, until=lambda e: e[-1][0] == "deleted")
            assert gone[-1][1] == {"id": video_id}
