"""Training and evaluation: the input pipeline, the CNN, splits, calibration, baselines, the loop, the report."""
