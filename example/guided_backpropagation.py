"""Guided backpropagation of each image's predicted class (or chosen ones), as figures and .npy maps.

Usage: python example/guided_backpropagation.py [--model shapes_vgg] [--images data/samples] [--sanity-check]
"""

import argparse
import functools
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import numpy as np

from lib import cli, plot, sanity
from lib.errors import InputError
from lib.methods.grad_cam import GradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.nets import bundled

OVERVIEW_IMAGES = 12  # the overview figure shows the first images of a run, not a whole folder
OVERVIEW_DPI = 80  # 12 images fit a README at full size
COLORS = 256  # palette PNGs: the noisy backgrounds of the shapes make full-colour files 3x larger
SANITY_IMAGES = 6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, "shapes_vgg")
    cli.add_image_arguments(parser)
    cli.add_class_id_argument(parser, "each image's predicted class")
    cli.add_output_arguments(parser, "guided_backpropagation")
    parser.add_argument(
        "--sanity-check",
        action="store_true",
        help="instead, compare the maps with those of copies with random top layers (Adebayo et al. 2018)",
    )
    return parser.parse_args(argv)


def image_figure(name, image, grads, titles):
    """One row per class: image | guided backprop in colour | its magnitude."""
    pixels = plot.to_uint8(image, value_range=(0, 255))
    rows = [[pixels, plot.normalize_input_map(g), plot.magnitude(g)] for g in grads]
    fig = plot.figure_rows(
        rows,
        col_titles=["image", "guided backprop (0 = gray)", "magnitude"],
        row_titles=titles,
        cmap="inferno",
        colorbar=True,
    )
    fig.suptitle(name, fontsize=plot.TITLE_SIZE + 1)
    return fig


def overview_figure(entries, title):
    """Images in columns; rows: the image, then guided backprop and its magnitude for each class.

    entries: (name, image, grads (K, H, W, 3), labels) per image.
    """
    count = len(entries[0][2])
    rows, cells = [[] for _ in range(1 + 2 * count)], [[] for _ in range(1 + 2 * count)]
    for name, image, grads, labels in entries:
        rows[0].append(plot.to_uint8(image, value_range=(0, 255)))
        cells[0].append(name if len(name) <= 14 else name[:13] + "…")
        for k in range(count):
            rows[1 + 2 * k] += [plot.normalize_input_map(grads[k])]
            rows[2 + 2 * k] += [plot.magnitude(grads[k])]
            cells[1 + 2 * k] += [labels[k]]
            cells[2 + 2 * k] += [None]
    suffix = [f" #{k + 1}" if count > 1 else "" for k in range(count)]
    labels = ["image", *(f"{name}{s}" for s in suffix for name in ("guided backprop", "magnitude"))]
    fig = plot.figure_rows(rows, row_titles=labels, cell_titles=cells, cmap="inferno", tile_size=1.1)
    fig.suptitle(title, fontsize=plot.TITLE_SIZE + 1)
    return fig


def setup(args):
    """Image paths, output folder, model and checked class ids: everything that can fail early."""
    cli.check_model_arg(args.model)
    paths = cli.image_sources(args.images)
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    class_ids = cli.parse_class_id(args.class_id, subject.class_names)  # bad ids fail before any work
    return paths, out, subject, class_ids


def explain_images(args):
    paths, out, subject, class_ids = setup(args)
    method = GuidedBackprop(subject.model)
    print(f"guided backpropagation of {subject.name}, {len(paths)} image(s) from {args.images}")
    stems = dict(zip(paths, cli.unique_stems(paths), strict=True))
    run, overview = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop), []
    targets = cli.class_targets(class_ids, 1)
    for batch in run:
        result = method.explain(batch.images, targets)  # one pass: the classes and their gradients
        grads = result.maps  # (n, K, H, W, 3)
        for i, path in enumerate(batch.paths):
            stem = stems[path]
            titles = cli.score_titles(subject.class_names, result, i)
            fig = image_figure(Path(path).name, batch.images[i], grads[i], titles)
            plot.save_figure(fig, out / f"{stem}_guided_backprop.png", colors=COLORS)
            plot.save_array(out / f"{stem}_guided_backprop.npy", grads[i])
            if len(overview) < OVERVIEW_IMAGES:
                labels = cli.class_labels(subject.class_names, result, i)
                overview.append((stem, batch.images[i], grads[i], labels))
    if not overview:
        raise InputError(f"none of the {len(paths)} images could be read: {run.summary()}")
    title = f"Guided backpropagation of {subject.name}: explained class (probability), colour and magnitude"
    fig = overview_figure(overview, title)
    plot.save_figure(fig, out / "guided_backpropagation_overview.png", dpi=OVERVIEW_DPI, colors=COLORS)
    print(
        f"wrote <image>_guided_backprop.png and <image>_guided_backprop.npy (K, H, W, 3) for {run.done} "
        f"image{'' if run.done == 1 else 's'} and guided_backpropagation_overview.png to {out}"
    )
    print(run.summary())
    return 0


