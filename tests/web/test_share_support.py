"""Helpers for the share-link tests (no tests here): a real SMTP server that keeps what it
receives, settings pointing at it, the live server with the sharing routes and mail handler,
direct SQL for moving time (expiry, job backoff), and walking a link's media paths."""

from __future__ import annotations

import base64
import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from tests.postgres import run_sql, settings_for
from tests.support import LiveServer, free_port, start_server
from vidbox.config import Settings

BASE_URL = "http://vidbox.test"
SENDER = "box@vidbox.test"
HTML = {"Accept": "text/html"}


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts and refuses the addresses in
    ``refused`` for good (a 5xx reply)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self.refused: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._messages.append(message)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self._messages if address in str(m["To"])]


@dataclass
class Smtp:
    """aiosmtpd on a fixed loopback port that can be stopped and started again (an outage)."""

    inbox: Inbox = field(default_factory=Inbox)
    port: int = field(default_factory=free_port)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())  # type: ignore[attr-defined]


def link_in(message: EmailMessage) -> str:
    """The path of the one link to this box in a mail."""
    for word in text_of(message).split():
        if word.startswith(BASE_URL + "/"):
            return urlsplit(word).path
    raise AssertionError("no link in the mail")


def mail_settings(data_dir: Path, smtp_port: int | None, **extra: str) -> Settings:
    env = {"VIDBOX_SERVER__BASE_URL": BASE_URL, "VIDBOX_SERVER__NAME": "Family Videos"}
    if smtp_port is not None:
        env |= {
            "VIDBOX_EMAIL__HOST": "127.0.0.1",
            "VIDBOX_EMAIL__PORT": str(smtp_port),
            "VIDBOX_EMAIL__SECURITY": "none",
            "VIDBOX_EMAIL__FROM_ADDRESS": SENDER,
        }
    return settings_for(data_dir=data_dir, environ=env | extra)


def serve(settings: Settings) -> LiveServer:
    return start_server(settings)


sql = run_sql


def mail_jobs(settings: Settings) -> list[tuple[int, str, str, int, str | None]]:
    """(id, payload, state, attempts, last_error) of every send_mail job."""
    return sql(
        settings,
        "SELECT id, payload, state, attempts, last_error FROM jobs WHERE kind = 'send_mail'"
        " ORDER BY id",
    )


@dataclass
class Box:
    live: LiveServer
    smtp: Smtp
    video_id: str
    auth: dict[str, dict[str, str]]

    @property
    def settings(self) -> Settings:
        return self.live.settings

    def client(self, **kwargs: Any) -> httpx.Client:
        return self.live.client(**kwargs)

    def link(self, link_id: str, user: str = "ann") -> dict[str, Any]:
        with self.client() as client:
            items = client.get("/api/links", headers=self.auth[user]).json()["items"]
        found: dict[str, Any] = next(item for item in items if item["id"] == link_id)
        return found


def make_link(box: Box, user: str = "ann", **body: Any) -> dict[str, Any]:
    body = {"visibility": "public", "expires_in": "1d"} | body
    with box.client() as client:
        response = client.post(
            f"/api/videos/{box.video_id}/links", json=body, headers=box.auth[user]
        )
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


def path_of(link: dict[str, Any]) -> str:
    url = link["url"]
    assert url.startswith(BASE_URL + "/s/"), url
    return urlsplit(url).path


def _uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def media_paths(
    client: httpx.Client, path: str, headers: dict[str, str] | None = None
) -> dict[str, str]:
    """Every kind of path under a share link, found by following its master playlist."""
    master = client.get(f"{path}/hls/master.m3u8", headers=headers)
    assert master.status_code == 200, master.text
    assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    index = f"{path}/hls/{_uris(master.text)[0]}"
    playlist = client.get(index, headers=headers)
    assert playlist.status_code == 200
    segment = index.rpartition("/")[0] + "/" + _uris(playlist.text)[0]
    return {
        "page": path,
        "master": f"{path}/hls/master.m3u8",
        "index": index,
        "segment": segment,
        "thumbnail": f"{path}/thumbnail.jpg",
        "download": f"{path}/download",
    }


def tus_video(client: httpx.Client, auth: dict[str, str]) -> str:
    """A video that exists but has no bytes yet (UPLOADING): enough to hang links on."""
    name = base64.b64encode(b"later.mp4").decode()
    created = client.post(
        "/api/uploads",
        headers={
            **auth,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "1000",
            "Upload-Metadata": f"filename {name}",
        },
    )
    assert created.status_code == 201, created.text
    return created.headers["vidbox-video-id"]
