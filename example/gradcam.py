"""Grad-CAM and Guided Grad-CAM of each image's top classes (or chosen ones), as figures and .npy maps.

Usage: python example/gradcam.py [--model shapes_vgg] [--images data/samples] [--class-id 3 4]
"""

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split

from lib import cli, plot, pointing
from lib.errors import InputError
from lib.methods import GuidedGradCAM

TOP_K = 2  # default classes per image: two-object samples then show one map per object
OVERVIEW_IMAGES = 12  # the overview figure shows the first images of a run, not a whole folder
OVERVIEW_DPI = 80  # 12 images fit a README at full size
COLORS = 256  # palette PNGs: the noisy backgrounds of the shapes make full-colour files 3x larger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, "shapes_vgg")
    cli.add_image_arguments(parser)
    parser.add_argument("--layer", default=None, help="spatial layer to explain (default: the last one)")
    cli.add_class_id_argument(parser, f"each image's top {TOP_K} predictions")
    cli.add_output_arguments(parser, "gradcam")
    parser.add_argument(
        "--pointing-game",
        type=int,
        metavar="N",
        default=None,
        help="print the pointing-game table of both bundled models on N two-object images (no figures)",
    )
    parser.add_argument(
        "--grid-pointing-game",
        type=int,
        metavar="N",
        default=None,
        help="print the grid pointing game of both ImageNet networks on N 2x2 grids of photos (no figures)",
    )
    return parser.parse_args(argv)


def image_figure(name, image, cams, guided, titles, layer):
    """One row per class: image | Grad-CAM overlay | Guided Grad-CAM."""
    pixels = plot.to_uint8(image, value_range=(0, 255))
    rows = [
        [pixels, plot.overlay(pixels, cam), plot.normalize_input_map(g)]
        for cam, g in zip(cams, guided, strict=True)
    ]
    fig = plot.figure_rows(
        rows,
        col_titles=["image", f"Grad-CAM ({layer})", "Guided Grad-CAM"],
        row_titles=titles,
        colorbar=True,
    )
    fig.suptitle(name, fontsize=plot.TITLE_SIZE + 1)
    return fig


def overview_figure(entries, title):
    """Images in columns; rows: the image, Grad-CAM of each class, Guided Grad-CAM of each class.

    entries: (name, image, cams (K, H, W), guided (K, H, W, 3), labels) per image.
    """
    count = len(entries[0][2])
    rows, cells = [[] for _ in range(1 + 2 * count)], [[] for _ in range(1 + 2 * count)]
    for name, image, cams, guided, labels in entries:
        pixels = plot.to_uint8(image, value_range=(0, 255))
        rows[0].append(pixels)
        cells[0].append(name if len(name) <= 14 else name[:13] + "…")
        for k in range(count):
            rows[1 + k].append(plot.overlay(pixels, cams[k]))
            cells[1 + k].append(labels[k])
            rows[1 + count + k].append(plot.normalize_input_map(guided[k]))
            cells[1 + count + k].append(labels[k].split()[0])
    labels = ["image", *(f"Grad-CAM #{k + 1}" for k in range(count))]
    labels += [f"Guided #{k + 1}" for k in range(count)]
    fig = plot.figure_rows(rows, row_titles=labels, cell_titles=cells, tile_size=1.1)
    fig.suptitle(title, fontsize=plot.TITLE_SIZE + 1)
    return fig


def make_method(model, layer):
    """GuidedGradCAM at `layer`, whose `explain()` gives the Grad-CAM maps too; None takes the last
    spatial layer without a warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="layer=None")
        return GuidedGradCAM(model, layer)


def explain_images(args):
    cli.check_model_arg(args.model)
    paths = cli.image_sources(args.images)
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    method = make_method(subject.model, args.layer)
    class_ids = cli.parse_class_id(args.class_id, subject.class_names)  # bad ids fail before any work
    print(f"Grad-CAM of {subject.name} at layer {method.layer}, {len(paths)} image(s) from {args.images}")
    stems = dict(zip(paths, cli.unique_stems(paths), strict=True))
    run, overview = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop), []
    targets = cli.class_targets(class_ids, TOP_K)
    for batch in run:
        result = method.explain(batch.images, targets)  # one pass: classes, Grad-CAM and guided
        cams, guided = result.grad_cam, result.maps  # (n, K, H, W), (n, K, H, W, 3)
        for i, path in enumerate(batch.paths):
            stem = stems[path]
            titles = cli.score_titles(subject.class_names, result, i)
            fig = image_figure(Path(path).name, batch.images[i], cams[i], guided[i], titles, method.layer)
            plot.save_figure(fig, out / f"{stem}_gradcam.png", colors=COLORS)
            plot.save_array(out / f"{stem}_gradcam.npy", cams[i])
            plot.save_array(out / f"{stem}_guided_gradcam.npy", guided[i])
            if len(overview) < OVERVIEW_IMAGES:
                labels = cli.class_labels(subject.class_names, result, i)
                overview.append((stem, batch.images[i], cams[i], guided[i], labels))
    if not overview:
        raise InputError(f"none of the {len(paths)} images could be read: {run.summary()}")
    title = f"Grad-CAM ({subject.name}, {method.layer}) and Guided Grad-CAM of the top classes (probability)"
    fig = overview_figure(overview, title)
    plot.save_figure(fig, out / "gradcam_overview.png", dpi=OVERVIEW_DPI, colors=COLORS)
    print(
        f"wrote <image>_gradcam.png, <image>_gradcam.npy (K, H, W), <image>_guided_gradcam.npy "
        f"(K, H, W, 3) for {run.done} image{'' if run.done == 1 else 's'} and gradcam_overview.png to {out}"
    )
    print(run.summary())
    return 0


def pointing_game_table(num_images, batch_size):
    """Markdown table: pointing game and energy in mask of every class-map method on two-object images."""
    if num_images < 1:
        raise InputError(f"--pointing-game {num_images}; pass a number of images >= 1")
    print(f"pointing game on {num_images} two-object images (lib.dataflow.shapes seed {pointing.SEED})")
    bars = {}

    def progress(label, done, total):  # a bar per method, and a line when it is done
        if done == 0:
            bars[label] = cli.progress(total)
            return
        bars[label].update(done)
        if done == total:
            print(f"  {label} done")

    return pointing.pointing_table(pointing.pointing_scores(num_images, batch_size, progress=progress))


def grid_pointing_game_table(num_grids):
    """The grid pointing game of every class-map method on SqueezeNet and EfficientNet-Lite0 (markdown)."""
    from lib.grid_game import report

    if num_grids < 1:
        raise InputError(f"--grid-pointing-game {num_grids}; pass a number of grids >= 1")
    print(f"grid pointing game on {num_grids} 2x2 grids of photos per network (lib.grid_game)")
    return report(num_grids)[0]


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    if args.pointing_game is not None:
        print(pointing_game_table(args.pointing_game, args.batch_size))
        return 0
    if args.grid_pointing_game is not None:
        print(grid_pointing_game_table(args.grid_pointing_game))
        return 0
    return explain_images(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
