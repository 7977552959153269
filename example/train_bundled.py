"""Trains the bundled models on generated shapes; writes lib/nets/data/<name>.weights.h5 and a model card.

Usage: python example/train_bundled.py --model all
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import keras
import numpy as np
import tensorflow as tf

from lib.atomic import atomic_path
from lib.dataflow.shapes import CLASS_NAMES, generate
from lib.nets import bundled
from lib.nets.layers import fold_batch_norm
from lib.plot import save_text

TRAIN_SEED = 1
VALIDATION_SEED = 2
TEST_SEED = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all", choices=(*bundled.names(), "all"))
    parser.add_argument("--single", type=int, default=16000, help="single-object training images")
    parser.add_argument("--pairs", type=int, default=4000, help="two-object training images")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=bundled.DATA_DIR, help="folder for weights and cards")
    return parser.parse_args(argv)


def training_set(num_single, num_pairs, seed):
    """Single- and two-object images with soft targets (half the mass on each object of a pair).

    Pairs teach the model to score both objects, which class-discriminative maps rely on.
    """
    single, single_labels, _ = generate(num_single, seed=seed, size=bundled.INPUT_SIZE)
    pairs, pair_labels, _ = generate(num_pairs, seed=seed + 100, size=bundled.INPUT_SIZE, objects_per_image=2)
    targets = np.zeros((num_single + num_pairs, len(CLASS_NAMES)), "float32")
    targets[np.arange(num_single), single_labels] = 1.0
    rows = num_single + np.arange(num_pairs)
    targets[rows, pair_labels[:, 0]] = 0.5
    targets[rows, pair_labels[:, 1]] = 0.5
    images = np.concatenate([single, pairs]).astype("float32")
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order], targets[order]


def train(name, args):
    """Trains one bundled model from scratch and returns it with its training time in seconds."""
    keras.utils.set_random_seed(TRAIN_SEED)
    tf.config.experimental.enable_op_determinism()
    print(f"[{name}] generating {args.single} single- and {args.pairs} two-object images ...", flush=True)
    images, targets = training_set(args.single, args.pairs, TRAIN_SEED)
    val_images, val_labels, _ = generate(1000, seed=VALIDATION_SEED, size=bundled.INPUT_SIZE)
    model = bundled.build(name, batch_norm=True)
    steps = args.epochs * int(np.ceil(len(images) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps, warmup_target=None)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["categorical_accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        images,
        targets,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(
            val_images.astype("float32"),
            keras.utils.to_categorical(val_labels, len(CLASS_NAMES)),
        ),
        verbose=2 if not sys.stdout.isatty() else 1,
    )
    seconds = time.perf_counter() - start
    plain = bundled.build(name)
    fold_batch_norm(model, plain)
    difference = np.abs(
        plain.predict(val_images[:200], verbose=0) - model.predict(val_images[:200], verbose=0)
    )
    print(f"[{name}] batch norm folded into the convolutions (max logit change {difference.max():.1e})")
    return plain, seconds


def model_card(name, args, seconds, scores):
    builder, kwargs = bundled.ARCHITECTURES[name]
    arguments = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
    return f"""# Model card: {name}

- Architecture: `lib.nets.{builder.__module__.split(".")[-1]}.{builder.__name__}(classes={len(CLASS_NAMES)}, \
input_shape=({bundled.INPUT_SIZE}, {bundled.INPUT_SIZE}, 3), {arguments})`, \
{bundled.build(name).count_params():,} parameters; last spatial layer `{bundled.LAST_CONV_LAYER[name]}`.
- Input: RGB 0-255, {bundled.INPUT_SIZE}x{bundled.INPUT_SIZE}; outputs logits of {", ".join(CLASS_NAMES)}.
- Training data: `lib.dataflow.shapes.generate`, seed {TRAIN_SEED}: {args.single} single-object images and \
{args.pairs} two-object images (seed {TRAIN_SEED + 100}, soft targets 0.5/0.5); {args.epochs} epochs, batch \
{args.batch_size}, Adam with cosine decay from 2e-3; trained with batch normalisation, then folded \
into the convolutions (`lib.nets.layers.fold_batch_norm`).
- Held-out test (seed {TEST_SEED}, never trained on): top-1 accuracy {scores["top1"]:.2%} on 2,000 \
single-object images; top-2 predictions equal both classes on {scores["two_object_top2"]:.2%} of 2,000 \
two-object images (seed {TEST_SEED + 1}).
- Training time: {seconds / 60:.1f} minutes on a 2-core CPU machine.
- Reproduce: `.venv/bin/python example/train_bundled.py --model {name}` (after `python3 run.py test` or \
`demo` has created `.venv/`).
"""


def main(args):
    names = bundled.names() if args.model == "all" else (args.model,)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        model, seconds = train(name, args)
        scores = bundled.evaluate(model, seed=TEST_SEED)
        weights = args.out / f"{name}.weights.h5"
        with atomic_path(weights) as tmp:
            model.save_weights(tmp)
        save_text(args.out / f"{name}.md", model_card(name, args, seconds, scores))
        print(
            f"[{name}] top-1 {scores['top1']:.2%}, two-object top-2 {scores['two_object_top2']:.2%}, "
            f"{seconds / 60:.1f} min; wrote {weights}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
