"""Atomic file writing, shared by checkpoints, packed models and downloads (no torch)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Write ``path`` all or nothing: yields a binary file beside it, renamed over ``path`` on success.

    On any error (including one raised by the caller inside the ``with`` block) the
    temporary file is removed and ``path`` is left as it was, so a crash or a full disk
    never leaves a half-written checkpoint or model behind. A new file gets the
    permissions a plain ``open(path, "wb")`` would give (the umask applies); a replaced
    file keeps its mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except OSError:  # no old file, or a file system without modes: keep the new file's
            pass
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
