"""Evaluation: metrics, the report files, plots, and the CI regression gate."""
