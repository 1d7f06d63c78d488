"""Delivering mail over SMTP with aiosmtplib, failing closed on TLS.

Every failure becomes a ``MailError`` whose ``transient`` flag tells the job queue whether a
retry can help: connection problems, timeouts and 4xx replies are transient; bad credentials,
untrusted certificates, a server without STARTTLS and 5xx replies are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib

from vidbox.config import EmailSettings, Settings
from vidbox.mail.messages import MailError, OutgoingMail, build_message, one_line

TIMEOUT_SECONDS = 20.0
EMAIL_OFF = "Email is off: no SMTP server is configured"


class Mailer:
    """Sends mail through the SMTP server of ``[email]``.

    ``ssl_context`` or ``cafile`` replace or extend the system's trusted certificates, for a
    server with a private CA (and for tests). Certificates are always verified.
    """

    def __init__(
        self,
        settings: EmailSettings,
        *,
        box_name: str = "vidbox",
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | Path | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        if ssl_context is not None and cafile is not None:
            raise ValueError("give ssl_context or cafile, not both")
        self.settings = settings
        self.box_name = box_name
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._cafile = str(cafile) if cafile is not None else None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Mailer:
        return cls(settings.email, box_name=settings.server.name, **options)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.host)

    @property
    def server(self) -> str:
        """host:port, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    async def send(self, mail: OutgoingMail) -> None:
        """Deliver ``mail`` to the SMTP server, or raise MailError."""
        if not self.enabled:
            raise MailError(EMAIL_OFF, transient=False)
        message = build_message(
            mail, from_address=self.settings.from_address, box_name=self.box_name
        )
        async with self._session() as client:
            await client.send_message(
                message, sender=self.settings.from_address, recipients=[mail.to]
            )

    async def check(self) -> None:
        """Connect, secure the connection and sign in as configured, then say goodbye."""
        if not self.enabled:
            raise MailError(EMAIL_OFF, transient=False)
        async with self._session():
            pass

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiosmtplib.SMTP]:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.security == "tls",
            # STARTTLS is done by hand below: aiosmtplib's automatic mode quietly goes on in
            # the clear when the server does not offer it.
            start_tls=False,
            tls_context=self._ssl_context,
            cert_bundle=self._cafile,
            timeout=self.timeout,
        )
        transport: asyncio.BaseTransport | None = None
        try:
            await client.connect()
            if settings.security == "starttls":
                await _ehlo_if_needed(client)
                if not client.supports_extension("starttls"):
                    raise MailError(
                        f"The SMTP server at {self.server} does not offer STARTTLS, so vidbox "
                        "will not send mail to it in the clear. Set email.security to tls if it "
                        "expects TLS from the start, or to none only for a trusted local relay.",
                        transient=False,
                    )
                await client.starttls()
            if settings.username:
                # After STARTTLS the server must be asked again what it offers.
                await _ehlo_if_needed(client)
                if not client.supports_extension("auth"):
                    raise MailError(
                        f"The SMTP server at {self.server} does not offer AUTH, but "
                        "email.username is set. Many servers offer it only over TLS: check "
                        "email.security, or clear email.username for a relay without sign-in.",
                        transient=False,
                    )
                await client.login(settings.username, settings.password)
            yield client
            # quit() lets go of the transport, which is still needed to hang up below.
            transport = client.transport
            # The message is accepted by now; a failed goodbye must not make the queue resend.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise self._explain(exc) from exc
        finally:
            _hang_up(client, transport)

    def _explain(self, exc: BaseException) -> MailError:
        """One human sentence about ``exc``, naming the server and never the password."""
        server = f"The SMTP server at {self.server}"
        tls_error = _first_in_chain(exc, ssl.SSLError)
        if isinstance(tls_error, ssl.SSLCertVerificationError):
            return MailError(
                f"{server} presented a TLS certificate that is not trusted "
                f"({tls_error.verify_message or tls_error.reason}).",
                transient=False,
            )
        if tls_error is not None:
            return MailError(
                f"TLS with the SMTP server at {self.server} failed ({_tls_reason(tls_error)}); "
                "check email.security and email.port (implicit TLS is usually port 465, "
                "STARTTLS 587).",
                transient=False,
            )
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            # SMTP's own rule: 4xx replies mean "try again later", 5xx mean "never".
            transient = 400 <= exc.code < 500
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                what = f"refused to sign in {self.settings.username!r}"
            elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
                what = f"refused the recipient {exc.recipient}"
            elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
                what = f"refused the sender {exc.sender}"
            else:
                what = "refused the mail"
            later = " for now" if transient else ""
            reply = f"{exc.code} {self._scrub(exc.message)}"
            return MailError(f"{server} {what}{later}: {reply}", transient=transient)
        if isinstance(exc, TimeoutError):
            return MailError(
                f"{server} did not answer within {self.timeout:g} seconds.", transient=True
            )
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return MailError(f"{server} closed the connection.", transient=True)
        if isinstance(exc, OSError):
            return MailError(
                f"Cannot reach the SMTP server at {self.server}: {_os_reason(exc)}.",
                transient=True,
            )
        # What is left is the server lacking something vidbox needs, such as AUTH.
        return MailError(f"{server} cannot be used: {self._scrub(str(exc))}", transient=False)

    def _scrub(self, server_text: str) -> str:
        text = one_line(server_text)
        # Dropping the whole reply, rather than cutting the password out, keeps a short
        # password from being revealed by the gaps it would leave.
        if self.settings.password and self.settings.password in text:
            return "(reply not shown: it contains the password)"
        return text


_E = TypeVar("_E", bound=BaseException)


def _first_in_chain(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of type ``kind`` among ``exc`` and what caused it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _os_reason(exc: OSError) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return f"the host name cannot be resolved ({seen.strerror})"
        if isinstance(seen, OSError) and seen.errno and seen.errno > 0:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return one_line(str(exc))


def _tls_reason(error: ssl.SSLError) -> str:
    return error.reason.replace("_", " ").lower() if error.reason else one_line(str(error))


async def _ehlo_if_needed(client: aiosmtplib.SMTP) -> None:
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()


def _hang_up(client: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None) -> None:
    """Close the connection now. A graceful TLS shutdown (close_notify, then waiting for the
    server's) adds nothing once the session is over or failed, and could outlive the event
    loop of a short-lived caller such as ``vidbox check``, leaking the socket."""
    transport = client.transport or transport
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    client.close()
