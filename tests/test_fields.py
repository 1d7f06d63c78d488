"""Checkbox and boolean input values, read one way by routes and domain alike."""

from __future__ import annotations

import pytest

from vidbox.fields import flag_value


@pytest.mark.parametrize("value", [True, "on", "true", "1"])
def test_checked_boxes_and_true(value: object) -> None:
    assert flag_value(value) is True


@pytest.mark.parametrize("value", [False, None, "", "false", "0"])
def test_unchecked_boxes_and_false(value: object) -> None:
    assert flag_value(value) is False


@pytest.mark.parametrize("value", ["yes", "True", 1, 0, [], {"on": True}])
def test_anything_else_is_neither(value: object) -> None:
    assert flag_value(value) is None
