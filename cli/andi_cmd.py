"""``anomalousnet-batch andi``: 2nd AnDi Challenge submissions and official scoring."""
from __future__ import annotations

import sys

import click


@click.group()
def andi() -> None:
    """2nd AnDi Challenge (2024): write submissions from public data, score them officially."""


@andi.command()
@click.option("--sub", "sub_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Submission folder (track_T/exp_E/fov_F.txt, ensemble_labels.txt).")
@click.option("--ref", "ref_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Reference folder (track_T/exp_E/traj_labs_fov_F.txt, ensemble_labels.txt, vip_idx_fov_F.txt).")
@click.option("--tracks", type=click.Choice(["1", "2"]), multiple=True,
              help="Tracks to score (repeatable; default: every track of the reference).")
@click.option("--no-ensemble", is_flag=True, help="Skip the ensemble task (about 1 s per experiment).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def score(sub_dir: str, ref_dir: str, tracks: tuple[str, ...], no_ensemble: bool, as_json: bool) -> None:
    """Score a submission with the official metrics (andi_datasets.utils_challenge), overall and
    per experiment. Missing or malformed submission files and lines are listed and left out of
    the scores (the official scorer would give them maximum error silently); exit status 1 then."""
    from anomalousnet.andi import scoring
    from anomalousnet.io.andi_files import AndiFormatError

    try:
        report = scoring.score(sub_dir, ref_dir, [int(t) for t in tracks] or None, ensemble=not no_ensemble)
    except AndiFormatError as exc:
        raise click.ClickException(f"bad reference: {exc}") from None
    click.echo(report.to_json() if as_json else scoring.format_table(report))
    if report.problems:
        click.echo(f"INCOMPLETE: {len(report.problems)} problem(s) in {sub_dir}; see the list above", err=True)
        sys.exit(1)


@andi.command()
@click.option("--public", "public_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Public data (track_2/exp_E/trajs_fov_F.csv; track_1/exp_E/videos_fov_F.tiff + vip_idx_fov_F.txt).")
@click.option("--out", "sub_dir", required=True, type=click.Path(file_okay=False), help="Submission folder to write.")
@click.option("--tracks", type=click.Choice(["1", "2"]), multiple=True, help="Tracks to run (default: 1 and 2).")
@click.option("--method", type=click.Choice(["model", "classical", "naive"]), default="model", show_default=True,
              help="model: the AnomalousNet pipeline; classical / naive: the baselines.")
@click.option("--model", "model_spec", default="default", show_default=True,
              help="Model bundle: 'default' (built in) or a bundle directory.")
@click.option("--tracks-store", type=click.Path(file_okay=False), default=None,
              help="Track 1: keep the videos' trajectory shards here (reused on a re-run); default: a temporary folder.")
@click.option("--workers", type=int, default=None, help="Track 1: videos tracked in parallel (default: all CPUs).")
def run(public_dir: str, sub_dir: str, tracks: tuple[str, ...], method: str, model_spec: str,
        tracks_store: str | None, workers: int | None) -> None:
    """Write a submission the official scorer accepts: a line for every trajectory (track 2) or
    exactly the VIPs (track 1), and ensemble_labels.txt per experiment. Trajectories the method
    cannot handle get a fallback line; their number is reported. A video that cannot be tracked
    (or a field of view the method fails on) is named and the exit status is 1, after the whole
    submission is written."""
    from anomalousnet.andi.methods import write_submission

    try:
        summary = write_submission(public_dir, sub_dir, method, model_spec, [int(t) for t in tracks] or [1, 2],
                                   tracks_store, workers)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    trajectories, fallback = summary.counts.get("trajectories", {}), summary.counts.get("fallback", {})
    for track in sorted(trajectories):
        click.echo(f"track {track}: {trajectories[track]} trajectory lines, {fallback.get(track, 0)} fallback, "
                   f"{summary.seconds.get(track, 0.0):.1f} s")
    for reason, n in sorted(summary.counts.get("fallback_reasons", {}).items()):
        click.echo(f"  fallback: {n} x {reason}")
    click.echo(f"wrote {len(summary.written)} files under {sub_dir}")
    if summary.failed:
        for what, why in summary.failed.items():
            click.echo(f"FAILED {what}: {why}", err=True)
        click.echo(f"{len(summary.failed)} input(s) failed; their trajectories have fallback lines", err=True)
        sys.exit(1)
