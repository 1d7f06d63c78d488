"""Jinja2 environment for pages; templates ship inside the package."""

from __future__ import annotations

from pathlib import Path

import jinja2
from starlette.templating import Jinja2Templates

from vidbox import __version__
from vidbox.config import Settings
from vidbox.uploads.validation import DISPLAY_NAMES


def make_templates(settings: Settings) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("vidbox", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["box_name"] = settings.server.name
    env.globals["version"] = __version__
    # A version query string lets browsers cache static files until the next release.
    env.globals["static"] = lambda path: f"/static/{path}?v={__version__}"
    env.filters["filesize"] = filesize
    env.filters["duration"] = duration
    env.filters["format_name"] = lambda ext: DISPLAY_NAMES.get(ext, ext.upper())
    # Third-party browser code is fetched from npm at build time, not committed; pages use it
    # only when the build brought it.
    env.globals["hls_js"] = VENDOR_HLS.exists()
    return Jinja2Templates(env=env)


VENDOR_HLS = Path(__file__).resolve().parent.parent / "static" / "vendor" / "hls.min.js"


def filesize(n: int | None) -> str:
    """Sizes in powers of 1024 under their IEC names (2 GiB), as the README and the config
    count them: "2 GB" for 2 x 1024^3 bytes is 7% off and reads as a different limit."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    return f"{n} bytes"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
