from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vidbox.uploads.files import PendingChunks, pwritev_all


def test_pwritev_all_writes_many_chunks_in_order_and_hashes_them(tmp_path: Path) -> None:
    # More chunks than one pwritev call accepts, of uneven sizes, some empty.
    chunks = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    pending = PendingChunks()
    for chunk in chunks:
        pending.add(chunk)
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"HEAD", 0)
        hasher = hashlib.sha256()
        pwritev_all(fd, pending.chunks, 4, hasher)
    finally:
        os.close(fd)
    body = b"".join(chunks)
    assert pending.size == len(body)
    assert path.read_bytes() == b"HEAD" + body
    assert hasher.digest() == hashlib.sha256(body).digest()
    pending.clear()
    assert (pending.chunks, pending.size) == ([], 0)
