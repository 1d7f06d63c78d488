"""What a wheel carries when it is built with no network and no npm: everything the server
serves, the vendored hls.js included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_built_offline_carries_the_browser_libraries(tmp_path: Path) -> None:
    # A copy, so the in-tree build folder setuptools leaves stays out of the checkout.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(".git", ".venv*", "build", "test-artifacts", "*.egg-info",
                                      "__pycache__", ".*_cache"),
    )  # fmt: skip
    out = tmp_path / "wheel"
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"}  # no npm on PATH
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    wheel = next(out.glob("vidbox-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "vidbox/static/vendor/hls.min.js" in names
    assert "vidbox/static/vendor/hls.LICENSE" in names
    assert "vidbox/templates/base.html" in names
    assert "vidbox/static/js/player.js" in names
    assert any(name.startswith("vidbox/migrations/versions/0001") for name in names)
    hls = zipfile.ZipFile(wheel).read("vidbox/static/vendor/hls.min.js")
    assert b'"1.6.19"' in hls
