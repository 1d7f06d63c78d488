"""Build hook: bring the browser libraries vidbox serves (hls.js) from the npm registry into
the package's static folder, so a wheel carries them and nothing foreign is committed.

Without npm the build still succeeds: players then use the browser's native HLS (Safari,
Chromium 142+) or fall back to the original file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

VENDOR = Path(__file__).resolve().parent / "vidbox" / "static" / "vendor"
PACKAGES = {
    "hls.js@1.6.19": {"package/dist/hls.min.js": "hls.min.js", "package/LICENSE": "hls.LICENSE"},
}


def vendor_browser_libraries() -> None:
    npm = shutil.which("npm")
    for spec, files in PACKAGES.items():
        if all((VENDOR / target).exists() for target in files.values()):
            continue
        if npm is None:
            print(f"warning: npm not found; {spec} is not bundled", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run(
                    [npm, "pack", spec, "--silent", "--pack-destination", tmp],
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
            except (subprocess.SubprocessError, OSError) as exc:
                print(f"warning: could not fetch {spec} from npm: {exc}", file=sys.stderr)
                continue
            archive = next(Path(tmp).glob("*.tgz"))
            VENDOR.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive) as tar:
                for member, target in files.items():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        (VENDOR / target).write_bytes(extracted.read())


class BuildPyWithVendor(build_py):
    def run(self) -> None:
        vendor_browser_libraries()
        super().run()


setup(cmdclass={"build_py": BuildPyWithVendor})
