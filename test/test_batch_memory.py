"""Bounded memory: 10,000 generated images through the local runner, resident memory flat after warm-up."""

import os

import numpy as np
import pytest

import lib.batch
from lib.dataflow.images import Picture

IMAGES, SHARD = 10_000, 500
WARM_UP_SHARDS = 4  # the traces of the methods and pyarrow's pools are made by then
GROWTH_LIMIT_MB = 25  # the maps of one shard alone are 2 MB; a leak of a map per image would be 40 MB


def noise(seed):
    """A 64x64 image of noise, different for every seed: cheap to make, no file to read."""
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def resident_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_ten_thousand_images_in_flat_resident_memory(tmp_path):
    pictures = [Picture(f"noise_{i:05d}.png", noise, (i,)) for i in range(IMAGES)]
    readings = {}

    def measure(shard):
        readings[shard] = resident_mb()

    summary = lib.batch.run(
        pictures,
        "shapes_vgg",
        "cam",
        tmp_path,
        shard_size=SHARD,
        batch_size=50,
        dtype="uint8",
        on_shard=measure,
    )
    assert summary.explained == IMAGES and summary.shards == IMAGES // SHARD
    last = max(readings)
    growth = readings[last] - readings[WARM_UP_SHARDS - 1]
    print(
        f"resident memory: {readings[WARM_UP_SHARDS - 1]:.0f} MB after {WARM_UP_SHARDS * SHARD} images, "
        f"{readings[last]:.0f} MB after {IMAGES} ({growth:+.1f} MB); {summary.images_per_second:.0f} images/s"
    )
    assert growth < GROWTH_LIMIT_MB, readings
    one = lib.batch.read(tmp_path, "noise_09999.png")
    assert one.maps["cam"].shape == (1, 64, 64) and 0 <= one.maps["cam"].min() <= one.maps["cam"].max() <= 1
