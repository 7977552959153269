"""Draws what channels and classes look like to a network (feature visualization) and what its layers keep
of a photo (inversion).

Usage: python example/feature_viz.py [--model squeezenet] [--layer conv1 fire5_concat ...] [--channels 8]
       [--class-id goldfish espresso ...] [--invert chelsea coffee] [--steps 512] [--out output/feature_viz]

Writes channels_<layer>.png (one image per channel, titled with the activation it reaches and the best
any shipped photo reaches), classes.png (one image per class, titled with the network's verdict) and
inversion.png (each photo and its reconstructions from successive layers, from pixels and from the
decorrelated Fourier parameterisation, titled with the feature error and PSNR).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import tensorflow as tf

from lib import cli, plot
from lib.dataflow import photos
from lib.dataflow.images import load_images
from lib.methods.feature_visualization import FeatureVisualization, channel, class_logit
from lib.methods.inversion import Inversion, psnr

# Layers drawn when --layer is not given: from the first convolution to the last block, so the figures
# go from edges and colours to textures, patterns and object parts.
DEFAULT_LAYERS = {
    "squeezenet": ("conv1", "fire3_concat", "fire5_concat", "fire7_concat", "fire9_concat"),
    "efficientnet_lite0": ("stem_conv", "block2b_add", "block3b_add", "block4c_add", "block6d_add"),
}
DEFAULT_CLASSES = ("goldfish", "flamingo", "espresso", "volcano", "bow tie", "tabby")
DEFAULT_INVERTED = ("chelsea", "coffee")
INVERSION_LAYERS = 5  # reconstructions per photo when --invert-layer is not given
# Each parameterisation of the inversion figure with its step size: pixels converge fast on fine
# detail, the Fourier images give smoother reconstructions from deep layers (doc/feature_viz.md).
INVERSION_PARAMETERIZATIONS = (
    ("pixels", {}),
    ("Fourier", {"parameterization": "fourier", "learning_rate": 0.05}),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, default_model="squeezenet")
    parser.add_argument("--layer", nargs="+", help="layers whose channels to draw (default: per model)")
    parser.add_argument("--channels", type=cli.positive_int, default=8, help="channels per layer: 0 .. N-1")
    cli.add_class_id_argument(parser, default=f"{', '.join(DEFAULT_CLASSES)} for ImageNet models")
    parser.add_argument(
        "--invert",
        nargs="+",
        default=list(DEFAULT_INVERTED),
        help="photos to invert: names of the shipped photos (lib.dataflow.photos) or image files",
    )
    parser.add_argument("--invert-layer", nargs="+", help="layers to invert from (default: the --layer list)")
    parser.add_argument("--steps", type=cli.positive_int, default=512, help="optimisation steps per image")
    parser.add_argument("--invert-steps", type=cli.positive_int, default=300, help="steps per inversion")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random start and transforms")
    cli.add_output_arguments(parser, "feature_viz")
    return parser.parse_args(argv)


def channel_figure(images, ids, reached, best_photo, suptitle):
    """A grid of channel images, each titled with its activation and the best photo's."""
    tiles = [plot.to_uint8(image, value_range=(0, 255)) for image in images]
    titles = [f"#{c}: {a:.3g}\n(photos {p:.3g})" for c, a, p in zip(ids, reached, best_photo, strict=True)]
    return plot.image_grid(tiles, ncols=min(len(tiles), 8), titles=titles, tile_size=1.9, suptitle=suptitle)


def draw_channels(subject, visualize, layers, args, photo_batch, out):
    """One figure per layer: the images of channels 0 .. N-1, optimised as one batch."""
    for layer in layers:
        count = min(args.channels, visualize.graph.shape_of(visualize.key_of(layer))[-1])
        objectives = [channel(layer, c) for c in range(count)]
        print(f"{layer}: {count} channels, {args.steps} steps", flush=True)
        images = visualize(objectives, steps=args.steps, seed=args.seed)
        reached = visualize.objective_values(images, objectives)
        # every channel's mean activation on every photo, from one pass: (photos, channels)
        on_photos = visualize.activations(tf.constant(photo_batch), [layer])[0].numpy()
        best = on_photos.mean(axis=tuple(range(1, on_photos.ndim - 1)))[:, :count].max(axis=0)
        suptitle = (
            f"{subject.name} {layer}: the image that maximises each channel's mean activation\n"
            f"({args.steps} steps, Fourier, jitter/scale/rotation); below it, the best of "
            f"{len(photo_batch)} photos"
        )
        path = out / f"channels_{layer.replace('/', '_')}.png"
        plot.save_figure(channel_figure(images, range(count), reached, best, suptitle), path)
        print(f"  wrote {path}")


