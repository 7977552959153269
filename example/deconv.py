"""Deconvnet (Zeiler & Fergus): the top-k activations of a layer across images, reconstructed and cropped.

Usage: python example/deconv.py [--layer conv3_2 conv4_2] [--id C] [--k 9] [--images DIR] [--per-image]
"""

import argparse
import csv
import dataclasses
import io
import math
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import numpy as np

from lib import cli, plot
from lib.dataflow.images import load_images
from lib.dataflow.shapes import CLASS_NAMES, generate
from lib.errors import InputError
from lib.methods.deconv_analysis import object_shares
from lib.methods.deconvnet import Deconvnet
from lib.nets import bundled

# A middle and a late layer of each model: small parts of a shape, then most of a shape.
DEFAULT_LAYERS = {
    "shapes_vgg": ("conv3_2", "conv4_2"),
    "shapes_googlenet": ("conv2_3x3", "inception_3a_output"),
    "vgg19": ("conv3_4", "conv4_4"),
    "googlenet": ("inception_3a_output", "inception_4a_output"),
    "squeezenet": ("fire5_concat", "fire9_concat"),
    "efficientnet_lite0": ("block3b_add", "block5c_add"),
}  # other models, e.g. from a file: two layers spread over their depth (cli.default_layers)
# Twelve sample images are too few for a top-9 search to show what a channel likes; the bundled
# models add this many generated shapes (never seen in training: their seed is not a training seed).
DEFAULT_GENERATED = 200
GENERATED_SEED = 2017
BOX_COLOUR = (255, 230, 0)
TRIPLE = "each: deconvnet reconstruction | image patch | source image, the field in yellow"
COLORS = 256  # palette PNGs: smaller in all (the large top-k grids shrink most, small grids grow)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, default_model="shapes_vgg")
    cli.add_image_arguments(parser)
    parser.add_argument(
        "--layer",
        "--feat",
        dest="layer",
        nargs="+",
        help="layers to visualise (default: a middle and a late one); --feat is the original's name",
    )
    parser.add_argument("--id", type=int, default=None, help="one channel (default: any channel)")
    parser.add_argument("--k", type=int, default=9, help="activations to show per layer")
    parser.add_argument(
        "--generate",
        type=int,
        default=None,
        help=f"add N generated shape images to the search (default: {DEFAULT_GENERATED} for a bundled "
        "model on the bundled samples, else 0)",
    )
    parser.add_argument("--seed", type=int, default=GENERATED_SEED, help="seed of the generated images")
    parser.add_argument(
        "--per-image",
        action="store_true",
        help="instead: for each image, its k strongest channels (or --id's k strongest positions)",
    )
    cli.add_output_arguments(parser, "deconv")
    return parser.parse_args(argv)


def check_args(args):
    if args.k < 1:
        raise InputError(f"--k {args.k}; pass at least 1")
    if args.id is not None and args.id < 0:
        raise InputError(f"--id {args.id} is negative; pass a channel index from 0")
    if args.generate is not None and args.generate < 0:
        raise InputError(f"--generate {args.generate}; pass 0 or more images")
    if args.generate is None:
        on_samples = Path(args.images).resolve() == cli.SAMPLES_DIR.resolve()
        args.generate = DEFAULT_GENERATED if on_samples and args.model in bundled.names() else 0


def check_channel(channel, deconvs):
    for deconv in deconvs:
        if channel is not None and channel >= deconv.num_channels:
            raise InputError(
                f"--id {channel} is not a channel of layer '{deconv.layer}', which has channels "
                f"0..{deconv.num_channels - 1}"
            )


@dataclasses.dataclass
class LayerResult:
    """One layer's top activations, with what the figures and the table need about their sources.

    Attributes:
        deconv: the `Deconvnet` of the layer; top: its `TopActivations`.
        names: (k,) source image names; sources: (k,) source images float (H, W, 3).
        masks: (k,) object masks (H, W) of generated sources, None for image files.
        searched: number of images searched.
    """

    deconv: Deconvnet
    top: object
    names: list
    sources: list
    masks: list
    searched: int


def generated_set(count, seed, size):
    """`count` shape images uint8 (N, h, w, 3) of `size` (h, w), their names ('gen_0042 star'), masks."""
    images, labels, masks = generate(count, seed=seed, size=size)
    return images, [f"gen_{i:04d} {CLASS_NAMES[c]}" for i, c in enumerate(labels)], masks


