"""Writes the bundled sample images, data/samples/*.png, that every example uses by default.

Usage: python example/make_samples.py
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imageio.v3 as iio
import numpy as np

from lib.atomic import write_atomically
from lib.cli import SAMPLES_DIR
from lib.dataflow.shapes import CLASS_NAMES, generate

SEED = 7


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR)
    parser.add_argument("--pairs", type=int, default=4, help="two-object images")
    return parser.parse_args(argv)


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    # One single-object image of each class: the first of each in a generated run.
    candidates, candidate_labels, _ = generate(20 * len(CLASS_NAMES), seed=SEED)
    firsts = [int(np.flatnonzero(candidate_labels == c)[0]) for c in range(len(CLASS_NAMES))]
    single, single_labels = candidates[firsts], candidate_labels[firsts]
    pairs, pair_labels, _ = generate(args.pairs, seed=SEED + 1, objects_per_image=2)
    images = [*single, *pairs]
    labels = [[int(label)] for label in single_labels] + [list(map(int, pair)) for pair in pair_labels]
    for index, (image, classes) in enumerate(zip(images, labels, strict=True)):
        path = args.out / f"{index:02d}_{'_'.join(CLASS_NAMES[c] for c in classes)}.png"
        write_atomically(path, lambda file, image=image: iio.imwrite(file, image, extension=".png"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main(parse_args())
