"""Copying every object from one store to another, e.g. local disk to S3.

Resumable: an object already in the destination with the same size is skipped, so an
interrupted run is simply started again. Objects travel through a temporary file, one at a time,
never whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidbox.storage import Storage, StorageError

ProgressCallback = Callable[[int, int, str], None]


@dataclass
class CopyReport:
    total: int = 0  # objects found in the source
    copied: int = 0
    skipped: int = 0  # already present in the destination with the same size
    bytes_copied: int = 0


async def copy_all(
    src: Storage,
    dst: Storage,
    *,
    prefix: str = "videos/",
    on_progress: ProgressCallback | None = None,
    temp_dir: Path | None = None,
) -> CopyReport:
    """Copy every object under ``prefix`` that ``dst`` lacks or holds with another size.

    ``on_progress(done, total, key)`` is called after each object, copied or skipped.
    ``temp_dir`` holds the one object in transit (default: the system temp folder).
    Raises StorageError from either store; what was copied before stays copied.
    """
    sources = await src.list_prefix(prefix)
    existing = {info.key: info.size for info in await dst.list_prefix(prefix)}
    report = CopyReport(total=len(sources))
    with tempfile.TemporaryDirectory(prefix="vidbox-migrate-", dir=temp_dir) as folder:
        transit = Path(folder) / "object"
        for done, info in enumerate(sources, start=1):
            if existing.get(info.key) == info.size:
                report.skipped += 1
            else:
                size = await _download(src, info.key, transit)
                await dst.put_file(info.key, transit)
                stored = await dst.stat(info.key)
                if stored.size != size:
                    raise StorageError(
                        f"copy of {info.key} to {dst.describe()} has {stored.size} bytes "
                        f"instead of {size}"
                    )
                report.copied += 1
                report.bytes_copied += size
            if on_progress is not None:
                on_progress(done, report.total, info.key)
    return report


async def _download(storage: Storage, key: str, target: Path) -> int:
    size = 0
    fh = await asyncio.to_thread(target.open, "wb")
    try:
        async with contextlib.aclosing(storage.open_range(key)) as chunks:
            async for chunk in chunks:
                await asyncio.to_thread(fh.write, chunk)
                size += len(chunk)
    finally:
        await asyncio.to_thread(fh.close)
    return size
