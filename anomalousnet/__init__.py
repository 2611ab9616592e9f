"""AnomalousNet batch suite: anomalous-diffusion parameters and change points from SPT data."""

__version__ = "0.1.0"
