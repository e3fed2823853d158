"""Training: state, loss terms, the step, loops and the data pipeline."""
