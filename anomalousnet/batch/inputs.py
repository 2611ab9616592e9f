"""What users pass as inputs, expanded once for every command: paths, folders and glob patterns.

Input kinds: ``video`` (TIFF stacks), ``csv`` (AnDi-style trajectory CSVs), ``store`` (a
store directory with an ``index.h5``) and ``shard`` (one ``.h5`` store file). Each field of
view gets a stable, readable output name from :func:`shard_name`.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path
from typing import Sequence

from anomalousnet.io.store import INDEX_NAME, SHARD_SUFFIX, store_dir

VIDEO_SUFFIXES = (".tif", ".tiff")
CSV_SUFFIXES = (".csv",)
KINDS = ("video", "csv", "store", "shard")
_DESCRIPTION = {"video": "TIFF video (.tif/.tiff)", "csv": "AnDi-style CSV (.csv)",
                "store": f"store directory (with {INDEX_NAME})", "shard": "store shard (.h5)"}


def _kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if path.is_dir():
        return "store" if (store_dir(path) / INDEX_NAME).exists() else None
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in CSV_SUFFIXES:
        return "csv"
    return "shard" if suffix == SHARD_SUFFIX else None


def expand_inputs(patterns: Sequence[str], kinds: Sequence[str] = KINDS
                  ) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """Expand paths, folders and glob patterns into inputs by kind (only ``kinds``), in order and
    without duplicates. A folder that is not a store stands for its videos and CSVs (not recursive);
    a results folder stands for its store (``RESULTS/store``).
    Returns ``({kind: [paths]}, {input: problem})``: patterns that match nothing, missing paths
    and files of another kind are problems, named with the input."""
    found: dict[str, list[Path]] = {kind: [] for kind in kinds}
    failed: dict[str, str] = {}
    seen: set[Path] = set()
    wanted = " or ".join(_DESCRIPTION[k] for k in kinds)
    files = " or ".join(_DESCRIPTION[k] for k in kinds if k in ("video", "csv"))
    for pattern in patterns:
        pattern = str(pattern)
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            failed[pattern] = "pattern matches no file"
            continue
        for match in matches:
            path = Path(match)
            kind = _kind_of(path) if path.exists() else None
            if not path.exists():
                failed[str(path)] = "no such file or directory"
            elif path.is_dir() and kind not in kinds:
                inside = sorted(p for p in path.iterdir()
                                if not p.is_dir() and _kind_of(p) in kinds and _kind_of(p) in ("video", "csv"))
                if not inside:
                    failed[str(path)] = (f"directory holds no {files}" if files else "directory") + \
                        (f"{' and' if files else ''} has no store index ({INDEX_NAME})" if "store" in kinds else "")
                for p in inside:
                    if p.resolve() not in seen:
                        seen.add(p.resolve())
                        found[_kind_of(p)].append(p)
            elif kind not in kinds:
                failed[str(path)] = f"unknown input type {path.suffix!r}: expected a {wanted}"
            elif path.resolve() not in seen:
                path = store_dir(path) if kind == "store" else path  # a results folder: its store
                seen.add(path.resolve())
                found[kind].append(path)
    return found, failed


def shard_name(path: os.PathLike | str) -> str:
    """Stable, unique shard file name for an input: parent folder and stem (readable) + a hash
    of the absolute path. AnDi layouts repeat names in several folders (exp_0/videos_fov_0.tiff,
    exp_1/...), so the parent is part of the name and the hash keeps any two paths apart."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{path.parent.name}_{path.stem}").lstrip("._") or "fov"
    return f"{readable}-{digest}{SHARD_SUFFIX}"
