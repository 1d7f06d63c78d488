"""Jinja2 environment for pages; templates ship inside the package."""

from __future__ import annotations

import jinja2
from starlette.templating import Jinja2Templates

from vidbox import __version__
from vidbox.config import Settings


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
    return Jinja2Templates(env=env)
