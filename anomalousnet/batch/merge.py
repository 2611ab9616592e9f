"""One set of tables for a run split over several results folders (the tasks of an `infer`
job array): ``segments.csv``, ``ensemble.csv`` and ``zones.csv`` concatenated in task order,
and one ``summary.json`` (written, kept and failed inputs of every task, seconds summed)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from anomalousnet.core.errors import InputError
from anomalousnet.io.atomic import atomic_path, write_text

TABLES = ("segments.csv", "ensemble.csv")
OPTIONAL_TABLES = ("zones.csv",)  # merged when every folder has it (results of earlier versions do not)


class MergeError(InputError):
    """A results folder that cannot be merged (named, with the problem)."""


def merge_results(folders: Sequence[os.PathLike | str], out_dir: os.PathLike | str) -> dict[str, Path]:
    """Write ``out_dir/segments.csv``, ``ensemble.csv``, ``zones.csv`` (when every folder has
    one) and ``summary.json`` from the results ``folders`` (in the order given). A folder
    without a table, or tables of other columns (another version, other units), is an error
    naming it; nothing is written then."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise MergeError(Path(out_dir), "no results folder to merge")
    tables = TABLES + tuple(n for n in OPTIONAL_TABLES if any((f / n).is_file() for f in folders))
    headers = {}
    for folder in folders:
        for name in tables:
            path = folder / name
            if not path.is_file():
                raise MergeError(path, "missing: did this task finish?")
            with open(path) as f:
                header = f.readline()
            if headers.setdefault(name, header) != header:
                raise MergeError(path, f"columns differ from {folders[0] / name}")
    out_dir = Path(out_dir)
    written = {}
    for name in tables:
        with atomic_path(out_dir / name) as tmp, open(tmp, "w") as out:
            out.write(headers[name])
            for folder in folders:
                with open(folder / name) as f:
                    f.readline()
                    out.writelines(f)
        written[name] = out_dir / name
    summary = {"out": str(out_dir), "tasks": [str(f) for f in folders], "written": [], "kept": [], "failed": {},
               "seconds": {}}
    for folder in folders:
        path = folder / "summary.json"
        part = json.loads(path.read_text()) if path.is_file() else {}
        summary["written"] += part.get("written", [])
        summary["kept"] += part.get("kept", [])
        summary["failed"].update(part.get("failed", {}))
        for stage, seconds in part.get("seconds", {}).items():
            summary["seconds"][stage] = round(summary["seconds"].get(stage, 0.0) + seconds, 3)
    written["summary.json"] = write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return written
