"""Reading loosely typed input values the same way in every route and domain function: JSON
sends booleans, HTML forms send checkbox strings."""

from __future__ import annotations


def flag_value(value: object) -> bool | None:
    """True or False for a JSON boolean or a checkbox's form value ("on", "true", "1"; an
    unchecked box sends nothing, or "", "false", "0"), None when it is neither."""
    if isinstance(value, bool):
        return value
    if value in ("on", "true", "1"):
        return True
    if value in ("", "false", "0", None):
        return False
    return None
