"""The one base class of "this input is bad" errors: each names the offending path and the problem."""
from __future__ import annotations

import os


class InputError(ValueError):
    """A file or folder cannot be used; ``path`` names it, ``problem`` says what is wrong.

    Picklable, so the message survives a trip from a Dask worker. Subclasses (one per kind
    of input: store, trajectory file, video, AnDi-2 file, model bundle, tracking, training
    data) only give the kind a name to catch.
    """

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)
