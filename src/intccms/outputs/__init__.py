"""Outputs: histograms (pickle + ROOT), plots, run summary and report, provenance."""
