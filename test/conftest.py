"""Shared pytest setup: quiet TensorFlow (via `import lib`) and a fixed seed for every test."""

import keras
import pytest

import lib  # noqa: F401  (silences TensorFlow's start-up log before anything imports it)


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
