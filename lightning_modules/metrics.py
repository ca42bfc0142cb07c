"""Metric names, defined once: logging, checkpoint scoring, Tune and the comparison import them."""


def key(split: str, metric: str) -> str:
    """The logged name of a metric on a split, e.g. key("val", "acc") == "val/acc"."""
    return f"{split}/{metric}"


TRAIN_LOSS = key("train", "loss")
TRAIN_ACC = key("train", "acc")
VAL_LOSS = key("val", "loss")
VAL_ACC = key("val", "acc")
TEST_LOSS = key("test", "loss")
TEST_ACC = key("test", "acc")
TEST_F1 = key("test", "macro_f1")
TEST_ECE = key("test", "ece")
# What "best" means for checkpoints, tuning and champions.
SCORE = VAL_ACC
SCORE_MODE = "max"
# Measured by the training itself (cluster/train_worker.py's callbacks), per epoch.
WORLD_SIZE = key("ddp", "world_size")
IMG_PER_S = key("perf", "train_img_per_s")
STARTUP_S = key("perf", "startup_s")
FIT_S = key("perf", "fit_s")  # first batch to this epoch's end: the run's own time, not queueing
