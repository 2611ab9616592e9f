"""File formats, each with its one reader and writer: the HDF5 store, videos, the AnDi-2 files; atomic writes."""
