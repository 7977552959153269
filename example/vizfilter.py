"""Draws a network's first-layer filters and the feature maps of chosen layers for an image.

Usage: python example/vizfilter.py [--model shapes_googlenet] [--layer inception_3a_output ...] [--images IMG]
"""

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
from matplotlib.figure import Figure

from lib import cli, plot
from lib.errors import InputError
from lib.methods.filters import SELECTIONS, FeatureMaps, conv_layers, filter_tiles, layer_filters
from lib.nets.layers import CaffePreprocess

DEFAULT_IMAGE = cli.SAMPLES_DIR / "10_disk_cross.png"
# Layers drawn when --layer is not given: an early convolution and the inception blocks (GoogLeNet),
# or one convolution (VGG) or block output (SqueezeNet, EfficientNet) per resolution. Other models,
# e.g. from a file: three layers spread over their depth (cli.default_layers).
DEFAULT_LAYERS = {
    "shapes_googlenet": ("conv2_3x3", "inception_3a_output", "inception_3b_output"),
    "googlenet": ("conv2_3x3", "inception_3a_output", "inception_4a_output"),
    "shapes_vgg": ("conv2_1", "conv3_2", "conv4_2"),
    "vgg19": ("conv2_2", "conv3_4", "conv4_4"),
    "squeezenet": ("fire3_concat", "fire5_concat", "fire9_concat"),
    "efficientnet_lite0": ("block2b_add", "block3b_add", "block5c_add"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, default_model="shapes_googlenet")
    cli.add_image_arguments(parser)
    parser.set_defaults(images=DEFAULT_IMAGE)
    parser.add_argument("--layer", nargs="+", help="layers whose feature maps to draw (default: per model)")
    parser.add_argument(
        "--num-maps", type=int, default=64, help="feature maps per layer (at most its channels)"
    )
    parser.add_argument(
        "--select",
        choices=SELECTIONS,
        default="strongest",
        help="which maps: strongest mean activation on the image, a random draw, or all",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --select random")
    cli.add_output_arguments(parser, "vizfilter")
    return parser.parse_args(argv)


def filter_figure(model, model_name):
    """The colour grid of the model's first convolution, and that layer's name."""
    layer = conv_layers(model)[0]
    weights = layer_filters(model, layer)  # (F, kh, kw, 3)
    # Our builders flip RGB to BGR inside the model, so the kernel's channels are B, G, R.
    bgr = any(isinstance(other, CaffePreprocess) for other in model.layers)
    tiles = filter_tiles(weights, input_order="bgr" if bgr else "rgb")  # (F, kh, kw, 3) in [0, 1]
    count, kh, kw, depth = weights.shape
    fig = plot.image_grid(
        tiles,
        ncols=8 if count >= 32 else math.ceil(math.sqrt(count)),
        titles=[f"#{i}" for i in range(count)],
        tile_size=0.9,
        suptitle=f"{model_name} {layer.name}: {count} filters {kh}x{kw}x{depth}, each on its own scale",
    )
    return fig, layer.name


def maps_figure(image, maps, ids, image_title, suptitle):
    """The input image on the left, a grid of feature maps on one colour scale on the right.

    Args:
        image: float (H, W, 3) in 0-255.
        maps: float (h, w, M), the chosen channels of one layer for this image.
        ids: (M,) channel ids, drawn above the tiles.
    """
    count = maps.shape[-1]
    grid, anchors = plot.mosaic(maps, ncols=8 if count <= 64 else math.ceil(math.sqrt(count)))
    width, height = grid.shape[1] / 100 + 1.2, max(grid.shape[0] / 100, 2.8)  # inches at 100 dpi
    fig = Figure(figsize=(2.8 + width, height + 0.5))
    fig.set_layout_engine("constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[2.8, width])
    ax = left.subplots()
    ax.imshow(plot.to_uint8(image, value_range=(0, 255)))
    ax.set_title(image_title, fontsize=plot.TITLE_SIZE)
    ax.axis("off")
    low, high = min(0.0, float(maps.min())), float(maps.max())
    high = high if high > low else low + 1.0  # an all-zero layer stays drawable
    ax = right.subplots()
    ax.axis("off")
    cmap = plot.matplotlib.colormaps["viridis"].with_extremes(bad="white")
    shown = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    for (x, y), channel in zip(anchors, ids, strict=True):
        ax.text(x, y, f"#{channel}", ha="center", va="bottom", fontsize=plot.TITLE_SIZE - 2)
    right.colorbar(shown, ax=ax, shrink=0.6, label="activation")
    fig.suptitle(suptitle, fontsize=plot.TITLE_SIZE + 2)
    return fig


def describe(select, num, total):
    if select == "all":
        return f"all {total} channels"
    how = "strongest mean activation" if select == "strongest" else "random draw"
    return f"{num} of {total} channels ({how})"


def layer_figure(probe, image, image_title, args, model_name):
    """One layer's feature-map figure for one image (H, W, 3)."""
    total = probe.num_channels
    num = None if args.select == "all" else min(args.num_maps, total)
    maps, ids = probe(image[None], num_maps=num, select=args.select, seed=args.seed)  # (1, h, w, M)
    suptitle = (
        f"{model_name} {probe.layer}: {describe(args.select, len(ids), total)}, "
        f"{maps.shape[1]}x{maps.shape[2]} each"
    )
    return maps_figure(image, maps[0], ids, image_title, suptitle)


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    if args.num_maps < 1:
        raise InputError(f"--num-maps {args.num_maps}; pass at least 1")
    cli.check_model_arg(args.model)
    paths = cli.image_sources(args.images)
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    layers = args.layer or DEFAULT_LAYERS.get(args.model) or cli.default_layers(subject.model, 3)
    probes = [FeatureMaps(subject.model, name) for name in layers]  # all checked first; 'block/conv2' too
    fig, first = filter_figure(subject.model, subject.name)
    written = [plot.save_figure(fig, out / f"filters_{first}.png")]
    print(f"read {len(paths)} image(s) from {args.images}; feature maps of {', '.join(layers)}")
    run = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop)
    for batch in run:
        titles = cli.top_labels(subject.model, batch.images, subject.class_names, k=2)
        for image, path, title in zip(batch.images, batch.paths, titles, strict=True):
            for probe in probes:
                fig = layer_figure(probe, image, f"{Path(path).name}\n{title}", args, subject.name)
                name = f"{Path(path).stem}_{probe.layer.replace('/', '_')}_maps.png"
                written.append(plot.save_figure(fig, out / name))
    print(f"{run.summary()}; wrote {len(written)} figures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
