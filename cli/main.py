"""``anomalousnet-batch``: the command group. Subcommands load lazily so ``--help`` stays fast
(TensorFlow is imported only by the commands that need it)."""
from __future__ import annotations

import importlib
import logging
import os

import click

from anomalousnet import __version__

# command name -> ("module:attribute" inside this package, its one-line help). One module per
# command (group); the help lines are here so that `--help` lists the commands without
# importing them (tests check they match the commands' own).
COMMANDS = {
    "andi": ("anomalousnet_cli.andi_cmd:andi",
             "2nd AnDi Challenge (2024): write submissions from public data, score them officially."),
    "benchmark": ("anomalousnet_cli.benchmark_cmd:benchmark",
                  "Side by side on seeded AnDi-2 style data: the built-in model, a classical baseline and a naive "
                  "one, by the official scorer."),
    "infer": ("anomalousnet_cli.infer_cmd:infer",
              "The main job: track (videos) -> predict -> change points -> ensemble -> write."),
    "info": ("anomalousnet_cli.info_cmd:info",
             "What this installation offers: versions, devices, Horovod's build, the built-in model."),
    "merge": ("anomalousnet_cli.infer_cmd:merge",
              "Merge the results folders of an infer job array into one set of tables."),
    "segment": ("anomalousnet_cli.infer_cmd:segment", "Change points alone, on stores that already hold predictions."),
    "simulate": ("anomalousnet_cli.simulate_cmd:simulate",
                 "Simulate trajectories with andi-datasets (the 2nd AnDi Challenge simulator)."),
    "store": ("anomalousnet_cli.store_cmd:store", "Inspect and validate HDF5 trajectory, training and results stores."),
    "track": ("anomalousnet_cli.track_cmd:track",
              "Track particles in TIFF/OME-TIFF videos (trackpy) into a trajectory store, one shard per video."),
    "train": ("anomalousnet_cli.train_cmd:train",
              "Train alpha/K/state networks; runs distributed when started by horovodrun (one rank per "
              "process/GPU)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anomalousnet-batch")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Anomalous-diffusion parameters and change points from single-particle videos, in batch.

    Pipeline (AnomalousNet, arXiv 2504.05271): track -> displacements -> Attention U-Nets
    (alpha, K, state per frame) -> change points -> per-segment values and ensembles.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("anomalousnet").setLevel(level)
    # Dask's scheduler runs in this process and distributed sets its loggers to INFO when
    # imported (from dask's config); only -vv shows that.
    if verbose < 2:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if verbose:  # TensorFlow's own start-up lines too (filtered by default: networks/backend.py)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
