"""MLflow: the store, runs and their lifecycle, the model registry and the pyfunc classifier."""