def draw_classes(subject, visualize, class_ids, args, out):
    """One image per class, titled with the network's probability for it and its top class."""
    print(f"classes: {len(class_ids)}, {args.steps} steps", flush=True)
    images = visualize([class_logit(c) for c in class_ids], steps=args.steps, seed=args.seed)
    probabilities = cli.softmax(subject.model(images, training=False))
    titles = [
        f"{subject.class_names[c]}\np={p[c]:.2f}, top: {subject.class_names[p.argmax()]}"
        for c, p in zip(class_ids, probabilities, strict=True)
    ]
    tiles = [plot.to_uint8(image, value_range=(0, 255)) for image in images]
    suptitle = f"{subject.name}: the image that maximises each class logit ({args.steps} steps)"
    fig = plot.image_grid(tiles, ncols=min(len(tiles), 6), titles=titles, tile_size=2.4, suptitle=suptitle)
    path = out / "classes.png"
    plot.save_figure(fig, path)
    print(f"  wrote {path}")


def draw_inversion(subject, layers, loaded, args, out):
    """Rows: each photo with its reconstructions from `layers`, once per parameterisation."""
    rows, row_titles, cell_titles = [], [], []
    for label, options in INVERSION_PARAMETERIZATIONS:
        recons = []
        for layer in layers:
            print(
                f"inversion from {layer} ({label}): {len(loaded.images)} photos, {args.invert_steps} steps",
                flush=True,
            )
            invert = Inversion(subject.model, layer=layer, **options)
            recon = invert(loaded.images, steps=args.invert_steps, seed=args.seed)
            recons.append((recon, invert.feature_error(recon, loaded.images), psnr(recon, loaded.images)))
        for i, path in enumerate(loaded.paths):
            rows.append(
                [plot.to_uint8(loaded.images[i], (0, 255))]
                + [plot.to_uint8(r[0][i], (0, 255)) for r in recons]
            )
            row_titles.append(f"{Path(path).stem}, {label}")
            cell_titles.append(
                ["photo"]
                + [
                    f"{lay}\nerror {e[i]:.2f}, {q[i]:.1f} dB"
                    for lay, (_, e, q) in zip(layers, recons, strict=True)
                ]
            )
    fig = plot.figure_rows(rows, row_titles=row_titles, cell_titles=cell_titles, tile_size=2.2)
    fig.suptitle(
        f"{subject.name}: images whose features at a layer match the photo's (relative feature error, PSNR)",
        fontsize=plot.TITLE_SIZE + 2,
    )
    path = out / "inversion.png"
    plot.save_figure(fig, path)
    print(f"  wrote {path}")


def _invert_sources(values):
    """Shipped photos by name, files by path."""
    return [photos.picture(value) if value in photos.names() else value for value in values]


def main(args):
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    visualize = FeatureVisualization(subject.model, size=subject.image_size)
    layers = args.layer or DEFAULT_LAYERS.get(args.model) or cli.default_layers(subject.model, 4)
    invert_layers = args.invert_layer or layers[:INVERSION_LAYERS]
    for layer in (*layers, *invert_layers):  # every name checked before any work
        visualize.graph.find(layer)
    class_ids = cli.parse_class_id(args.class_id, subject.class_names)
    if class_ids is None:
        defaults = [name for name in DEFAULT_CLASSES if name in subject.class_names]
        class_ids = [subject.class_names.index(name) for name in defaults] or list(
            range(len(subject.class_names))
        )
    inverted = load_images(_invert_sources(args.invert), size=subject.image_size, crop=True)
    shipped = [photos.picture(name) for name in photos.names()]
    photo_batch = load_images(shipped, size=subject.image_size, crop=True).images
    draw_channels(subject, visualize, layers, args, photo_batch, out)
    draw_classes(subject, visualize, class_ids, args, out)
    draw_inversion(subject, invert_layers, inverted, args, out)
    print(f"read {len(inverted.images)} photos to invert; figures in {out}")


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
