"""Harness: the stages' own train and score functions run in one process, without DVC or
MLflow, for benchmarks/ and the regression gate's test. The one package folder that imports
both training and evaluation (which never import each other)."""
