"""Bounded memory: 10,000 generated image files through the local runner (the model's process and its
decoding helper), resident memory flat after warm-up."""

import os
from pathlib import Path

import numpy as np
import pytest

import lib.batch
from lib.dataflow.shapes import write_image_folder

IMAGES, DISTINCT, SHARD = 10_000, 500, 500
WARM_UP_SHARDS = 4  # the traces of the methods and pyarrow's pools are made by then
# A leak grows the resident set at every shard: a map per image (4 KB) by 2 MB a shard. The allocators
# instead grow it now and then by a step of about 6 MB (23.5 MB in all over 16 shards at most, in 11
# runs). So the median growth from one shard to the next is held to 0.5 MB (a leak of 1 KB an image),
# and the whole growth to 50 MB.
STEADY_GROWTH_LIMIT_MB, GROWTH_LIMIT_MB = 0.5, 50


def image_files(root):
    """10,000 image files: links to 500 generated ones (each read and decoded as a file of its own)."""
    write_image_folder(root / "generated", DISTINCT, seed=11)
    originals = sorted((root / "generated").rglob("*.png"))
    (root / "images").mkdir()
    for i in range(IMAGES):
        (root / "images" / f"{i:05d}.png").symlink_to(originals[i % DISTINCT])
    return root / "images"


def resident_mb(pid="self"):
    with open(f"/proc/{pid}/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def with_children_mb():
    """(resident memory of this process and its children (the decoding helper) in MB, children)."""
    tasks = Path("/proc/self/task").iterdir()
    children = {pid for task in tasks for pid in (task / "children").read_text().split()}
    return resident_mb() + sum(resident_mb(pid) for pid in children), len(children)


@pytest.mark.slow
def test_ten_thousand_images_in_flat_resident_memory(tmp_path):
    folder = image_files(tmp_path)
    readings, children = {}, set()

    def measure(shard):
        readings[shard], count = with_children_mb()
        children.add(count)

    summary = lib.batch.run(
        folder,
        "shapes_vgg",
        "cam",
        tmp_path / "out",
        shard_size=SHARD,
        batch_size=50,
        dtype="uint8",
        on_shard=measure,
    )
    assert summary.explained == IMAGES and summary.shards == IMAGES // SHARD
    assert children == {1}, "the decoding helper was not running beside the model"
    after_warm_up = [readings[shard] for shard in sorted(readings)[WARM_UP_SHARDS - 1 :]]
    steady, growth = np.median(np.diff(after_warm_up)), after_warm_up[-1] - after_warm_up[0]
    print(
        f"resident memory: {after_warm_up[0]:.0f} MB after {WARM_UP_SHARDS * SHARD} images, "
        f"{after_warm_up[-1]:.0f} MB after {IMAGES} ({growth:+.1f} MB, median {steady:+.2f} MB a shard); "
        f"{summary.images_per_second:.0f} images/s"
    )
    assert steady < STEADY_GROWTH_LIMIT_MB and growth < GROWTH_LIMIT_MB, readings
    one = lib.batch.read(tmp_path / "out", str(folder / "09999.png"))
    assert one.maps["cam"].shape == (1, 64, 64) and 0 <= one.maps["cam"].min() <= one.maps["cam"].max() <= 1
