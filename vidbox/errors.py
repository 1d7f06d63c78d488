"""The one error type the app raises on purpose, and its JSON shape.

Domain code raises a VidboxError subclass; the web layer turns it into
``{"detail": "human sentence"}`` (plus ``"errors": {field: [msg]}`` for validation) with the
error's status, or into a friendly HTML page for browsers.
"""

from __future__ import annotations

from typing import Any, ClassVar


class VidboxError(Exception):
    status: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Something went wrong on the server."

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.errors = errors
        self.headers = headers or {}
        super().__init__(self.detail)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        return body


class BadRequest(VidboxError):
    status = 400
    default_detail = "The request is not valid."


class ValidationFailed(BadRequest):
    """Bad input in named fields: ``errors`` maps each field to its messages."""

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(message, errors={name: [message]})


class Unauthorized(VidboxError):
    status = 401
    default_detail = "Sign in to do this."


class Forbidden(VidboxError):
    status = 403
    default_detail = "You are not allowed to do this."


class NotFound(VidboxError):
    status = 404
    default_detail = "Not found."


class Conflict(VidboxError):
    status = 409
    default_detail = "This conflicts with the current state."


class Gone(VidboxError):
    status = 410
    default_detail = "This is no longer available."


class PreconditionFailed(VidboxError):
    status = 412
    default_detail = "A precondition of the request failed."


class PayloadTooLarge(VidboxError):
    status = 413
    default_detail = "The upload is too large."


class UnsupportedMediaType(VidboxError):
    status = 415
    default_detail = "This type of content is not accepted."


class TooManyRequests(VidboxError):
    status = 429
    default_detail = "Too many attempts. Wait a little and try again."

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class ServiceUnavailable(VidboxError):
    status = 503
    default_detail = "The service is not ready."
