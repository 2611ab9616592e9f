"""Report figures: one PNG per field of view from its results shard, readable on its own.

* Top row: histograms of the segments' alpha and K (log axis; um^2/s^alpha when the run had
  both scales, else px^2/frame^alpha), one colour per predicted state, each segment counted
  by its frames; segments left out of the ensemble (fallback or short trajectories) are not.
* Middle row: the longest trajectories, each path coloured frame by frame by the state of
  its segment, change points as black crosses, labels beside the paths. For a video input:
  its first frame with that frame's detections circled, and its maximum projection with
  every trajectory drawn over it (to check tracking at a glance, as trackpy's ``annotate``);
  the tracking parameters used are in the title.
* Bottom row: one panel per trajectory of the middle row: the networks' alpha(t) (thin
  line), each segment's alpha (thick steps, coloured by state), change points (dashed),
  on the absolute alpha axis 0-2.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io import store as st
from anomalousnet.io.atomic import atomic_path

STATE_COLOURS = ("#7f7f7f", "#1f77b4", "#2ca02c", "#d62728")
N_EXAMPLES = 4


def _video_panels(shard: st.Shard, ax_first, ax_max) -> str | None:
    """First frame with its detections, and the maximum projection with all trajectories;
    returns a line of tracking parameters, or None when the source is not a readable video."""
    from anomalousnet.io.video import Video

    source = Path(str(shard.attrs.get("source_path", "")))
    if source.suffix.lower() not in (".tif", ".tiff") or not source.exists():
        return None
    try:
        with Video(source) as video:
            n = video.n_frames
            first = np.asarray(video.frames(0, 1)[0], np.float64)
            projection = first.copy()
            for t in np.unique(np.linspace(0, n - 1, min(n, 200)).astype(int)):  # at most 200 frames read
                projection = np.maximum(projection, video.frames(int(t), int(t) + 1)[0])
    except Exception:  # noqa: BLE001 - a moved or damaged video: the figure is drawn without it
        return None
    traj = shard.trajectories
    frame = np.asarray(traj.points["frame"])
    observed = ~np.asarray(traj.points.get("interpolated", np.zeros(len(frame), bool)), bool)
    at0 = (frame == frame.min()) & observed
    ax_first.imshow(first, cmap="gray", origin="upper")
    ax_first.scatter(traj.points["x"][at0], traj.points["y"][at0], s=80, facecolors="none", edgecolors="#ff7f0e",
                     linewidths=1, label=f"detections ({int(at0.sum())})")
    ax_first.legend(loc="upper right", fontsize=7)
    ax_first.set_title("first frame, its detections circled", fontsize=9)
    ax_max.imshow(projection, cmap="gray", origin="upper")
    for i in range(traj.n_tracks):
        t = traj.track(i)
        ax_max.plot(t["x"], t["y"], lw=0.6)
    ax_max.set_title(f"maximum projection, all {traj.n_tracks} trajectories", fontsize=9)
    for ax in (ax_first, ax_max):
        ax.set_xticks([])
        ax.set_yticks([])
    tracks_path = shard.attrs.get("tracks_path")
    if not tracks_path or not Path(tracks_path).exists():
        return ""
    a = st.read_attrs(tracks_path)
    parts = [f"{name} {a[key]:.3g}" for name, key in (("diameter", "track_diameter"), ("minmass", "track_minmass"),
                                                       ("search range", "track_search_range"),
                                                       ("separation", "track_separation"),
                                                       ("localisation precision", "localisation_precision_px"))
             if key in a]
    return "tracking: " + ", ".join(parts) + (f", spot model {a['track_spot_model']}" if "track_spot_model" in a else "")


def fov_figure(shard: st.Shard, path: os.PathLike | str, n_examples: int = N_EXAMPLES) -> Path:
    """Draw the report figure of one results shard into ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from anomalousnet.batch.tables import finite, physical_K

    path = Path(path)
    traj, seg = shard.trajectories, shard.tables.get("segments")
    if seg is None or "pred_alpha" not in traj.points:
        raise st.StoreError(shard.path, "no predictions or segments table: not a results shard")
    counted = np.asarray(seg.get("in_ensemble", np.ones(len(seg["start"]), bool)), bool)
    frames = (seg["end"] - seg["start"]).astype(np.float64)
    units = [finite(shard.attrs.get(k)) for k in ("pixel_size_um", "frame_interval_s")]
    K = np.asarray(seg["K"], np.float64)
    K_label = "K (px^2/frame^alpha)"
    if all(units):  # both scales known (and not 0)
        K, K_label = physical_K(K, seg["alpha"], *units), "K (um^2/s^alpha)"
    fig = plt.figure(figsize=(13, 17), constrained_layout=True)
    grid = fig.add_gridspec(4, n_examples, height_ratios=[1, 1.3, 0.8, 1.6])
    ax_alpha, ax_K = fig.add_subplot(grid[0, :n_examples // 2]), fig.add_subplot(grid[0, n_examples // 2:])
    present = [s for s in range(len(STATE_NAMES)) if np.any(counted & (seg["state"] == s))]
    K_bins = np.logspace(np.log10(max(K[counted].min(), 1e-6)) - 0.1, np.log10(max(K[counted].max(), 1e-6)) + 0.1,
                         40) if counted.any() else 10
    for ax, values, label, bins in ((ax_alpha, seg["alpha"], "alpha (per segment)", np.linspace(0, 2, 41)),
                                    (ax_K, K, K_label + " (per segment)", K_bins)):
        if present:
            ax.hist([values[counted & (seg["state"] == s)] for s in present], bins=bins, stacked=True,
                    weights=[frames[counted & (seg["state"] == s)] for s in present],
                    color=[STATE_COLOURS[s] for s in present], label=[STATE_NAMES[s] for s in present])
            ax.legend(title="predicted state")
        ax.set_xlabel(label)
        ax.set_ylabel("frames")
    ax_K.set_xscale("log")
    left_out = int((~counted).sum())
    ax_alpha.set_title(f"{int(counted.sum())} segments in the ensemble" +
                       (f" ({left_out} of fallback or short trajectories left out)" if left_out else ""), fontsize=9)

    if shard.attrs.get("tracks_path"):  # tracked from a video
        ax_xy = fig.add_subplot(grid[1, :n_examples // 2])
        tracking = _video_panels(shard, fig.add_subplot(grid[1, n_examples // 2]),
                                 fig.add_subplot(grid[1, n_examples // 2 + 1:]))
    else:
        ax_xy, tracking = fig.add_subplot(grid[1, :]), None
    longest = np.argsort(-traj.lengths, kind="stable")[:n_examples]
    shift = 0.0
    for rank, i in enumerate(longest):
        t = traj.track(int(i))
        particle = traj.tracks["particle"][i]
        mine = seg["particle"] == particle
        cps = seg["start"][mine][1:]
        state = np.repeat(seg["state"][mine], seg["end"][mine] - seg["start"][mine])  # the state reported
        # each path centred on its own start and laid out side by side, so all are visible
        x, y = t["x"] - t["x"][0], t["y"] - t["y"][0]
        x = x - x.min() + shift
        shift = x.max() + 0.25 * max(np.ptp(x), np.ptp(y), 1.0)
        ax_xy.plot(x, y, lw=0.4, color="k", alpha=0.3)
        ax_xy.scatter(x, y, s=4, c=[STATE_COLOURS[int(s) % 4] for s in state])
        ax_xy.scatter(x[cps], y[cps], marker="x", s=40, color="k")
        ax_xy.annotate(f"particle {particle}", (x.min(), y.max()), xytext=(0, 6), textcoords="offset points",
                       fontsize=8)  # above the path, not on it
        ax_t = fig.add_subplot(grid[2, rank])
        ax_t.plot(np.arange(len(x)), t["pred_alpha"], lw=0.6, color="0.5")
        for a, b, s, value in zip(seg["start"][mine], seg["end"][mine], seg["state"][mine], seg["alpha"][mine]):
            ax_t.plot([a, b - 1], [value, value], lw=3, color=STATE_COLOURS[int(s) % 4], solid_capstyle="butt")
        for c in cps:
            ax_t.axvline(c, color="k", lw=0.8, ls="--")
        ax_t.set_ylim(0, 2)
        ax_t.set_title(f"particle {particle}", fontsize=9)
        ax_t.set_xlabel("frame in trajectory")
        if rank == 0:
            ax_t.set_ylabel("alpha")
            ax_t.legend(handles=[Line2D([], [], color="0.5", lw=0.6, label="networks' alpha(t)"),
                                 Line2D([], [], color="k", lw=3, label="segment alpha (state colour)"),
                                 Line2D([], [], color="k", lw=0.8, ls="--", label="change point")],
                        fontsize=7, loc="upper left")
    ax_xy.legend(handles=[Line2D([], [], ls="", marker="o", ms=4, color=STATE_COLOURS[s], label=STATE_NAMES[s])
                          for s in range(len(STATE_NAMES))] +
                 [Line2D([], [], ls="", marker="x", color="k", label="change point")], fontsize=7, loc="best")
    ax_xy.set_xlabel("x (px from each start; paths side by side)")
    ax_xy.set_ylabel("y (px from each start)")
    ax_xy.set_title(f"the {len(longest)} longest trajectories, coloured by their segments' state", fontsize=9)
    _zone_map(fig.add_subplot(grid[3, :]), traj, seg, shard.tables.get("zones"))
    title = (f"{Path(str(shard.attrs.get('source_path', shard.path))).name}: {traj.n_tracks} trajectories, "
             f"{len(seg['start'])} segments")
    fig.suptitle(title + (f"\n{tracking}" if tracking else ""))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _zone_map(ax, traj, seg, zones) -> None:
    """The whole field of view: every trajectory, its points coloured by their segment's state,
    and the zones of the field-of-view stage (confinement: blue circles, traps: grey)."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle

    state = np.zeros(traj.n_points, np.int64)
    row_of = {p: i for i, p in enumerate(traj.tracks["particle"].tolist())}
    for p, a, b, s in zip(seg["particle"].tolist(), seg["start"], seg["end"], seg["state"]):
        o = traj.offsets[row_of[p]]
        state[o + a:o + b] = s
    x, y = np.asarray(traj.points["x"]), np.asarray(traj.points["y"])
    ax.add_collection(LineCollection([np.column_stack([x[a:b], y[a:b]]) for a, b in
                                      zip(traj.offsets[:-1], traj.offsets[1:])], lw=0.3, color="k", alpha=0.25))
    ax.scatter(x, y, s=1.5, c=[STATE_COLOURS[int(s) % 4] for s in state], linewidths=0)
    n = 0 if zones is None else len(zones["x"])
    for i in range(n):
        colour = STATE_COLOURS[1] if zones["kind"][i] == "confinement" else STATE_COLOURS[0]
        ax.add_patch(Circle((zones["x"][i], zones["y"][i]), zones["radius"][i], fill=False, lw=1.2, color=colour))
    kinds = [] if zones is None else list(zones["kind"])
    ax.set_title(f"field of view: every trajectory by state; zones found: {kinds.count('confinement')} "
                 f"confinement (blue circles), {kinds.count('trap')} trap (grey)", fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