def sanity_row(image, gbps, cams):
    """Tiles of one image: the image, then guided backprop and Grad-CAM of the trained and randomised nets.

    gbps: (S + 1, H, W, 3) and cams: (S + 1, H, W), the trained net's first.
    """
    pixels = plot.to_uint8(image, value_range=(0, 255))
    return [pixels, *(plot.normalize_input_map(g) for g in gbps), *(plot.overlay(pixels, c) for c in cams)]


def sanity_figure(rows, labels, names, means, model_name):
    """Rows of images; columns: guided backprop, then Grad-CAM, of the trained and randomised nets."""
    gbp_text, cam_text = (" / ".join(f"{m:.2f}" for m in column) for column in means.T)
    title = (
        f"Sanity check ({model_name}): maps of the trained net and of copies with random top layers\n"
        f"rank correlation with the trained maps: guided backprop {gbp_text}, Grad-CAM {cam_text}"
    )
    columns = ["image", *(f"GBP\n{name}" for name in names), *(f"Grad-CAM\n{name}" for name in names)]
    fig = plot.figure_rows(rows, col_titles=columns, row_titles=labels, tile_size=1.1)
    fig.suptitle(title, fontsize=plot.TITLE_SIZE + 1)
    return fig


def sanity_check(args):
    paths, out, subject, class_ids = setup(args)
    paths = paths[:: max(1, len(paths) // SANITY_IMAGES)][:SANITY_IMAGES]  # spread over the folder
    steps = sanity.cascade(subject.model)
    build = functools.partial(bundled.build, subject.name) if subject.name in bundled.names() else None
    nets = [subject.model, *(sanity.randomised(subject.model, top, build=build) for _, top in steps)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="layer=None")
        methods = [(GuidedBackprop(net), GradCAM(net)) for net in nets]
    names = ["trained", *(label for label, _ in steps)]
    print(f"sanity check of {subject.name}: top layers randomised (seed {sanity.SEED}), {len(paths)} images")
    run = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop)
    rows, labels, correlations = [], [], []
    targets = cli.class_targets(None if class_ids is None else class_ids[:1], 1)
    for batch in run:
        trained = methods[0][0].explain(batch.images, targets)  # the trained net picks the one class
        ids = trained.class_ids  # (n, 1), the same for every net
        gbps = [trained.maps[:, 0], *(gbp(batch.images, ids)[:, 0] for gbp, _ in methods[1:])]
        gbps = np.stack(gbps, axis=1)  # (n, S + 1, H, W, 3)
        cams = np.stack([cam(batch.images, ids)[:, 0] for _, cam in methods], axis=1)  # (n, S + 1, H, W)
        for i in range(len(ids)):
            rows.append(sanity_row(batch.images[i], gbps[i], cams[i]))
            labels.append(cli.class_labels(subject.class_names, trained, i)[0])
            correlations.append(sanity.map_correlations(gbps[i], cams[i]))
    if not rows:
        raise InputError(f"none of the {len(paths)} images could be read: {run.summary()}")
    path, means = out / "guided_backpropagation_sanity_check.png", sanity.mean_correlations(correlations)
    fig = sanity_figure(rows, labels, names, means, subject.name)
    plot.save_figure(fig, path, dpi=OVERVIEW_DPI, colors=COLORS)
    print("mean rank correlation with the trained net's maps:")
    print(sanity.correlation_table(steps, means))
    print(f"wrote {path}\n{run.summary()}")
    return 0


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    return sanity_check(args) if args.sanity_check else explain_images(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
