"""Running one task per work item on the Dask cluster: retries, bad-file handling, progress.

Shared by every stage that sends work to the workers (the job's stages, the classifier's
training set, coffea processors), so it sits below all of them and imports none of them.
"""
