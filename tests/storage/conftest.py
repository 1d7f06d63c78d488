"""Storage fixtures: a real S3 server (moto) for the whole session and one backend per test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import s3_environ
from vidbox.config import load_settings
from vidbox.storage import Storage, load


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
