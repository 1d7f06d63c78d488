"""The one error shape: every API error is {"detail": ...} with the right status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.routing import Route

import vidbox
from tests.support import LiveServer, start_server
from vidbox import errors
from vidbox.app import create_app
from vidbox.config import Settings
from vidbox.web.errors import LoginRequired
from vidbox.web.middleware import loggable_path

RAISED = [
    (errors.BadRequest("The title is too long."), 400),
    (errors.Unauthorized(), 401),
    (errors.Forbidden(), 403),
    (errors.NotFound("No such video."), 404),
    (errors.Conflict(), 409),
    (errors.Gone(), 410),
    (errors.PayloadTooLarge(), 413),
    (errors.UnsupportedMediaType(), 415),
    (errors.TooManyRequests(retry_after=7), 429),
]


async def raise_nth(request: Request) -> None:
    raise RAISED[int(request.path_params["n"])][0]


def every_error_class() -> list[type[errors.VidboxError]]:
    """Every VidboxError subclass in the package, wherever it is defined."""
    for module in pkgutil.walk_packages(vidbox.__path__, "vidbox."):
        if not module.name.endswith("__main__") and ".migrations." not in module.name:
            importlib.import_module(module.name)
    found: list[type[errors.VidboxError]] = []
    pending = [errors.VidboxError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def example(cls: type[errors.VidboxError]) -> errors.VidboxError:
    """An instance of ``cls``, with 7 for each argument it requires (an offset, a length)."""
    parameters = inspect.signature(cls).parameters.items()
    required = {name: 7 for name, param in parameters if param.default is param.empty}
    return cls(**required)


ERROR_CLASSES = {cls.__qualname__: cls for cls in every_error_class()}


async def raise_named(request: Request) -> None:
    raise example(ERROR_CLASSES[request.path_params["name"]])


async def crash(request: Request) -> None:
    raise RuntimeError("secret internal detail")


async def invalid(request: Request) -> None:
    raise errors.ValidationFailed.field("email", "This is not an email address.")


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    app = create_app(settings)
    app.router.routes += [
        Route("/api/test/raise/{n:int}", raise_nth),
        Route("/api/test/raise/{name}", raise_named),
        Route("/api/test/crash", crash),
        Route("/api/test/invalid", invalid),
        Route("/test/page-crash", crash),
    ]
    live = start_server(settings, app)
    yield live
    live.stop()


def test_every_error_is_detail_json_with_its_status(server: LiveServer) -> None:
    with server.client() as client:
        for n, (exc, status) in enumerate(RAISED):
            response = client.get(f"/api/test/raise/{n}")
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"detail": exc.detail}
        assert client.get("/api/test/raise/8").headers["retry-after"] == "7"


def test_every_error_class_has_a_status_and_the_one_json_shape(server: LiveServer) -> None:
    # Upload and disk errors included: one root, so one handler renders them all.
    assert {"UploadError", "UploadLocked", "OffsetMismatch", "DiskFull"} <= set(ERROR_CLASSES)
    with server.client() as client:
        for name, cls in ERROR_CLASSES.items():
            exc = example(cls)
            assert 400 <= exc.status < 600, name
            body = exc.body()
            assert set(body) <= {"detail", "errors"}, name
            assert isinstance(body["detail"], str) and body["detail"].endswith("."), name
            if cls is LoginRequired:
                continue  # answered with a redirect to the sign-in page instead
            response = client.get(f"/api/test/raise/{name}")
            assert response.status_code == exc.status, name
            assert response.headers["content-type"] == "application/json", name
            assert response.json() == body, name
            for header, value in exc.headers.items():
                assert response.headers[header] == value, name


def test_validation_errors_name_the_field(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/api/test/invalid")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "This is not an email address.",
        "errors": {"email": ["This is not an email address."]},
    }


def test_unknown_route_and_method(server: LiveServer) -> None:
    with server.client() as client:
        missing = client.get("/api/nothing-here")
        wrong_method = client.delete("/healthz")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found."}
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()) == {"detail"}


def test_crash_is_500_with_request_id_and_no_internals(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get("/api/test/crash", headers={"X-Request-ID": "trace-me-123"})
        page = client.get("/test/page-crash", headers={"Accept": "text/html"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-me-123"
    assert "secret internal detail" not in response.text
    assert set(response.json()) == {"detail"}
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-request-id"] in page.text
    assert "secret internal detail" not in page.text


def test_browsers_get_a_friendly_page(server: LiveServer) -> None:
    with server.client() as client:
        page = client.get("/no/such/page", headers={"Accept": "text/html,*/*"})
    assert page.status_code == 404
    assert "<h1>Page not found</h1>" in page.text
    assert 'href="/"' in page.text


def test_request_id_generated_echoed_and_bad_ones_replaced(server: LiveServer) -> None:
    with server.client() as client:
        generated = client.get("/healthz").headers["x-request-id"]
        echoed = client.get("/healthz", headers={"X-Request-ID": "abc-12345"})
        hostile = client.get("/healthz", headers={"X-Request-ID": "x y\tinjection=1"})
    assert len(generated) == 16
    assert echoed.headers["x-request-id"] == "abc-12345"
    assert hostile.headers["x-request-id"] != "x y\tinjection=1"


def test_security_headers_on_every_response(server: LiveServer) -> None:
    with server.client() as client:
        for response in (client.get("/healthz"), client.get("/nope")):
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert "'unsafe-inline'" not in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/s/AbC123_-xyz/hls/720p/seg_00001.m4s", "/s/<token>/hls/720p/seg_00001.m4s"),
        ("/s/AbC123/enter/signed.value.here", "/s/<token>/enter/<token>"),
        ("/invite/secret-invite", "/invite/<token>"),
        ("/api/videos/abc/hls/master.m3u8", "/api/videos/abc/hls/master.m3u8"),
        ("/settings", "/settings"),
    ],
)
def test_secrets_in_paths_are_not_logged(path: str, logged: str) -> None:
    assert loggable_path(path) == logged
