"""Storage fixtures: a real S3 server (moto) for the whole session and one backend per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.support import free_port
from vidbox.config import load_settings
from vidbox.storage import Storage, load

S3_ACCESS_KEY = "vidbox-test-access"
S3_SECRET_KEY = "vidbox-test-secret-do-not-print"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """host:port of an S3 server on loopback (moto speaks S3 but checks no signatures)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def s3_environ(endpoint: str, bucket: str | None = None) -> dict[str, str]:
    return {
        "VIDBOX_STORAGE__BACKEND": "s3",
        "VIDBOX_STORAGE__ENDPOINT": endpoint,
        "VIDBOX_STORAGE__BUCKET": bucket or f"vidbox-test-{uuid.uuid4().hex[:12]}",
        "VIDBOX_STORAGE__ACCESS_KEY": S3_ACCESS_KEY,
        "VIDBOX_STORAGE__SECRET_KEY": S3_SECRET_KEY,
        "VIDBOX_STORAGE__SECURE": "false",
    }


@pytest.fixture(name="s3_environ")
def s3_environ_fixture() -> Callable[..., dict[str, str]]:
    """``s3_environ(endpoint, bucket=None)``: settings environment for an S3 backend."""
    return s3_environ


@pytest.fixture
def local_storage(tmp_path: Path) -> Iterator[Storage]:
    storage = load(load_settings(data_dir=tmp_path / "data", environ={}))
    yield storage
    asyncio.run(storage.close())


@pytest.fixture
def s3_storage(tmp_path: Path, moto_endpoint: str) -> Iterator[Storage]:
    """An S3 backend on a fresh bucket, so tests never see each other's objects."""
    storage = load(load_settings(data_dir=tmp_path / "data", environ=s3_environ(moto_endpoint)))
    yield storage
    asyncio.run(storage.close())


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(f"{request.param}_storage")
