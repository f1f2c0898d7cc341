"""Execution: cluster backends, the task runner, and the stages (metadata, skim, analysis)."""
