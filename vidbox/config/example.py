"""``vidbox.toml.example``, written from the schema (a test compares the two)."""

from __future__ import annotations

import dataclasses
from typing import Any

from vidbox.config.schema import SECTIONS


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_example() -> str:
    """The text of vidbox.toml.example: every setting, commented out, with its default."""
    lines = [
        "# vidbox configuration. Every setting is shown with its default value, commented out.",
        "# Use it with `vidbox serve --config FILE` or VIDBOX_CONFIG=FILE. Any key can also be",
        "# set in the environment as VIDBOX_<SECTION>__<KEY>, e.g. VIDBOX_SERVER__PORT=9000,",
        "# and secrets as VIDBOX_<SECTION>__<KEY>_FILE=/run/secrets/name. A list in the",
        '# environment is comma-separated (mp4,mov) or a TOML/JSON array (["mp4", "mov"]).',
        "# The data directory is chosen with --data-dir or VIDBOX_DATA_DIR",
        "# (default: $XDG_DATA_HOME/vidbox, /data in the container).",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]", f"# {cls.__doc__}"]
        for f in dataclasses.fields(cls):
            default = f.default_factory() if callable(f.default_factory) else f.default
            lines.append("")
            lines += [f"# {chunk}" for chunk in _wrap(f.metadata["help"])]
            lines.append(f"# {f.name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 96) -> list[str]:
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out
