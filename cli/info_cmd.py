"""``anomalousnet-batch info``: versions, devices, Horovod's build, a built-in model check."""
from __future__ import annotations

import sys

import click


@click.command()
@click.option("--require-gpu", is_flag=True, help="Exit 1 unless the networks' backend sees a GPU.")
@click.option("--no-model-check", is_flag=True, help="Skip loading and running the built-in model.")
def info(require_gpu: bool, no_model_check: bool) -> None:
    """What this installation offers: versions, devices, Horovod's build, the built-in model."""
    from anomalousnet.environment import describe

    lines, problems = describe(require_gpu=require_gpu, check_model=not no_model_check)
    for line in lines:
        click.echo(line)
    for problem in problems:
        click.echo(f"ERROR: {problem}", err=True)
    sys.exit(1 if problems else 0)