def search_batches(run, generated, batch_size, origins):
    """Batches of the folder, then of the generated images.

    Appends to `origins`, per image in search order, `(name, path, None)` for a file or
    `(name, image, mask)` for a generated image, so that the winners' sources can be drawn afterwards.
    """
    for batch in run:
        origins.extend((Path(path).stem, path, None) for path in batch.paths)
        yield batch.images
    images, names, masks = generated
    if not len(images):
        return
    progress = cli.progress(len(images))
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        stop = start + batch_size
        origins.extend(zip(names[start:stop], chunk, masks[start:stop], strict=True))
        yield chunk.astype(np.float32)
        progress.add(len(chunk))


def one_size(batches, origins):
    """The batches (n, H, W, 3) unchanged, refusing one of another size than the first: one search
    ranks images of one size, and a model that takes any size leaves the images at their own."""
    size = None
    for images in batches:
        size = size or images.shape[1:3]
        if images.shape[1:3] != size:
            (h0, w0), (h, w) = size, images.shape[1:3]
            raise InputError(
                f"'{origins[-len(images)][0]}' is {h}x{w}, the images before it {h0}x{w0}: the top-k search "
                "needs images of one size; resize them to one size, or pass --per-image"
            )
        yield images


def source_image(origin, size, crop=False):
    """The image (float (H, W, 3)) an origin entry stands for, read again as the run read it if a file."""
    source = origin[1]
    if isinstance(source, np.ndarray):
        return source.astype(np.float32)
    return load_images([source], size=size, crop=crop and size is not None).images[0]


def outline(image, box, colour=BOX_COLOUR):
    """uint8 copy of `image` with a 1-pixel rectangle on `box` (top, left, bottom, right; exclusive)."""
    out = plot.to_uint8(image, value_range=(0, 255)).copy()
    top, left, bottom, right = (int(v) for v in box)
    out[top:bottom, [left, right - 1]] = colour
    out[[top, bottom - 1], left:right] = colour
    return out


def top_titles(top, names):
    return [f"ch {c}  {v:.3g}\n{n[:18]}" for c, v, n in zip(top.channels, top.values, names, strict=True)]


def top_figures(top, names, sources, heading):
    """The reconstruction grid, the patch grid, and the combined figure (reconstruction | patch | source).

    Args:
        top: `TopActivations` of one layer.
        names: the source image name of each activation; sources: each source image (H, W, 3).
        heading: two lines that start every figure's title.
    """
    k = len(top.values)
    ncols = math.ceil(math.sqrt(k))
    recs = [plot.normalize_input_map(r) for r in top.reconstructions]  # (Rh, Rw, 3) in [0, 1]
    patches = [plot.to_uint8(p, value_range=(0, 255)) for p in top.patches]
    titles = top_titles(top, names)
    feat = plot.image_grid(recs, ncols, titles, suptitle=f"{heading}\ndeconvnet reconstructions")
    im = plot.image_grid(patches, ncols, titles, suptitle=f"{heading}\nimage patches (receptive field)")
    tiles, triple_titles = [], []
    for rank in range(k):
        tiles += [recs[rank], patches[rank], outline(sources[rank], top.boxes[rank])]
        triple_titles += [
            f"#{rank + 1} ch {top.channels[rank]}",
            f"value {top.values[rank]:.3g}",
            names[rank][:18],
        ]
    both = plot.image_grid(
        tiles,
        3 * ncols,
        triple_titles,
        tile_size=1.1,
        suptitle=f"{' '.join(heading.splitlines())}\n{TRIPLE}",
    )
    return feat, im, both


def top_table(result, shares):
    """CSV text: one row per activation, strongest first; the object shares are empty for image files."""
    top = result.top
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(
        ["rank", "channel", "value", "image", "row", "col", "top", "left", "bottom", "right"]
        + ["energy_on_object", "object_area"]
    )
    for rank in range(len(top.values)):
        row, col = top.positions[rank]
        writer.writerow(
            [rank + 1, top.channels[rank], f"{top.values[rank]:.6g}", result.names[rank], row, col]
            + [int(v) for v in top.boxes[rank]]
            + ["" if np.isnan(v) else f"{v:.4f}" for v in shares[rank]]
        )
    return text.getvalue()


