"""``anomalousnet-batch simulate``: labelled training stores and AnDi-2 style datasets."""
from __future__ import annotations

import sys

import click

from anomalousnet.core.names import MODEL_NAMES


@click.group()
def simulate() -> None:
    """Simulate trajectories with andi-datasets (the 2nd AnDi Challenge simulator)."""


def _weights(ctx, param, values):
    weights = {}
    for value in values:
        name, sep, w = value.partition("=")
        try:
            if not sep or name not in MODEL_NAMES:
                raise ValueError
            weights[name] = float(w)
        except ValueError:
            raise click.BadParameter(f"{value!r}: expected MODEL=WEIGHT with MODEL one of {', '.join(MODEL_NAMES)}")
    return weights or None


@simulate.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Store directory to write (resumed if it exists).")
@click.option("--n", "n", required=True, type=click.IntRange(min=1), help="Number of trajectories.")
@click.option("--seed", required=True, type=int, help="Master seed; shard i uses a seed derived from (seed, i).")
@click.option("--models", default=",".join(MODEL_NAMES), show_default=True,
              help="Comma-separated models to simulate.")
@click.option("--model-weight", "model_weights", multiple=True, callback=_weights, metavar="MODEL=W",
              help="Relative share of a model (repeatable; default immobile_traps=2, confinement=2, others 1).")
@click.option("--directed-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="Probability that a mobile state is directed (alpha >= 1.9, state 3).")
@click.option("--length", default=200, show_default=True, type=click.IntRange(min=3),
              help="Frames simulated per trajectory.")
@click.option("--min-length", default=20, show_default=True, type=click.IntRange(min=3),
              help="Tracks are cropped to a random window of min-length..length frames.")
@click.option("--noise", nargs=2, type=float, default=(0.0, 0.25), show_default=True, metavar="LO HI",
              help="Localisation noise sigma range, px (challenge: 0.12).")
@click.option("--alpha-range", nargs=2, type=float, default=(0.02, 1.9), show_default=True, metavar="LO HI",
              help="Anomalous exponent of non-directed mobile states (challenge: 0.2..1.5).")
@click.option("--D-range", "D_range", nargs=2, type=float, default=(1e-3, 10.0), show_default=True, metavar="LO HI",
              help="D of the fast state, px^2/frame^alpha, log-uniform (challenge defaults: 1).")
@click.option("--slow-ratio", nargs=2, type=float, default=(3e-3, 0.3), show_default=True, metavar="LO HI",
              help="D of slower states as a fraction of the fast one, log-uniform (challenge: 0.01..0.1).")
@click.option("--shard-size", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Trajectories per shard (one Dask task each).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Local Dask worker processes (default: all CPUs; 0: run in this process).")
@click.option("--scheduler-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Use the Dask cluster of this scheduler file instead of a local one.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def trajectories(out, n, seed, models, model_weights, directed_fraction, length, min_length, noise, alpha_range,
                 D_range, slow_ratio, shard_size, workers, scheduler_file, no_progress) -> None:
    """Write a training store of labelled trajectories (alpha, K, state per frame).

    Example: anomalousnet-batch simulate trajectories --out train/ --n 100000 --seed 1
    """
    from anomalousnet.simulation import training_store as sim

    try:
        config = sim.SimulationConfig(length=length, min_length=min_length,
                                      models=tuple(m.strip() for m in models.split(",") if m.strip()),
                                      model_weights=model_weights, directed_fraction=directed_fraction,
                                      noise_range=tuple(noise), alpha_range=tuple(alpha_range),
                                      D_range=tuple(D_range), slow_ratio_range=tuple(slow_ratio))
        summary = sim.simulate_training(out, n, seed, config, shard_size=shard_size, workers=workers,
                                        scheduler_file=scheduler_file, progress=not no_progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{out}: {len(summary.written)} shards written, {len(summary.kept)} kept from an earlier run, "
               f"{len(summary.failed)} failed")
    click.echo(sim.format_counts(summary.counts))
    if summary.failed:
        for name, error in sorted(summary.failed.items()):
            click.echo(f"FAILED {name}: {error}", err=True)
        click.echo("re-run the same command to redo the failed shards (the index is written when all are complete)",
                   err=True)
        sys.exit(1)


@simulate.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Dataset directory (public/ + ref/).")
@click.option("--seed", required=True, type=int, help="Master seed (experiment and FOV seeds derive from it).")
@click.option("--experiments", default="5", show_default=True,
              help="Number of experiments (models cycled in the challenge's order), or comma-separated model "
                   "names or numbers 1..5.")
@click.option("--fovs", default=1, show_default=True, type=click.IntRange(min=1), help="FOVs per experiment.")
@click.option("--videos", is_flag=True, help="Also track 1: videos (TIFF) and VIP indices (needs the video extra).")
@click.option("--num-vip", default=10, show_default=True, type=click.IntRange(1, 254), help="VIPs per FOV video.")
@click.option("--length", default=200, show_default=True, type=click.IntRange(min=21), help="Frames per FOV.")
@click.option("--particles", default=None, type=click.IntRange(min=1), help="Particles per experiment (default 50).")
@click.option("--noise", default=0.12, show_default=True, type=click.FloatRange(min=0),
              help="Localisation noise sigma of the CSV positions, px.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Local Dask worker processes, one FOV per task (0: run in this process).")
@click.option("--scheduler-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Use the Dask cluster of this scheduler file.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def andi(out, seed, experiments, fovs, videos, num_vip, length, particles, noise, workers, scheduler_file,
         no_progress) -> None:
    """Write a dataset in the 2nd AnDi Challenge layout, simulated by challenge_phenom_dataset.

    public/track_2/exp_E/trajs_fov_F.csv (and with --videos public/track_1/exp_E/videos_fov_F.tiff,
    vip_idx_fov_F.txt); ref/track_T/exp_E/ holds the labels the official scorer reads.

    Example: anomalousnet-batch simulate andi --out andi/ --seed 1 --experiments 5 --fovs 2 --videos
    """
    from anomalousnet.simulation import andi_dataset as sim

    exps = int(experiments) if experiments.strip().isdigit() else [e.strip() for e in experiments.split(",") if e.strip()]
    try:
        summary = sim.simulate_andi(out, seed, experiments=exps, fovs=fovs, videos=videos, num_vip=num_vip,
                                    length=length, particles=particles, noise=noise, workers=workers,
                                    scheduler_file=scheduler_file, progress=not no_progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    n = sum(r["trajectories"] for r in summary.info["results"].values())
    models = summary.info["models"]
    click.echo(f"{out}: {len(models)} experiments ({', '.join(models)}), "
               f"{len(summary.written)} FOVs written ({n} trajectories), {len(summary.kept)} kept from an earlier "
               f"run, {len(summary.failed)} failed")
    if summary.failed:
        for name, error in sorted(summary.failed.items()):
            click.echo(f"FAILED {name}: {error}", err=True)
        sys.exit(1)
