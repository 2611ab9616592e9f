"""``anomalousnet-batch store``: inspect and validate HDF5 stores."""
from __future__ import annotations

import sys

import click

from anomalousnet.io import store as st
from anomalousnet_cli.inputs import input_options


@click.group()
def store() -> None:
    """Inspect and validate HDF5 trajectory, training and results stores."""


@store.command()
@input_options("store directories or shard files")
def validate(inputs: list[str]) -> None:
    """Validate store directories or single shard files against the schema (exit 1 if any fails)."""
    from anomalousnet.batch.inputs import expand_inputs

    found, problems = expand_inputs(inputs, kinds=("store", "shard"))
    paths = [str(p) for kind in ("store", "shard") for p in found[kind]]
    for name, problem in problems.items():
        click.echo(f"INVALID {name}: {problem}", err=True)
    failed = len(problems)
    for path in paths:
        try:
            result = st.validate_path(path)
        except st.StoreError as exc:
            click.echo(f"INVALID {exc}", err=True)
            failed += 1
            continue
        if isinstance(result, st.StoreIndex):
            click.echo(f"ok {path}: {result.kind} store, {len(result.shard_names)} shards, "
                       f"{int(result.n_tracks.sum())} tracks, {int(result.n_points.sum())} points")
        else:
            t = result.trajectories
            click.echo(f"ok {path}: {result.attrs['kind']} shard, {t.n_tracks} tracks, {t.n_points} points")
    if failed:
        click.echo(f"{failed} of {len(paths) + len(problems)} failed validation", err=True)
        sys.exit(1)


@store.command()
@click.argument("path", type=click.Path(exists=True))
def info(path: str) -> None:
    """Print a shard's or store's provenance attributes."""
    try:
        result = st.validate_path(path)
    except st.StoreError as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in sorted(result.attrs.items()):
        click.echo(f"{key}: {value}")
