"""Reading request bodies into plain values, with a 400 naming the field when they are wrong."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from vidbox.errors import BadRequest, UnsupportedMediaType, ValidationFailed

MAX_JSON_BYTES = 64 * 1024


async def json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
        raise UnsupportedMediaType("Send a JSON body with Content-Type: application/json.")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON_BYTES:
            raise BadRequest("The JSON body is too large.")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The JSON body must be an object.")
    return body


async def form_body(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def text(body: dict[str, Any], name: str, *, required: bool = True, max_length: int = 1000) -> str:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ValidationFailed.field(name, f"{name} is required.")
        return ""
    if not isinstance(value, str):
        raise ValidationFailed.field(name, f"{name} must be a string.")
    if len(value) > max_length:
        raise ValidationFailed.field(name, f"{name} must be at most {max_length} characters.")
    return value


def flag(body: dict[str, Any], name: str, *, default: bool = False) -> bool:
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if value in ("on", "true", "1"):  # HTML checkboxes
        return True
    if value in ("", "false", "0", None):
        return False
    raise ValidationFailed.field(name, f"{name} must be true or false.")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
