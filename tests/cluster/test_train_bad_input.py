"""Bad training input fails with a clear error before any Ray work starts."""
from __future__ import annotations

import pytest
import ray
from pydantic import ValidationError

from cluster.config import TrainConfig
from cluster.connect import disconnect
from flows.train import train_model as train
from lightning_modules.errors import UserError


@pytest.fixture(autouse=True)
def no_ray():
    if ray.is_initialized():
        disconnect()
    yield
    assert not ray.is_initialized(), "Ray was started for input that should fail before it"


def test_batch_larger_than_training_set(tiny_dataset):
    store, _ = tiny_dataset
    with pytest.raises(UserError, match="--batch-size 4096 is larger than the training set"):
        train(TrainConfig(store=store, optim={"batch_size": 4096}))


def test_unknown_dataset(tiny_dataset):
    store, _ = tiny_dataset
    with pytest.raises(UserError, match="no prepared dataset 'cifar10'"):
        train(TrainConfig(store=store, dataset="cifar10"))


def test_dataset_without_manifest(tiny_dataset):
    store, uri = tiny_dataset
    import os
    os.remove(f"{uri}/manifest.json")
    with pytest.raises(UserError, match="no prepared dataset there"):
        train(TrainConfig(store=store))


def test_ray_client_address_is_refused(tiny_dataset):
    store, _ = tiny_dataset
    with pytest.raises(ValidationError, match="Ray Client"):
        train(TrainConfig(store=store, scaling={"ray_address": "ray://head:10001"}))
