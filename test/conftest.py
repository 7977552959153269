"""Shared pytest setup: TensorFlow started as the scripts start it (`lib.start_tensorflow`) and a fixed seed
for every test."""

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory as in the scripts, no start-up log in the output

# isort: split
import keras
import pytest


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