def search(args, subject, deconvs, paths):
    """Each layer's `TopActivations` with the names and images of its sources; nothing is written yet."""
    size = subject.image_size or (bundled.INPUT_SIZE, bundled.INPUT_SIZE)  # shapes for any-size models
    empty = (np.zeros((0, *size, 3), np.uint8), [], [])
    generated = generated_set(args.generate, args.seed, size) if args.generate else empty
    results = []
    for number, deconv in enumerate(deconvs):
        print(
            f"[{deconv.layer}] top {args.k} of {'any channel' if args.id is None else f'channel {args.id}'}"
        )
        run = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop)
        origins = []
        batches = one_size(search_batches(run, generated, args.batch_size, origins), origins)
        with warnings.catch_warnings():
            if number:  # the first layer's pass already warned about each bad image
                warnings.simplefilter("ignore")
            top = deconv.top_activations(batches, channel=args.id, k=args.k, batch_size=args.batch_size)
        chosen = [origins[i] for i in top.image_index]
        sources = [source_image(origin, subject.image_size, args.crop) for origin in chosen]
        names, masks = [origin[0] for origin in chosen], [origin[2] for origin in chosen]
        results.append(LayerResult(deconv, top, names, sources, masks, len(origins)))
    summary = run.summary() + (f", and {len(generated[0])} generated images" if args.generate else "")
    print(f"searched {summary}")
    return results


def write_top(args, subject, results, out):
    suffix = "" if args.id is None else f"_{args.id}"
    written = []
    for result in results:
        layer = result.deconv.layer
        field = result.deconv.field(result.sources[0].shape[:2])  # the size every source has
        what = "any channel" if args.id is None else f"channel {args.id}"
        heading = (
            f"{subject.name} {layer}: top {len(result.top.values)} activations of {what}\n"
            f"over {result.searched} images, receptive field {field.size[0]}x{field.size[1]} px"
        )
        feat, im, both = top_figures(result.top, result.names, result.sources, heading)
        shares = object_shares(result.top, result.masks, field)
        report_shares(layer, shares)
        stem = out / layer.replace("/", "_")  # a nested model's layer, 'block/conv2', as one file name
        written += [
            plot.save_figure(feat, f"{stem}_feat{suffix}.png", colors=COLORS),
            plot.save_figure(im, f"{stem}_im{suffix}.png", colors=COLORS),
            plot.save_figure(both, f"{stem}_top{args.k}{suffix}.png", colors=COLORS),
            plot.save_text(f"{stem}_top{args.k}{suffix}.csv", top_table(result, shares)),
        ]
    return written


def report_shares(layer, shares):
    known = shares[~np.isnan(shares[:, 0])]
    if len(known):
        energy, area = known.mean(axis=0)
        print(
            f"[{layer}] {len(known)} winners from generated images: {energy:.0%} of the reconstruction's "
            f"energy lies on the object, which fills {area:.0%} of the receptive field"
        )


def per_image(args, subject, deconvs, paths, out):
    """For each image and layer: the image, then its k strongest activations reconstructed full size."""
    suffix = "" if args.id is None else f"_{args.id}"
    run = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop)
    written = []
    for batch in run:
        recs = [deconv(batch.images, channel=args.id, k=args.k) for deconv in deconvs]  # all checked first
        labels = cli.top_labels(subject.model, batch.images, subject.class_names)
        for i, path in enumerate(batch.paths):
            for deconv, rec in zip(deconvs, recs, strict=True):
                tiles = [plot.to_uint8(batch.images[i], value_range=(0, 255))]
                tiles += [plot.normalize_input_map(m) for m in rec.maps[i]]
                titles = [f"{Path(path).name[:18]}\n{labels[i]}"] + [
                    f"ch {c} at ({r}, {q})\nvalue {v:.3g}"
                    for c, (r, q), v in zip(rec.channels[i], rec.positions[i], rec.values[i], strict=True)
                ]
                what = (
                    "strongest channels" if args.id is None else f"strongest positions of channel {args.id}"
                )
                fig = plot.image_grid(
                    tiles,
                    min(len(tiles), 5),
                    titles,
                    tile_size=1.8,
                    suptitle=f"{subject.name} {deconv.layer}: deconvnet of the {args.k} {what}",
                )
                name = f"{Path(path).stem}_{deconv.layer.replace('/', '_')}_deconv{suffix}.png"
                written.append(plot.save_figure(fig, out / name, colors=COLORS))
    print(run.summary())
    return written


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    check_args(args)
    cli.check_model_arg(args.model)
    paths = cli.image_sources(args.images)
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    layers = args.layer or DEFAULT_LAYERS.get(args.model) or cli.default_layers(subject.model, 2)
    deconvs = [Deconvnet(subject.model, name) for name in layers]  # every layer checked before any work
    check_channel(args.id, deconvs)
    print(f"read {len(paths)} image(s) from {args.images}; layers {', '.join(d.layer for d in deconvs)}")
    if args.per_image:
        written = per_image(args, subject, deconvs, paths, out)
    else:
        written = write_top(args, subject, search(args, subject, deconvs, paths), out)
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
