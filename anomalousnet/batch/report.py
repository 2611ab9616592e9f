"""Report figures: one PNG per field of view from its results shard.

Top row: histograms of the segments' alpha and log10 K, one colour per predicted state,
each segment counted by its number of frames. Bottom row: a few of the longest
trajectories, their path coloured frame by frame by predicted state with change points
marked (black crosses), and their predicted alpha(t) with change points as vertical lines.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io import store as st
from anomalousnet.io.atomic import atomic_path

STATE_COLOURS = ("#7f7f7f", "#1f77b4", "#2ca02c", "#d62728")


def fov_figure(shard: st.Shard, path: os.PathLike | str, n_examples: int = 4) -> Path:
    """Draw the report figure of one results shard into ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path = Path(path)
    traj, seg = shard.trajectories, shard.tables.get("segments")
    if seg is None or "pred_alpha" not in traj.points:
        raise st.StoreError(shard.path, "no predictions or segments table: not a results shard")
    frames = (seg["end"] - seg["start"]).astype(np.float64)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    logk = np.log10(np.maximum(seg["K"].astype(np.float64), 1e-6))
    for ax, values, label, bins in ((axes[0, 0], seg["alpha"], "alpha (per segment)", np.linspace(0, 2, 41)),
                                    (axes[0, 1], logk, "log10 K (px^2/frame^alpha, per segment)", 40)):
        present = [s for s in range(len(STATE_NAMES)) if np.any(seg["state"] == s)]
        if present:
            ax.hist([values[seg["state"] == s] for s in present], bins=bins, stacked=True,
                    weights=[frames[seg["state"] == s] for s in present],
                    color=[STATE_COLOURS[s] for s in present], label=[STATE_NAMES[s] for s in present])
            ax.legend(title="predicted state")
        ax.set_xlabel(label)
        ax.set_ylabel("frames")
    longest = np.argsort(-traj.lengths, kind="stable")[:n_examples]
    ax_xy, ax_t = axes[1, 0], axes[1, 1]
    shift = 0.0
    for rank, i in enumerate(longest):
        t = traj.track(int(i))
        particle = traj.tracks["particle"][i]
        mine = seg["particle"] == particle
        cps = seg["start"][mine][1:]
        # each path centred on its own start and laid out side by side, so all are visible
        x, y = t["x"] - t["x"][0], t["y"] - t["y"][0]
        state = np.repeat(seg["state"][mine], seg["end"][mine] - seg["start"][mine])  # the state reported
        x = x - x.min() + shift
        shift = x.max() + 0.2 * max(np.ptp(x), np.ptp(y), 1.0)
        ax_xy.plot(x, y, lw=0.4, color="k", alpha=0.3)
        ax_xy.scatter(x, y, s=4, c=[STATE_COLOURS[int(s) % 4] for s in state])
        ax_xy.scatter(x[cps], y[cps], marker="x", s=40, color="k")
        ax_xy.annotate(f"{particle}", (x[0], y[0]), fontsize=8)
        offset = 2.2 * rank  # stack the alpha(t) curves
        ax_t.plot(np.arange(len(x)), t["pred_alpha"] + offset, lw=1, label=f"particle {particle}")
        ax_t.vlines(cps, offset - 0.2, offset + 2.0, color="k", lw=0.8)
        ax_t.scatter(np.arange(len(x)), np.full(len(x), offset - 0.1), s=2,
                     c=[STATE_COLOURS[int(s) % 4] for s in state])
    ax_xy.set_xlabel("x (px, paths shifted side by side)")
    ax_xy.set_ylabel("y (px)")
    ax_xy.set_title("longest trajectories, coloured by segment state; x = change point")
    ax_t.set_xlabel("frame in trajectory")
    ax_t.set_ylabel("predicted alpha (offset by 2.2 per trajectory)")
    ax_t.set_title("alpha(t) with change points")
    fig.suptitle(f"{Path(str(shard.attrs.get('source_path', shard.path))).name}: {traj.n_tracks} trajectories, "
                 f"{len(seg['start'])} segments")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
