"""Training: inputs, learning-rate schedule, optimizer and loss, runtime, resume, the fit."""
