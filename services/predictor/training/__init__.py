"""Training data, models and evaluation of the three mix models (issue 4)."""
