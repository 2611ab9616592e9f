"""``anomalousnet-batch train``: train the Attention U-Nets on simulated training stores."""
from __future__ import annotations

import shlex
import sys

import click


@click.command()
@click.option("--data", "data", multiple=True, required=True, metavar="PATTERN",
              help="Training store directory, shard file, or glob of either (repeatable).")
@click.option("--target", type=click.Choice(["alpha", "K", "state", "all"]), default="all", show_default=True,
              help="Which head to train; `all` trains the three one after the other into one bundle.")
@click.option("--preset", type=click.Choice(["cpu", "paper"]), default="cpu", show_default=True,
              help="Network size: `paper` (AnomalousNet's filters, for GPUs) or `cpu` (the shipped default).")
@click.option("--epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Windows per step per rank (N Horovod ranks: N x this per step).")
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True,
              help="Adam learning rate for one rank (scaled by the number of ranks).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of each shard's tracks held out for validation.")
@click.option("--patience", type=click.IntRange(0), default=5, show_default=True,
              help="Early stopping: epochs without validation improvement (0: off).")
@click.option("--steps-per-epoch", type=click.IntRange(1), default=None, help="Cap on steps per epoch.")
@click.option("--max-windows", type=click.IntRange(1), default=None, help="Cap on training windows per rank.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mixed-precision", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="float16 compute (auto: on GPUs).")
@click.option("--class-weights", type=click.Choice(["none", "balanced", "sqrt"]), default="none", show_default=True,
              help="State head: weight rare states up (balanced: by inverse frequency; sqrt: its square root) "
                   "or the paper's plain cross-entropy (none).")
@click.option("--gaps", "gap_rate", type=click.FloatRange(0, 50, max_open=True), default=1.0, show_default=True,
              help="Simulated tracking gaps per 100 training frames (steps missing, as at frames video tracking "
                   "fills in); 0 for none.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model bundle directory to write.")
@click.option("--init", "init", default=None, metavar="BUNDLE",
              help="Start from this bundle's weights (`default`: the shipped model) to fine-tune it.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out (epoch and optimizer).")
@click.option("--evaluate-on", multiple=True, metavar="PATTERN",
              help="Held-out labelled store(s): measure the finished bundle there, record in model.json.")
@click.option("--made-by", default="", help="Free text recorded in model.json (e.g. the make target).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(data, target, preset, epochs, batch_size, learning_rate, val_fraction, patience, steps_per_epoch,
          max_windows, seed, mixed_precision, class_weights, gap_rate, init, out, resume, evaluate_on, made_by, progress) -> None:
    """Train alpha/K/state networks; runs distributed when started by horovodrun (one rank per process/GPU).

    \b
    anomalousnet-batch train --data sims/train --target all --preset cpu --epochs 20 --out mymodel
    horovodrun -np 4 -H localhost:4 anomalousnet-batch train --data 'sims/*' --preset paper --out big
    """
    from anomalousnet.io.store import StoreError
    from anomalousnet.networks import training as tr

    command = shlex.join(["anomalousnet-batch", *sys.argv[1:]])
    if made_by:
        command = f"{made_by}: {command}"
    try:
        config = tr.TrainConfig(target="alpha" if target == "all" else target, preset=preset, epochs=epochs,
                                batch_size=batch_size, learning_rate=learning_rate, val_fraction=val_fraction,
                                patience=patience, steps_per_epoch=steps_per_epoch, max_windows=max_windows,
                                seed=seed, mixed_precision=mixed_precision,
                                class_weights=class_weights, init=init, gap_rate=gap_rate)
        targets = ("alpha", "K", "state") if target == "all" else (target,)
        bundle = tr.train(list(data), out, config, targets=targets, resume=resume, command=command,
                          progress=progress, evaluate_on=list(evaluate_on) or None)
    except (tr.TrainingError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {bundle}")
    if evaluate_on:
        from anomalousnet.networks.bundle import read_meta

        overall = read_meta(bundle).get("evaluation", {}).get("overall", {})
        click.echo("held-out per-frame figures: " + ", ".join(
            f"{k} {v:.4g}" for k, v in overall.items() if isinstance(v, float)))
