"""``vidbox check``: the readiness checks, run from the shell without starting the server and
without changing anything on disk."""

from __future__ import annotations

import os
from pathlib import Path

from vidbox.config import Settings
from vidbox.db import schema_status
from vidbox.health import CheckResult, FFmpegCheck, check_data_dir, run_checks


async def _data_dir(settings: Settings) -> str:
    folder = settings.data_dir
    if folder.exists():
        return await check_data_dir(folder)
    parent = next((p for p in folder.parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise RuntimeError(f"{folder} cannot be created: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise RuntimeError(f"{folder} does not exist and {parent} is not writable")
    return f"{folder} will be created on first start"


async def _database(settings: Settings) -> str:
    path = settings.database_path
    if not path.exists():
        return f"{path} will be created on first start"
    try:
        current, head = schema_status(path)
    except Exception as exc:
        raise RuntimeError(f"{path} cannot be read: {exc}") from None
    if current == head:
        return f"{path} (schema {current}, up to date)"
    return f"{path} (schema {current}; will be upgraded to {head} on start)"


async def diagnose(settings: Settings) -> list[CheckResult]:
    config = CheckResult("config", True, "; ".join(settings.sources))
    return [
        config,
        *await run_checks(
            {
                "data_dir": lambda: _data_dir(settings),
                "database": lambda: _database(settings),
                "ffmpeg": FFmpegCheck(),
            }
        ),
    ]
