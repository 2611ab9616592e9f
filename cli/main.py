"""``anomalousnet-batch``: the command group. Subcommands load lazily so ``--help`` stays fast
(TensorFlow is imported only by the commands that need it)."""
from __future__ import annotations

import importlib
import logging
import os

import click

from anomalousnet import __version__

# command name -> "module:attribute" inside this package; one module per command (group).
COMMANDS = {
    "store": "anomalousnet_cli.store_cmd:store",
    "infer": "anomalousnet_cli.infer_cmd:infer",
    "segment": "anomalousnet_cli.infer_cmd:segment",
    "simulate": "anomalousnet_cli.simulate_cmd:simulate",
    "andi": "anomalousnet_cli.andi_cmd:andi",
    "benchmark": "anomalousnet_cli.benchmark_cmd:benchmark",
    "train": "anomalousnet_cli.train_cmd:train",
    "track": "anomalousnet_cli.track_cmd:track",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


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
