"""Simulated data from andi-datasets: training stores, AnDi-2 style datasets, synthetic videos."""
