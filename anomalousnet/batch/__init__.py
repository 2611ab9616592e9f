"""Batch orchestration: input expansion, Dask clusters, the main job (infer), results tables and report figures."""
