"""The one record every batch command returns: what it wrote, kept from an earlier run, could not do and why."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path


@dataclasses.dataclass
class Summary:
    """What a batch command did.

    out: the folder or store written.
    written: outputs written by this run (paths, or e.g. (experiment, FOV) pairs).
    kept: complete outputs of an earlier run, kept (resume).
    failed: input -> why it could not be processed (the others were).
    seconds: wall time per stage.
    counts: numbers by what they count (e.g. trajectories per track, label counts).
    info: anything else worth reporting (e.g. the compute device, figures written).
    """

    out: Path | None = None
    written: list = dataclasses.field(default_factory=list)
    kept: list = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add_time(self, stage, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def add_count(self, name: str, key, n: int = 1) -> None:
        """Add ``n`` to ``counts[name][key]``."""
        group = self.counts.setdefault(name, {})
        group[key] = group.get(key, 0) + n

    def to_json(self) -> str:
        return json.dumps({"out": str(self.out), "written": [str(p) for p in self.written],
                           "kept": [str(p) for p in self.kept], "failed": self.failed,
                           "seconds": {str(k): round(v, 3) for k, v in self.seconds.items()},
                           "counts": self.counts, "info": self.info}, indent=2, default=str)
