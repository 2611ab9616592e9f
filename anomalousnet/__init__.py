"""AnomalousNet batch suite: anomalous-diffusion parameters and change points from SPT data.

The Python API, in trackpy's style, works on DataFrames with ``particle, frame, x, y``::

    import anomalousnet
    tracks = anomalousnet.track("movie.tif")                      # trackpy locate + link
    points, segments, ensemble = anomalousnet.analyse(tracks)     # alpha, K, state, change points
    per_frame = anomalousnet.predict(tracks)                      # the networks' values only

See :mod:`anomalousnet.api`. The batch commands (``anomalousnet-batch``) build on the same library.
"""

__version__ = "0.1.0"
__all__ = ["analyse", "predict", "track", "__version__"]


def __getattr__(name):
    # The API pulls in pandas, scipy and ruptures: imported on first use, so that
    # `import anomalousnet` (and the command line's --help) stays fast.
    if name in ("analyse", "predict", "track"):
        from anomalousnet import api

        return getattr(api, name)
    raise AttributeError(f"module 'anomalousnet' has no attribute {name!r}")
