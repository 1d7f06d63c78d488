"""Print pip constraints that pin every runtime dependency of vidbox to its declared floor
(`name>=X` becomes `name==X`), for `./scripts/test --lowest`: the floors in pyproject.toml are
only honest if the suite passes on them."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def floors(dependencies: list[str]) -> list[str]:
    pins = []
    for dependency in dependencies:
        match = REQUIREMENT.match(dependency.split(";")[0])
        if not match:
            raise SystemExit(f"cannot read the requirement {dependency!r}")
        name, specifiers = match.groups()
        floor = re.search(r">=\s*([^,\s]+)", specifiers)
        if floor is None:
            raise SystemExit(f"{name} has no floor (>=): every dependency needs one")
        pins.append(f"{name}=={floor.group(1)}")
    return pins


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    sys.stdout.write("".join(pin + "\n" for pin in floors(project["dependencies"])))


if __name__ == "__main__":
    main()
