"""Atomic writes: a file is written under a temporary name beside its final one and renamed
when whole, so a reader (or a resumed run) sees the complete file or none."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def tmp_path_for(path: os.PathLike | str) -> Path:
    """The temporary name of ``path`` while it is written: ``.NAME.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name("." + path.name + TMP_SUFFIX)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` to; on success it is renamed to ``path``,
    on an error removed (a leftover of an interrupted run is overwritten, never trusted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: os.PathLike | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
