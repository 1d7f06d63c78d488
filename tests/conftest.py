"""Shared fixtures: settings on a temporary data directory and the real app over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.postgres import DATABASES, Databases, drop_all, drop_for, moto_server, settings_for
from tests.support import LiveServer, small_filesystem, start_server
from vidbox.config import Settings


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Databases | None]:
    """Databases for the tests when the suite runs on PostgreSQL (else None)."""
    yield DATABASES
    drop_all()


@pytest.fixture
def make_settings(
    tmp_path: Path, postgres_databases: Databases | None
) -> Iterator[Callable[..., Settings]]:
    # On PostgreSQL each data directory gets a database of its own, like its own SQLite file.
    made: list[Path] = []

    def make(env: dict[str, str] | None = None, *, data_dir: Path | None = None) -> Settings:
        folder = data_dir or tmp_path / "data"
        made.append(folder)
        # No free-space reserve unless a test asks for one: tests fill small file systems on
        # purpose, and a CI machine may have less than the default free.
        environ = {"VIDBOX_UPLOADS__RESERVE_BYTES": "0", **(env or {})}
        return settings_for(data_dir=folder, environ=environ)

    yield make
    for folder in made:
        drop_for(folder)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    server = start_server(settings)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 320x240 H.264/AAC MP4, made once per test run."""
    from tests.support import make_test_clip

    return make_test_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """host:port of an S3 server on loopback (moto speaks S3 but checks no signatures); the
    run's one, which S3 runs of the suite also put every box on."""
    return moto_server()


@pytest.fixture
def small_spool(settings: Settings) -> Iterator[Path]:
    """The spool on a 2 MiB file system of its own, which uploads fill up (needs root to
    mount; the test is skipped elsewhere)."""
    with small_filesystem(settings.spool_dir, "2m") as spool:
        yield spool
