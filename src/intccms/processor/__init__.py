"""Bring your own analysis: a coffea processor run on every chunk of the configured datasets.

``config`` types the ``processor`` group, ``loader`` imports and checks the class at start-up,
``task`` runs ``process()`` on one chunk (NanoEvents in virtual mode through the storage layer)
and ``accumulators`` checks what it returns, ``merge`` adds outputs on the workers in a
fixed-shape tree, ``stage`` drives both through the runner, ``outputs`` writes
``output.coffea`` and the histograms as ROOT, ``job`` is the workflow inside the job. Only
``config`` is imported by the analysis workflow (coffea is imported only where a processor runs).
"""
