"""Sign-in rate limits over real HTTP: they hold under concurrency, and an attacker's failures
do not lock the owner out."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import PASSWORD, LiveServer, add_user, csrf_from, start_server
from vidbox.auth.login import FAILURES_PER_ACCOUNT, FAILURES_PER_CLIENT
from vidbox.config import Settings
from vidbox.web.api_auth import REGISTRATIONS_PER_CLIENT


def parallel(count: int, request: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``count`` requests sent from as many threads, released together."""
    start = threading.Barrier(count)

    def one() -> httpx.Response:
        start.wait()
        return request()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: one(), range(count)))


def test_parallel_wrong_guesses_stop_at_the_limit(live: LiveServer) -> None:
    add_user(live.settings, "ann@example.org")
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with live.client(limits=limits) as client:
        responses = parallel(
            48,
            lambda: client.post(
                "/api/auth/login", json={"email": "ann@example.org", "password": "w" * 12}
            ),
        )
    statuses = Counter(r.status_code for r in responses)
    # Only the limit's worth reached the password check (401); the rest never did.
    assert statuses == {401: FAILURES_PER_CLIENT, 429: 48 - FAILURES_PER_CLIENT}
    for limited in (r for r in responses if r.status_code == 429):
        assert set(limited.json()) == {"detail"}
        assert int(limited.headers["retry-after"]) > 0


@pytest.fixture
def behind_proxy(make_settings: Callable[..., Settings]) -> Iterator[LiveServer]:
    """The box behind a reverse proxy on loopback, so X-Forwarded-For names the client."""
    server = start_server(make_settings({"VIDBOX_SERVER__TRUSTED_PROXIES": "127.0.0.1"}))
    yield server
    server.stop()


def from_address(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


def test_an_attackers_failures_do_not_lock_out_the_owner(behind_proxy: LiveServer) -> None:
    live = behind_proxy
    add_user(live.settings, "bob@example.org")
    wrong = {"email": "bob@example.org", "password": "w" * 12}
    right = {"email": "bob@example.org", "password": PASSWORD}
    with live.client() as client:
        attacker = from_address("203.0.113.7")
        statuses = [
            client.post("/api/auth/login", json=wrong, headers=attacker).status_code
            for _ in range(FAILURES_PER_CLIENT + 2)
        ]
        assert statuses == [401] * FAILURES_PER_CLIENT + [429] * 2
        # Even the right password is refused to the client that has been guessing.
        assert client.post("/api/auth/login", json=right, headers=attacker).status_code == 429

        owner = from_address("198.51.100.2")
        signed_in = client.post("/api/auth/login", json=right, headers=owner)
        assert signed_in.status_code == 200, signed_in.text
        # The browser form too.
        page = client.get("/login", headers=owner)
        form = client.post(
            "/login",
            data={**right, "_csrf": csrf_from(page.text)},
            headers=owner,
        )
        assert form.status_code == 303, form.text


def test_guesses_from_many_addresses_leave_each_client_one_try(behind_proxy: LiveServer) -> None:
    live = behind_proxy
    add_user(live.settings, "cy@example.org")
    wrong = {"email": "cy@example.org", "password": "w" * 12}
    right = {"email": "cy@example.org", "password": PASSWORD}
    addresses = [
        f"203.0.113.{n}" for n in range(1, FAILURES_PER_ACCOUNT // FAILURES_PER_CLIENT + 2)
    ]
    limits = httpx.Limits(max_connections=16)
    with live.client(limits=limits) as client:

        def login(ip: str) -> int:
            return client.post("/api/auth/login", json=wrong, headers=from_address(ip)).status_code

        # First tries one after another, all below the account-wide limit (a client's first
        # try is always checked), then the rest in parallel.
        firsts = [login(ip) for ip in addresses]
        with ThreadPoolExecutor(8) as pool:
            rest = list(pool.map(login, addresses * (FAILURES_PER_CLIENT - 1)))
        failed = (firsts + rest).count(401)
        assert failed == FAILURES_PER_ACCOUNT  # the account-wide limit held across addresses
        # A client that has failed on the account is refused now, even with a try left...
        tried_once = from_address("192.0.2.1")
        assert client.post("/api/auth/login", json=wrong, headers=tried_once).status_code == 401
        assert client.post("/api/auth/login", json=right, headers=tried_once).status_code == 429
        # ...but a client's first try still counts: the owner gets in from their own device.
        owner = from_address("198.51.100.2")
        assert client.post("/api/auth/login", json=right, headers=owner).status_code == 200


def test_parallel_registrations_stop_at_the_limit(make_settings: Callable[..., Settings]) -> None:
    live = start_server(make_settings({"VIDBOX_AUTH__REGISTRATION": "open"}))
    try:
        with live.client(limits=httpx.Limits(max_connections=32)) as client:
            responses = parallel(
                24,
                lambda: client.post(
                    "/api/auth/register", json={"email": "new@example.org", "password": "short"}
                ),
            )
    finally:
        live.stop()
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {400: REGISTRATIONS_PER_CLIENT, 429: 24 - REGISTRATIONS_PER_CLIENT}
