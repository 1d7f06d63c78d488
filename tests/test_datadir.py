"""The data directory's generated key, when several processes of a fresh box start at once."""

from __future__ import annotations

import threading
from pathlib import Path

from vidbox.datadir import load_secret_key


def test_processes_generating_the_key_at_once_all_get_the_one_in_the_file(
    tmp_path: Path,
) -> None:
    # Threads stand in for processes: the race is on the file, not on anything in memory.
    path = tmp_path / "secret.key"
    start = threading.Barrier(8)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def generate() -> None:
        start.wait()
        try:
            keys.append(load_secret_key(path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=generate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert set(keys) == {path.read_bytes().strip()}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temp files left
