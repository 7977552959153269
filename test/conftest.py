"""Shared pytest setup: quiet TensorFlow (`lib.quiet_tensorflow`, as the scripts do) and a fixed seed
for every test."""

import lib

lib.quiet_tensorflow()  # before keras: TensorFlow's start-up log stays out of the test output

# isort: split
import keras
import pytest


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
