"""Speed of lib.batch: the local runner against the in-process method loop, Beam's overhead, 1 vs 2 workers.

Usage: .venv/bin/python bench/batch.py [--images 2000] [--batch-size 32] [--methods grad_cam,cam] [--quick]
       .venv/bin/python bench/batch.py --files photos --model squeezenet --images 512 --batch-size 16

On N generated 64x64 PNG files (or, with --files photos, N JPEG photos of 500x375, ImageNet validation's
usual size, cut from the bundled photographs), for each method, in the same run and alternating (best of
--repeats):
    loop          the method's explain() on batches of in-memory images: compute only, the ceiling
    folder loop   lib.dataflow.images.iter_batches then explain(), one after the other (today's scripts)
    local runner  lib.batch.run: a helper process decodes a batch ahead; a thread writes the shards;
                  both move to the idle scheduling class once their work fits in the model's idle time
Target (issue 15): local runner >= 0.9x the loop. The CPU ceiling beside it is the loop's time against the
runner's CPU time (its process and its decoding helper) spread over every core: the best ratio that
work allows, however well it overlaps. Then, for the first method, the Beam DirectRunner
with 1 worker (in this process) and 2 worker processes, whose start-up and model loading count. Each
method's cost per million images is projected from the local runner's time per image on this
machine, at --core-hour-price per core-hour for its cores. Every run includes the first call's
tracing, as a user's job does. `benchmark.py` calls `report(...)` for its "batch jobs" section.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import lib.batch
from lib import cli
from lib.dataflow.images import iter_batches, list_images, load_images
from lib.dataflow.shapes import write_image_folder
from lib.methods import catalog
from lib.methods.targets import TopK

TARGET = 0.9
CORE_HOUR_PRICE = 0.05  # USD per vCPU-hour, about an on-demand general-purpose cloud VM in 2026
METHODS = ("grad_cam", "cam", "guided_grad_cam", "saliency")
FILES = {"shapes": "generated 64x64 PNG files", "photos": "500x375 JPEG photos"}
PHOTO_SIZE = (500, 375)  # (width, height): ImageNet validation's most common size


def write_photo_files(folder, count, seed):
    """`count` JPEG files (quality 90) of PHOTO_SIZE: random crops of the bundled photos, resized, some
    mirrored, so that every file differs and decodes like a photo of ImageNet's validation set."""
    from PIL import Image

    from lib.dataflow import photos

    folder.mkdir(parents=True)
    rng, names = np.random.default_rng(seed), photos.names()
    for index in range(count):
        image = Image.fromarray(photos.load(names[index % len(names)]))
        scale = rng.uniform(0.6, 1.0)
        width, height = int(image.width * scale), int(image.height * scale)
        left, top = rng.integers(0, image.width - width + 1), rng.integers(0, image.height - height + 1)
        crop = image.crop((left, top, left + width, top + height)).resize(
            PHOTO_SIZE, Image.Resampling.BILINEAR
        )
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(folder / f"{index:05d}.jpg", quality=90)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=cli.positive_int, default=2000, help="generated images (default 2000)"
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=32)
    parser.add_argument("--model", default="shapes_vgg", help="a model name of the scripts' --model")
    parser.add_argument(
        "--files", choices=FILES, default="shapes", help="64x64 PNG shapes, or 500x375 JPEG photos"
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated catalog names")
    parser.add_argument("--repeats", type=cli.positive_int, default=2, help="best of this many runs of each")
    parser.add_argument("--core-hour-price", type=float, default=CORE_HOUR_PRICE, help="USD per core-hour")
    parser.add_argument("--no-beam", action="store_true", help="skip the Beam runs")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 images, one method, 1 repeat")
    return parser.parse_args(argv)


def timed(call):
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def loop(method, images, batch_size):
    for start in range(0, len(images), batch_size):
        method.explain(images[start : start + batch_size], TopK(1))


def folder_loop(method, paths, size, batch_size):
    for batch in iter_batches(paths, batch_size, size=size):
        method.explain(batch.images, TopK(1))


def runner_seconds(folder, model, method, work, **options):
    """Wall time of lib.batch.run's explaining and writing, in a fresh job folder."""
    out = Path(tempfile.mkdtemp(dir=work))
    try:
        return lib.batch.run(folder, model, method, out, **options).seconds
    finally:
        shutil.rmtree(out)


def cpu_seconds():
    """CPU time of this process and of its ended children (the runner's decoding helper)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure_method(name, subject, folder, images, paths, batch_size, repeats, work):
    """Best-of-`repeats` seconds of the loop, the folder loop and the local runner for one method.

    All three call the same method object, traced beforehand for the batch sizes they use, so that
    the times are those of a long job, where one trace is nothing.
    """
    method = catalog.build(name, subject.model, None)
    method.explain(images[:batch_size], TopK(1))
    method.explain(images[: len(images) % batch_size or batch_size], TopK(1))
    shard_size = max(batch_size, len(images) // 8 // batch_size * batch_size)  # 8 shards: writes overlap
    options = dict(batch_size=batch_size, shard_size=shard_size)
    best = {"loop": [], "folder loop": [], "local runner": [], "runner cpu": []}
    for _ in range(repeats):  # alternating, so a change in load hits all three alike
        best["loop"].append(timed(lambda: loop(method, images, batch_size)))
        best["folder loop"].append(timed(lambda: folder_loop(method, paths, subject.image_size, batch_size)))
        cpu = cpu_seconds()
        best["local runner"].append(runner_seconds(folder, subject.model, [method], work, **options))
        best["runner cpu"].append(cpu_seconds() - cpu)
    return {key: min(values) for key, values in best.items()}


def measure_beam(name, model_name, folder, batch_size, work, images):
    """Seconds of a fresh local run and of the Beam DirectRunner with 1 and 2 workers, from a model name:
    each loads the model and traces the method, as a new job does."""
    shard_size = max(batch_size, images // 8 // batch_size * batch_size)
    options = dict(batch_size=batch_size, shard_size=shard_size)
    runs = {"local, fresh": dict(runner="local"), "beam, 1 worker": dict(runner="beam", workers=1)}
    runs["beam, 2 workers"] = dict(runner="beam", workers=2)
    return {
        key: runner_seconds(folder, model_name, name, work, **extra, **options) for key, extra in runs.items()
    }


def method_line(name, seconds, images, cores):
    """Throughputs and ratios to the loop, and the CPU ceiling: the loop's time against the runner's CPU
    time (its process and decoding helper) spread over every core, the best ratio its work allows."""
    walls = {key: value for key, value in seconds.items() if key != "runner cpu"}
    cells = [f"{key} {images / value:.0f} ({seconds['loop'] / value:.2f}x)" for key, value in walls.items()]
    ratio = seconds["loop"] / seconds["local runner"]
    ceiling = seconds["loop"] * cores / seconds["runner cpu"]
    verdict = "ok" if ratio >= TARGET else f"below {TARGET}x"
    return f"  {name:<16} " + ", ".join(cells) + f"; CPU ceiling {ceiling:.2f}x  [local runner {verdict}]"


def beam_lines(beam, images):
    fresh, one, two = beam["local, fresh"], beam["beam, 1 worker"], beam["beam, 2 workers"]
    return [
        f"  Beam DirectRunner, fresh jobs from the model name (model loading and tracing included): local "
        f"{images / fresh:.0f} images/s, Beam 1 worker {images / one:.0f} ({one / fresh:.2f}x the local "
        f"time), 2 workers {images / two:.0f} ({one / two:.2f}x the throughput of 1 worker)"
    ]


def cost_lines(per_image, cores, price):
    lines = [f"  projected cost per million images on {cores} cores like these at ${price}/core-hour:"]
    for name, seconds in per_image.items():
        hours = seconds * 1e6 / 3600
        lines.append(
            f"    {name:<16} {seconds * 1e3:.2f} ms/image, {hours:.1f} h, ${hours * cores * price:.2f}"
        )
    return lines


def report(images=2000, batch_size=32, model="shapes_vgg", methods=METHODS, repeats=2, beam=True,
           core_hour_price=CORE_HOUR_PRICE, files="shapes"):  # fmt: skip
    """Prints the batch-job section: throughputs, ratios, Beam's overhead, cost per million images."""
    import warnings

    warnings.filterwarnings("ignore", message="layer=None")
    subject, cores = cli.load_subject(model), os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as work:
        folder = Path(work) / "images"
        if files == "photos":
            write_photo_files(folder, images, seed=2026)
        else:
            write_image_folder(folder, images, seed=2026)
        paths = list_images(folder)
        pixels = load_images(paths, size=subject.image_size).images
        print(
            f"batch jobs: {model}, {images} {FILES[files]} read at {subject.image_size}, batch "
            f"{batch_size}, {cores} cores, best of {repeats}; images/s (ratio to the in-memory loop)"
        )
        per_image = {}
        for name in methods:
            seconds = measure_method(name, subject, folder, pixels, paths, batch_size, repeats, work)
            per_image[name] = seconds["local runner"] / images
            print(method_line(name, seconds, images, cores))
        if beam:
            print(
                "\n".join(
                    beam_lines(measure_beam(methods[0], model, folder, batch_size, work, images), images)
                )
            )
    print("\n".join(cost_lines(per_image, cores, core_hour_price)))


def main(args):
    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if args.quick:
        args.images, args.repeats, methods = 300, 1, methods[:1]
    report(
        args.images,
        args.batch_size,
        args.model,
        methods,
        args.repeats,
        not args.no_beam,
        args.core_hour_price,
        args.files,
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
