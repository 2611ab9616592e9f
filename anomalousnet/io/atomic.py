"""Atomic writes: a file is written under a temporary name beside its final one and renamed
when whole, so a reader (or a resumed run) sees the complete file or none. Each writer has a
temporary name of its own (process id and a random token), so two runs writing into one
folder never remove or rename each other's half-written files."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"


def tmp_path_for(path: os.PathLike | str, owner: str | None = None) -> Path:
    """A temporary name of ``path`` while it is written: ``.NAME.OWNER.tmp`` in the same folder
    (``.NAME.tmp`` without an owner, the name earlier versions used)."""
    path = Path(path)
    return path.with_name("." + path.name + (f".{owner}" if owner else "") + TMP_SUFFIX)


def _owner_alive(tmp: Path, name: str) -> bool:
    """Whether the process that owns temporary file ``tmp`` of ``name`` still runs."""
    owner = tmp.name[len(name) + 2:-len(TMP_SUFFIX)]
    try:
        os.kill(int(owner.split("-")[0]), 0)
        return True
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: alive
        return True


def remove_stale_tmps(path: os.PathLike | str) -> None:
    """Remove what interrupted writers of ``path`` left: temporary files whose process is gone."""
    path = Path(path)
    for tmp in path.parent.glob("." + path.name + "*" + TMP_SUFFIX):
        if not _owner_alive(tmp, path.name):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path (this writer's own) to write ``path`` to; on success it is
    renamed to ``path`` and leftovers of interrupted writers are removed, on an error it is
    removed (a leftover is never trusted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path, f"{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_tmps(path)


def write_text(path: os.PathLike | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
