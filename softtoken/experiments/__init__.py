"""Experiment infrastructure: progress trackers, result files, sweeps."""
