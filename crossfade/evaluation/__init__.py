"""Offline evaluation: splits, metrics, baselines and reports."""
