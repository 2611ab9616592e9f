"""Particle tracking of videos with trackpy: per video to a DataFrame (and a shard), many videos on Dask, accuracy metrics."""
