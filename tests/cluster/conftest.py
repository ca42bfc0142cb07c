"""A local Ray (2 CPUs, with its dashboard for the State API) and prepared MNIST, shared."""
from __future__ import annotations

import pytest
import ray

from flows.config import PrepConfig
from flows.prep.build import prepare
from tests.conftest import shared_dataset


@pytest.fixture(scope="session")
def mnist_store(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store"))
    prepare(PrepConfig(dataset="mnist", source=str(shared_dataset("mnist")), store=store))
    return store


@pytest.fixture
def local_ray(mnist_store):
    if not ray.is_initialized():
        from cluster.connect import connect

        connect(None)  # as the CLI does: a private local Ray that its workers know
    yield mnist_store
