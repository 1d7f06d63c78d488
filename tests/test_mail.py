"""vidbox.mail against a real SMTP server (aiosmtpd on loopback), with real TLS and AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import html
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from vidbox.config import EmailSettings, load_settings
from vidbox.mail import (
    EMAIL_OFF,
    Mailer,
    MailError,
    OutgoingMail,
    build_message,
    render_access_link,
    render_invite,
    render_share_notification,
    render_test_mail,
)

SENDER = "box@videos.example.org"
READER = "bob@example.org"
USER = "ann"
PASSWORD = "correct-Horse-7731"


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def free_port() -> int:
    # aiosmtpd's Controller cannot bind port 0, so find a free port and hand it over.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool
    authenticated: bool


@dataclass
class RecordingHandler:
    """Accepts everything except the recipients in ``refuse`` (address -> SMTP reply)."""

    refuse: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                over_tls=session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 Message accepted"


def accept_one_user(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accepts USER/PASSWORD. A refusal echoes the password given, as a careless server might,
    so the tests can show it never reaches a MailError."""
    assert isinstance(auth_data, LoginPassword)
    if auth_data == (USER.encode(), PASSWORD.encode()):
        return AuthResult(success=True)
    echo = f"535 5.7.8 Password {auth_data.password.decode()} is wrong"
    # handled=False lets aiosmtpd send the reply itself.
    return AuthResult(success=False, handled=False, message=echo)


