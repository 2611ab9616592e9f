"""``anomalousnet-batch store``: inspect and validate HDF5 stores."""
from __future__ import annotations

import sys

import click

from anomalousnet import store as st


@click.group()
def store() -> None:
    """Inspect and validate HDF5 trajectory, training and results stores."""


@store.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Validate store directories or single shard files against the schema (exit 1 if any fails)."""
    failed = 0
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
        click.echo(f"{failed} of {len(paths)} failed validation", err=True)
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
