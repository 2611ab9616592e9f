"""Names defined once: diffusive states, the andi-datasets models, prediction columns.

States are numbered as andi-datasets labels them (``models_phenom().lab_state``: immobile,
confined, free, directed); the networks' state head, the AnDi-2 files and every table use
these numbers.
"""
from __future__ import annotations

STATE_NAMES = ("immobile", "confined", "free", "directed")
N_STATES = len(STATE_NAMES)
IMMOBILE, CONFINED, FREE, DIRECTED = range(N_STATES)

#: The five phenomenological models of andi-datasets, in the package's own order
#: (``datasets_phenom().avail_models_name``; the 2nd AnDi Challenge numbers them 1..5).
MODEL_NAMES = ("single_state", "multi_state", "immobile_traps", "dimerization", "confinement")

#: The networks' heads.
TARGETS = ("alpha", "K", "state")

#: Per-point prediction columns: the three heads, then the probability of each state
#: (the state head's softmax, averaged over windows).
REQUIRED_PRED_COLUMNS = tuple(f"pred_{t}" for t in TARGETS)
STATE_PROB_COLUMNS = tuple(f"pred_p_{name}" for name in STATE_NAMES)
PRED_COLUMNS = REQUIRED_PRED_COLUMNS + STATE_PROB_COLUMNS
