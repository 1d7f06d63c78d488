"""The delimiter search that runs as bytes are spliced into a file (the moving itself is
exercised over real sockets in tests/http/test_server.py and tests/web/test_multipart.py)."""

from __future__ import annotations

import os
from pathlib import Path

from vidbox.http import splice

DELIMITER = b"\r\n--vidboxtestboundary0123456789"


def test_search_across_its_slices(tmp_path: Path) -> None:
    slice_bytes = splice.PIPE_BYTES + 4096  # the search buffer
    data = bytearray(os.urandom(3 * slice_bytes))
    path = tmp_path / "f"
    for position in (0, slice_bytes - 3, 2 * slice_bytes - len(DELIMITER)):
        copy = bytearray(data)
        copy[position : position + len(DELIMITER)] = DELIMITER
        path.write_bytes(bytes(copy))
        fd = os.open(path, os.O_RDONLY)
        try:
            assert splice.find_in_file(fd, 0, len(copy), DELIMITER) == position
            assert splice.find_in_file(fd, position + 1, len(copy), DELIMITER) is None
            assert splice.find_in_file(fd, 0, position + len(DELIMITER) - 1, DELIMITER) is None
        finally:
            os.close(fd)
