"""``vidbox storage migrate``: move media between the local disk and an S3 store."""

from __future__ import annotations

import asyncio
import dataclasses

import click

from vidbox.cli_options import box_options, box_settings
from vidbox.config import ConfigError, Settings, check_cross_field
from vidbox.storage import StorageError, load
from vidbox.storage.migrate import CopyReport, copy_all


def _with_backend(settings: Settings, backend: str) -> Settings:
    storage = dataclasses.replace(settings.storage, backend=backend)
    changed = dataclasses.replace(settings, storage=storage)
    try:
        check_cross_field({f.name: getattr(changed, f.name) for f in dataclasses.fields(changed)})
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    return changed


async def _migrate(settings: Settings, target: str) -> CopyReport:
    source_backend = "local" if target == "s3" else "s3"
    src = load(_with_backend(settings, source_backend))
    dst = load(_with_backend(settings, target))
    try:
        await src.check()
        await dst.check()
        objects = await src.list_prefix("videos/")
        with click.progressbar(
            length=len(objects),
            label=f"Copying {len(objects)} files from {src.describe()} to {dst.describe()}",
            show_pos=True,
        ) as bar:
            return await copy_all(src, dst, on_progress=lambda done, total, key: bar.update(1))
    finally:
        await src.close()
        await dst.close()


@click.group()
@box_options
def storage() -> None:
    """Move media between storage backends."""


@storage.command()
@click.option("--to", "target", type=click.Choice(["s3", "local"]), required=True)
@box_options
def migrate(target: str) -> None:
    """Copy every stored video to the other backend. Safe to run again after an interruption:
    files already copied are skipped. Nothing is deleted from the source."""
    settings = box_settings()
    try:
        report = asyncio.run(_migrate(settings, target))
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Copied {report.copied} files ({report.bytes_copied / 1e6:.1f} MB); "
        f"{report.skipped} were already there."
    )
    click.echo(
        f'Now set storage.backend = "{target}" (or VIDBOX_STORAGE__BACKEND={target}) and '
        "restart vidbox. The old copies stay where they were until you remove them."
    )
