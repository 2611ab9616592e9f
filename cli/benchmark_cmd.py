"""``anomalousnet-batch benchmark``: the model against two baselines on AnDi-2 style data."""
from __future__ import annotations

import click


@click.command(short_help="Side by side on seeded AnDi-2 style data: the built-in model, a classical "
                                  "baseline and a naive one, by the official scorer.")
@click.option("--quick", is_flag=True, help="Trajectories only (no videos).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every simulated dataset.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="build/benchmark", show_default=True,
              help="Folder for datasets (reused when present), submissions and benchmark.json.")
@click.option("--fovs", type=click.IntRange(min=1), default=None, help="FOVs per experiment [default: 6].")
@click.option("--model", "model_spec", default="default", show_default=True, help="Model bundle to benchmark.")
@click.option("--methods", default="model,classical,naive", show_default=True,
              help="Comma-separated methods to run.")
def benchmark(quick: bool, seed: int, out_dir: str, fovs: int | None, model_spec: str, methods: str) -> None:
    """Side by side on the same seeded AnDi-2 style data: the AnomalousNet pipeline, a classical
    baseline (ruptures + MSD fits) and a naive one, scored by the official scorer; prints one
    table (per method and track, per experiment, per-state recall, modality gap, throughput,
    change-point sensitivity, goals) and writes OUT/benchmark.json."""
    from anomalousnet.andi import benchmark as bm

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    try:
        options = bm.BenchmarkOptions(quick=quick, seed=seed, fovs=fovs, model=model_spec, methods=chosen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--methods") from None
    result = bm.run_benchmark(out_dir, options)
    click.echo(bm.format_report(result))
    click.echo(f"wrote {out_dir}/benchmark.json")
