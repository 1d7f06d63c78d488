"""Rendition names: the one definition planning, storage keys and the HLS routes share."""

from __future__ import annotations

import re

# Rendition names are the short side in pixels and "p" ("720p"): the folder in storage, the
# path segment the HLS routes accept, the label in the player. This pattern is the one
# definition all three use; ``plan_ladder`` never makes a name outside it.
RENDITION_NAME = re.compile(r"^[1-9][0-9]{0,3}p$")


def rendition_name(short_side: int) -> str:
    name = f"{short_side}p"
    if not RENDITION_NAME.fullmatch(name):
        raise ValueError(f"no rendition can be {short_side} pixels high")
    return name


def is_rendition_name(name: str) -> bool:
    return RENDITION_NAME.fullmatch(name) is not None  # "$" alone lets "720p\n" through
