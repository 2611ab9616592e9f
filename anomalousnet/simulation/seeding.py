"""Reproducible simulation: seeds derived from a master seed, applied to every generator
andi-datasets draws from, one simulation at a time per process."""
from __future__ import annotations

import random
import threading
import warnings

import numpy as np

# andi-datasets uses global generators: one shard or FOV at a time per process.
SEED_LOCK = threading.Lock()


def seed_for(seed: int, *keys: int) -> int:
    """A seed that depends only on the master seed and the integer keys (e.g. shard; experiment, FOV)."""
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in keys)).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed every generator andi-datasets draws from: numpy's global one (also used by
    scipy.stats), ``random``, and the ``stochastic`` package's own generator (fBm noise)."""
    import stochastic.random

    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    stochastic.random.seed(seed)


class quiet:
    """Silence the simulator's warnings inside a ``with`` block."""

    def __enter__(self):
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
