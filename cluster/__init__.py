"""Every line of Ray lives here: the per-worker train function, the launcher, the tuner."""
