"""Physics: objects, selections, observables, corrections and variations.

Pure functions on awkward and numpy arrays. Nothing here knows about Dask, storage or
configuration files: the pipeline receives columns and returns histograms' contents.
"""