class TrackingController(Controller):
    """A Controller that knows which client connections are still open on the server side,
    so a test can let them finish closing before the server's event loop is stopped (which
    would otherwise leave half-closed sockets behind as ResourceWarnings)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_sessions: set[SMTP] = set()
        self.sessions_changed = threading.Condition()

    def factory(self) -> SMTP:
        controller = self

        class TrackedSMTP(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                with controller.sessions_changed:
                    controller.open_sessions.add(self)

            def connection_lost(self, error: Exception | None) -> None:
                super().connection_lost(error)
                with controller.sessions_changed:
                    controller.open_sessions.discard(self)
                    controller.sessions_changed.notify_all()

        return TrackedSMTP(self.handler, **self.SMTP_kwargs)

    def wait_until_idle(self, timeout: float = 5.0) -> bool:
        with self.sessions_changed:
            return self.sessions_changed.wait_for(lambda: not self.open_sessions, timeout)


@contextlib.contextmanager
def smtp_server(
    handler: RecordingHandler | None = None, **options: Any
) -> Iterator[TrackingController]:
    controller = TrackingController(
        handler or RecordingHandler(),
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="localhost",
        **options,
    )
    controller.start()
    try:
        yield controller
    finally:
        idle = controller.wait_until_idle()
        controller.stop()
    assert idle, "the client left a connection open"


def settings_for(port: int, **email: Any) -> EmailSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": SENDER,
    }
    return EmailSettings(**(values | email))


def share_mail(**overrides: Any) -> OutgoingMail:
    values: dict[str, Any] = {
        "to": READER,
        "box_name": "Family Videos",
        "sharer_name": "Ann",
        "video_title": "Holiday 2026",
        "url": "https://videos.example.org/s/abc123",
        "expires_at": None,
    }
    return render_share_notification(**(values | overrides))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1: (certfile, keyfile)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=localhost", "-days", "1",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def refusal(exc_info: pytest.ExceptionInfo[MailError]) -> MailError:
    return exc_info.value


# Rendering and building, no server needed.


def test_renderers_fill_both_parts_and_keep_links_intact() -> None:
    until = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
    url = "https://videos.example.org/a/tok?next=%2Fv%2F1&x=1"
    mails = {
        "share": share_mail(url=url, expires_at=until),
        "access": render_access_link(
            to=READER, box_name="Family", video_title="Holiday 2026", url=url, minutes_valid=15
        ),
        "invite": render_invite(
            to=READER, box_name="Family", inviter_name="Ann", url=url, expires_at=until
        ),
    }
    for kind, mail in mails.items():
        assert url in mail.text, kind
        # In HTML the & of the query string is escaped; unescaped it is the same link.
        assert f'href="{html.escape(url)}"' in mail.html, kind
        assert mail.html.lstrip().startswith("<!DOCTYPE html>"), kind
        assert "<img" not in mail.html and "<script" not in mail.html, kind
    assert mails["share"].subject == 'Ann shared "Holiday 2026" with you'
    assert "4 March 2026, 09:30 UTC" in mails["share"].text
    assert "15 minutes" in mails["access"].text and "15 minutes" in mails["access"].html
    assert mails["invite"].subject == "Ann invited you to Family"
    assert "4 March 2026, 09:30 UTC" in mails["invite"].html

    test_mail = render_test_mail(to=READER, box_name="Family")
    assert test_mail.subject == "Test mail from Family"
    assert "Family" in test_mail.text and "Family" in test_mail.html


def test_renderers_refuse_links_that_are_not_http() -> None:
    with pytest.raises(ValueError, match="not an http"):
        share_mail(url="javascript:alert(1)")


def test_build_message_sets_the_headers_of_automatic_mail() -> None:
    message = build_message(share_mail(), from_address=SENDER, box_name="Family Videos")
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert message["From"].addresses[0].display_name == "Family Videos"
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["Message-ID"].endswith("@videos.example.org>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime.tzinfo is not None


# Delivery.


def test_share_notification_arrives_with_both_parts(tmp_path: Path) -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        settings = load_settings(
            data_dir=tmp_path,
            environ={
                "VIDBOX_SERVER__NAME": "Family Videos",
                "VIDBOX_EMAIL__HOST": "127.0.0.1",
                "VIDBOX_EMAIL__PORT": str(server.port),
                "VIDBOX_EMAIL__SECURITY": "none",
                "VIDBOX_EMAIL__FROM_ADDRESS": SENDER,
            },
        )
        mailer = Mailer.from_settings(settings)
        assert mailer.enabled
        title = "<script>alert(1)</script> Zoë's holiday"
        run(mailer.send(share_mail(sharer_name="Zoë", video_title=title)))

    [got] = handler.received
    assert got.mail_from == SENDER and got.rcpt_tos == [READER]
    message = got.message
    assert message["From"].addresses[0].display_name == "Family Videos"
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["To"] == READER
    assert message["Subject"] == f'Zoë shared "{title}" with you'
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert text is not None and rich is not None
    text_content, html_content = text.get_content(), rich.get_content()
    assert "https://videos.example.org/s/abc123" in text_content
    assert 'href="https://videos.example.org/s/abc123"' in html_content
    assert title in text_content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_content
    assert "<script>" not in html_content


def test_cr_lf_in_names_and_subjects_cannot_add_headers() -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        mailer = Mailer(settings_for(server.port), box_name="Box\r\nX-Injected: box")
        mail = share_mail(
            sharer_name="Ann\r\nBcc: evil@example.com",
            video_title="Trip\nX-Injected: title",
        )
        raw = OutgoingMail(
            to=READER,
            subject="Hello\r\nBcc: evil@example.com\r\n\r\nforged body",
            text="t",
            html="<p>h</p>",
        )
        run(mailer.send(mail))
        run(mailer.send(raw))
        with pytest.raises(MailError) as bad_recipient:
            run(mailer.send(OutgoingMail(READER + "\r\nBcc: evil@example.com", "s", "t", "h")))

    assert not refusal(bad_recipient).transient
    assert "not a valid email address" in refusal(bad_recipient).message
    assert len(handler.received) == 2
    for got in handler.received:
        assert got.rcpt_tos == [READER]
        assert got.message["Bcc"] is None and got.message["X-Injected"] is None
        assert "\n" not in got.message["Subject"] and "\r" not in got.message["Subject"]
        assert got.message["From"].addresses[0].display_name == "Box X-Injected: box"
    assert handler.received[0].message["Subject"].startswith("Ann Bcc: evil@example.com shared")
    assert handler.received[1].message["Subject"] == ("Hello Bcc: evil@example.com forged body")


def test_recipient_refusals_are_sorted_by_reply_code() -> None:
    handler = RecordingHandler(
        refuse={
            "gone@example.org": "550 5.1.1 No such user here",
            "full@example.org": "452 4.2.2 Mailbox full, try later",
        }
    )
    with smtp_server(handler) as server:
        mailer = Mailer(settings_for(server.port))
        with pytest.raises(MailError) as gone:
            run(mailer.send(share_mail(to="gone@example.org")))
        with pytest.raises(MailError) as full:
            run(mailer.send(share_mail(to="full@example.org")))

    assert not refusal(gone).transient
    assert "gone@example.org" in refusal(gone).message and "550" in refusal(gone).message
    assert refusal(full).transient
    assert "452" in refusal(full).message
    assert handler.received == []


# TLS.


def test_starttls_not_offered_fails_closed() -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        mailer = Mailer(settings_for(server.port, security="starttls"))
        with pytest.raises(MailError) as no_tls:
            run(mailer.send(share_mail()))

    assert not refusal(no_tls).transient
    assert "does not offer STARTTLS" in refusal(no_tls).message
    assert f"127.0.0.1:{server.port}" in refusal(no_tls).message
    assert handler.received == []


def test_starttls_delivers_when_the_certificate_is_trusted(
    certificate: tuple[Path, Path],
) -> None:
    handler = RecordingHandler()
    # aiosmtpd offers AUTH only after STARTTLS here, like most real submission servers.
    tls = {"tls_context": server_tls(certificate), "authenticator": accept_one_user}
    with smtp_server(handler, **tls) as server:
        settings = settings_for(server.port, security="starttls", username=USER, password=PASSWORD)
        run(Mailer(settings, cafile=certificate[0]).send(share_mail()))
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        run(Mailer(settings, ssl_context=trusting).check())

    [got] = handler.received
    assert got.over_tls
    assert got.authenticated
    assert got.message["Subject"] == 'Ann shared "Holiday 2026" with you'


def test_starttls_refuses_an_untrusted_certificate(certificate: tuple[Path, Path]) -> None:
    handler = RecordingHandler()
    with smtp_server(handler, tls_context=server_tls(certificate)) as server:
        mailer = Mailer(settings_for(server.port, security="starttls"))
        with pytest.raises(MailError) as untrusted:
            run(mailer.send(share_mail()))

    assert not refusal(untrusted).transient
    assert "not trusted" in refusal(untrusted).message
    assert f"127.0.0.1:{server.port}" in refusal(untrusted).message
    assert handler.received == []


def test_implicit_tls_delivers_and_plain_port_is_a_clear_error(
    certificate: tuple[Path, Path],
) -> None:
    handler = RecordingHandler()
    with smtp_server(handler, ssl_context=server_tls(certificate)) as server:
        mailer = Mailer(settings_for(server.port, security="tls"), cafile=certificate[0])
        run(mailer.send(share_mail()))
    with smtp_server(RecordingHandler()) as plain:
        mailer = Mailer(settings_for(plain.port, security="tls"), cafile=certificate[0])
        with pytest.raises(MailError) as wrong_port:
            run(mailer.send(share_mail()))

    assert len(handler.received) == 1
    assert not refusal(wrong_port).transient
    assert "email.security" in refusal(wrong_port).message


# AUTH.


def test_auth_with_the_right_password_delivers() -> None:
    handler = RecordingHandler()
    auth = {"authenticator": accept_one_user, "auth_require_tls": False}
    with smtp_server(handler, **auth) as server:
        mailer = Mailer(settings_for(server.port, username=USER, password=PASSWORD))
        run(mailer.check())
        run(mailer.send(render_test_mail(to=READER, box_name="Family")))

    [got] = handler.received
    assert got.authenticated
    assert got.message["Subject"] == "Test mail from Family"


def test_auth_with_a_wrong_password_is_permanent_and_keeps_it_secret() -> None:
    handler = RecordingHandler()
    wrong = "wrong-Battery-9924"
    auth = {"authenticator": accept_one_user, "auth_require_tls": False}
    with smtp_server(handler, **auth) as server:
        mailer = Mailer(settings_for(server.port, username=USER, password=wrong))
        with pytest.raises(MailError) as sent:
            run(mailer.send(share_mail()))
        with pytest.raises(MailError) as checked:
            run(mailer.check())

    for failure in (refusal(sent), refusal(checked)):
        assert not failure.transient
        assert f"127.0.0.1:{server.port} refused to sign in 'ann': 535" in failure.message
        assert "reply not shown: it contains the password" in failure.message
        assert wrong not in failure.message
        assert wrong not in repr(failure)
    assert handler.received == []


def test_a_user_name_without_auth_on_the_server_is_permanent() -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        mailer = Mailer(settings_for(server.port, username=USER, password=PASSWORD))
        with pytest.raises(MailError) as no_auth:
            run(mailer.send(share_mail()))

    assert not refusal(no_auth).transient
    assert "does not offer AUTH" in refusal(no_auth).message
    assert handler.received == []


# Server missing or email off.


def test_server_down_is_transient_and_check_names_the_server() -> None:
    port = free_port()  # nothing listens here
    mailer = Mailer(settings_for(port))
    with pytest.raises(MailError) as sent:
        run(mailer.send(share_mail()))
    with pytest.raises(MailError) as checked:
        run(mailer.check())

    assert refusal(sent).transient
    assert refusal(checked).message == (
        f"Cannot reach the SMTP server at 127.0.0.1:{port}: connection refused."
    )


def test_check_passes_against_a_live_server_without_sending() -> None:
    handler = RecordingHandler()
    with smtp_server(handler) as server:
        assert run(Mailer(settings_for(server.port)).check()) is None
    assert handler.received == []


def test_email_off_is_a_permanent_error() -> None:
    mailer = Mailer(EmailSettings())
    assert not mailer.enabled
    for attempt in (mailer.send(share_mail()), mailer.check()):
        with pytest.raises(MailError) as off:
            run(attempt)
        assert refusal(off).message == EMAIL_OFF == "Email is off: no SMTP server is configured"
        assert not refusal(off).transient
