"""What every part of the package shares: paths, params, errors and atomic writes."""
