"""Every route, fed what no client should send: control characters in each path parameter
and broken or deeply nested bodies. Whatever the route does with them, the answer is a 4xx
with a sentence, never a 5xx (a 5xx is a bug, and its traceback fills the admin's log)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from tests.postgres import settings_for
from tests.support import (
    LiveServer,
    add_user,
    api_login,
    bearer,
    browser_login,
    free_port,
    start_server,
    wait_for_status,
)
from vidbox.web import routes

# Appended to a real value of each path parameter (percent-encoded as sent): line breaks,
# NUL, ESC, DEL, a C1 control, a Unicode line separator, a byte that is not UTF-8.
SUFFIXES = ["%0a", "%0d%0a", "%00", "%09", "%1b[2K", "%7f", "%c2%85", "%e2%80%a8", "%ff", "%20"]
DEEP = 1000
BODIES: list[tuple[str, bytes]] = [
    ("application/json", b"[" * DEEP + b"]" * DEEP),
    ("application/json", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("application/json", b'{"title": "\x00\x1b\r\n", "email": "\xff\xfe"}'),
    ("application/json", b'{"title": '),
    ("application/json", b"\xff\xfe\x00"),
    ("application/json", b"1e999999"),
    ("application/json", b'{"expires_in": {"a": [[[]]]}, "emails": "x", "visibility": 7}'),
    ("application/x-www-form-urlencoded", b"title=%00%0d%0a%1b&email=%ff&_csrf=%0a"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name="),
    ("text/plain", b"\x00" * 100),
]


@dataclass
class Box:
    live: LiveServer
    values: dict[str, str]  # a real value for each path parameter name
    api: dict[str, str]  # bearer headers
    csrf: str  # the browser session's CSRF token


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Iterator[Box]:
    # Mail on (to a port where nothing listens), so the routes that send mail go all the way.
    environ = {
        "VIDBOX_EMAIL__HOST": "127.0.0.1",
        "VIDBOX_EMAIL__PORT": str(free_port()),
        "VIDBOX_EMAIL__SECURITY": "none",
        "VIDBOX_EMAIL__FROM_ADDRESS": "box@example.org",
    }
    settings = settings_for(data_dir=tmp_path_factory.mktemp("fuzz") / "data", environ=environ)
    admin_id = add_user(settings, "ann@example.org", name="Ann", admin=True)
    live = start_server(settings)
    try:
        with live.client() as client:
            api = bearer(api_login(client, "ann@example.org")["access"])
            created = client.post(
                "/api/videos",
                headers=api,
                files={"file": ("holiday.mp4", clip.read_bytes(), "video/mp4")},
            )
            assert created.status_code == 201, created.text
            video = wait_for_status(client, created.json()["id"], {"READY"}, headers=api)
            link = client.post(
                f"/api/videos/{video['id']}/links",
                headers=api,
                json={"visibility": "public", "expires_in": "1d", "allow_download": True},
            ).json()
            token = client.post("/api/tokens", headers=api, json={"name": "fuzz"}).json()
            upload = client.post(
                "/api/uploads",
                headers={**api, "Tus-Resumable": "1.0.0", "Upload-Length": "100"},
            )
            assert upload.status_code == 201, upload.text
        renditions = video["renditions"]
        assert isinstance(renditions, list) and renditions
        values = {
            "video_id": str(video["id"]),
            "link_id": str(link["id"]),
            "token": link["url"].rstrip("/").rsplit("/", 1)[1],
            "token_id": str(token.get("id", "x")),
            "upload_id": upload.headers["location"].rsplit("/", 1)[1],
            "user_id": admin_id,
            "rendition": renditions[0]["name"],
            "filename": "index.m3u8",
            "signed": "abc",
            "action": "disable",
            "path": "app.js",
        }
        yield Box(live, values, api, csrf="")
    finally:
        live.stop()


def _plain_routes() -> list[tuple[str, list[str]]]:
    """(path template, methods) of every route, the static mount as one more."""
    found: list[tuple[str, list[str]]] = []

    def walk(items: list[BaseRoute]) -> None:
        for item in items:
            if isinstance(item, Route):
                found.append((item.path, sorted(item.methods or [])))
            elif isinstance(item, Mount):
                found.append((item.path + "/{path}", ["GET", "HEAD"]))

    walk(routes())
    # Routes that end the session go last, so the others are fuzzed signed in.
    return sorted(found, key=lambda r: any(w in r[0] for w in ("logout", "signout")))


_PARAM = re.compile(r"\{([a-z_]+)(:[a-z]+)?\}")


def _fill(template: str, values: dict[str, str], mutate: str | None, suffix: str) -> str:
    def value(match: re.Match[str]) -> str:
        name, convertor = match.group(1), match.group(2)
        if convertor == ":int":
            return "1"
        real = quote(values.get(name, "x"), safe="")
        # An action is never sent as itself: the fuzzer must not disable its own account.
        if name == "action":
            real = "nothing"
        return real + suffix if name == mutate else real

    return _PARAM.sub(value, template)


def _send(
    client: httpx.Client, box: Box, method: str, path: str, body: tuple[str, bytes] | None
) -> httpx.Response:
    headers = {"X-CSRF-Token": box.csrf, "Tus-Resumable": "1.0.0"}
    if path.startswith("/api/"):
        headers |= box.api
    content = None
    if body is not None:
        headers["Content-Type"], content = body
    return client.request(method, path, headers=headers, content=content)


def _check(answer: httpx.Response, method: str, path: str) -> str | None:
    if answer.status_code >= 500:
        return f"{method} {path} -> {answer.status_code} {answer.text[:200]!r}"
    api_error = answer.status_code >= 400 and method != "HEAD" and path.startswith("/api/")
    if api_error and (not answer.content or "detail" not in answer.json()):
        return f"{method} {path} -> {answer.status_code} without a detail"
    return None


def test_control_characters_in_path_parameters(box: Box) -> None:
    failures = []
    with box.live.client() as client:
        client.cookies.update(_session_cookies(box))
        for template, methods in _plain_routes():
            for name in {m.group(1) for m in _PARAM.finditer(template)}:
                for suffix in SUFFIXES:
                    path = _fill(template, box.values, name, suffix)
                    for method in methods:
                        answer = _send(client, box, method, path, None)
                        if problem := _check(answer, method, path):
                            failures.append(problem)
    assert not failures, "\n".join(failures)


def test_broken_and_deeply_nested_bodies(box: Box) -> None:
    failures = []
    with box.live.client() as client:
        client.cookies.update(_session_cookies(box))
        for template, methods in _plain_routes():
            for method in methods:
                if method not in ("POST", "PATCH", "PUT"):
                    continue
                path = _fill(template, box.values, None, "")
                for body in BODIES:
                    answer = _send(client, box, method, path, body)
                    if problem := _check(answer, method, path):
                        failures.append(f"{problem} (body {body[1][:30]!r})")
    assert not failures, "\n".join(failures)


def _session_cookies(box: Box) -> dict[str, str]:
    """A browser session of its own for each test (the one that signs out spends it)."""
    with box.live.client() as browser:
        box.csrf = browser_login(browser, "ann@example.org")
        return dict(browser.cookies)
