"""Stage: train one model on Ray. Run: `imgclf train --dataset mnist --model cnn --epochs 1`."""
from __future__ import annotations

from prefect import flow, task

from flows.config import TrainConfig
from flows.prepare_data import transient_only


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=transient_only)
def train_task(cfg: TrainConfig) -> str:
    """Train (a retry resumes the same Ray run from its last checkpoint); returns the bundle URI."""
    from cluster.launcher import train

    return train(cfg).bundle_uri


@flow(name="train")
def train(cfg: TrainConfig = TrainConfig()) -> str:
    """Ray-distributed Lightning training of one (dataset, family); returns the bundle URI."""
    return train_task(cfg)


if __name__ == "__main__":
    print(train(TrainConfig()))
