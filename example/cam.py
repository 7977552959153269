"""Class activation maps of a global-average-pooling network, or train a CAM head and watch its maps form.

Usage: python example/cam.py [--train] [--predict] [--checkpoint DIR] [--class-id disk ring] [--images DIR]
"""

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import numpy as np

from lib import cli
from lib.dataflow.images import class_folders, read_image
from lib.dataflow.shapes import write_image_folder
from lib.errors import InputError, LayerError
from lib.methods.cam import CAM
from lib.methods.cam_training import cam_model, find_feature_layer, load_weights, read_checkpoint, train_cam
from lib.nets import bundled
from lib.plot import figure_rows, overlay, save_figure, save_mat, to_uint8

TRAIN_IMAGE = cli.SAMPLES_DIR / "09_disk_ring.png"
TRAIN_CLASSES = ("disk", "ring", "star")  # the two objects of TRAIN_IMAGE, and one it does not show
MAX_COLUMNS = 8  # snapshots drawn in cam_training.png
MAX_OVERVIEW = 12  # images drawn in cam_overview.png
DPI = 80  # the shapes are 64x64 pixels: more would only make files larger
COLORS = 256  # palette PNGs: the noisy backgrounds of the shapes make full-colour files 3x larger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, "shapes_vgg")
    cli.add_image_arguments(parser)
    cli.add_output_arguments(parser, "cam")
    cli.add_class_id_argument(parser, "each image's top-k; with --train, disk ring star")
    parser.add_argument(
        "--top-k", type=cli.positive_int, default=3, help="classes per image without --class-id"
    )
    parser.add_argument("--predict", action="store_true", help="draw CAM of --images (the default action)")
    parser.add_argument("--checkpoint", type=Path, help="CAM model trained by --train (default: --model)")
    train = parser.add_argument_group("training (--train)")
    train.add_argument("--train", action="store_true", help="fine-tune a CAM head on --model's conv part")
    train.add_argument("--data", type=Path, help="folder of <class>/<images> (default: generated shapes)")
    train.add_argument(
        "--num-images", type=cli.positive_int, default=600, help="generated images without --data"
    )
    train.add_argument("--epochs", type=cli.positive_int, default=4)
    train.add_argument("--train-batch-size", type=cli.positive_int, default=32)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--maps-every", type=cli.positive_int, default=2, help="record the maps every N steps")
    train.add_argument("--image", type=Path, default=TRAIN_IMAGE, help="image whose maps are recorded")
    train.add_argument(
        "--conv-width", type=cli.positive_int, help="units of cam_conv (1024; 128 on bundled models)"
    )
    train.add_argument("--train-base", action="store_true", help="fine-tune the base too, not only the head")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, shuffling and head weights")
    train.add_argument("--fresh", action="store_true", help="start afresh instead of resuming a checkpoint")
    return parser.parse_args(argv)


def quiet_class_folders(folder):
    """`class_folders` without its warnings, which a later call gives (or an error makes moot)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return class_folders(folder)


def conv_base(name, weights, generated=False):
    """The network a CAM head is trained on, and the size training images are resized to.

    A model that takes any size trains on the generated shapes at their own size, on --data at 224.
    """
    if name in bundled.names():
        return cli.load_subject(name, weights).model, bundled.INPUT_SIZE
    if name in cli.IMAGENET_MODELS:
        base = cli.imagenet_builder(name)(include_top=False, weights=cli.imagenet_weights(name, weights))
        return base, cli.IMAGENET_MODELS[name][2]
    subject = cli.load_subject(name, weights)  # a model file: the head goes on its last feature layer
    return subject.model, subject.image_size or (bundled.INPUT_SIZE if generated else None)


def model_source(name):
    """What a checkpoint records to rebuild `--model`: its name, or the absolute path of its file."""
    return name if name in cli.model_names() else str(Path(name).resolve())


def shapes_folder(folder, num_images, seed):
    """A generated `<class>/<image>` folder, written once and reused while it is complete."""
    try:
        if len(quiet_class_folders(folder)[0]) == num_images:
            return folder
    except (InputError, FileNotFoundError):
        pass
    print(f"writing {num_images} generated shape images to {folder} ...", flush=True)
    write_image_folder(folder, num_images, seed=seed)
    return folder


def train(args, out):
    """Fine-tunes a CAM head; writes the checkpoint, cam_training.png and cam_training.mat."""
    data = args.data or shapes_folder(out / "shapes_data", args.num_images, args.seed)
    paths, _, class_names = quiet_class_folders(data)  # train_cam warns about empty classes, once
    ids = cli.parse_class_id(args.class_id, class_names)
    if ids is None:
        wanted = TRAIN_CLASSES if set(TRAIN_CLASSES) <= set(class_names) else class_names[:3]
        ids = [class_names.index(name) for name in wanted]
    base, size = conv_base(args.model, args.weights, generated=args.data is None)
    width = args.conv_width or (128 if args.model in bundled.names() else 1024)
    settings = dict(feature_layer=find_feature_layer(base).name, conv_width=width, train_base=args.train_base)
    model = cam_model(base, len(class_names), seed=args.seed, **settings)
    checkpoint = args.checkpoint or out / "checkpoint"
    print(f"read {len(paths)} images of {len(class_names)} classes from {data}")
    print(
        f"training {args.model} up to {settings['feature_layer']} + a CAM head; checkpoints in {checkpoint}"
    )
    try:
        history = train_cam(
            model,
            data,
            args.epochs,
            checkpoint,
            seed=args.seed,
            batch_size=args.train_batch_size,
            image_size=size,
            learning_rate=args.learning_rate,
            inference_image=args.image,
            class_ids=ids,
            maps_every=args.maps_every,
            resume=not args.fresh,
            metadata=dict(model=model_source(args.model), image_size=size, seed=args.seed, **settings),
        )
    except InputError as err:  # a checkpoint that does not fit: name the script's flags, not the arguments
        raise InputError(
            str(err).replace("another out_dir", "another --out").replace("resume=False", "--fresh")
        ) from None
    fig = training_figure(history, args.image.name)
    save_figure(fig, out / "cam_training.png", dpi=DPI, colors=COLORS)
    save_mat(out / "cam_training.mat", {**history.arrays(), "class_names": np.array(class_names, object)})
    print(
        f"validation accuracy {history.val_accuracy[-1]:.1%} after {len(history.loss)} epochs; "
        f"wrote {out / 'cam_training.png'}, {out / 'cam_training.mat'}"
    )
    return checkpoint


def training_figure(history, image_name):
    """Rows: classes; columns: up to MAX_COLUMNS snapshots, first to last, denser early (when maps change)."""
    picks = np.unique(np.round(np.geomspace(1, len(history.steps), MAX_COLUMNS)) - 1)
    image = history.image
    rows, cells = [], []
    for k in range(len(history.class_ids)):
        rows.append([overlay(image, history.maps[int(s)][k]) for s in picks])
        cells.append([f"p={history.scores[int(s)][k]:.2f}" for s in picks])
    titles = []
    for s in picks.astype(int):
        accuracy = history.step_accuracy[s]
        titles.append(
            f"step {history.steps[s]}\n" + ("untrained" if np.isnan(accuracy) else f"acc {accuracy:.2f}")
        )
    names = [history.class_names[c] for c in history.class_ids]
    fig = figure_rows(
        rows, col_titles=titles, row_titles=names, cell_titles=cells, colorbar=True, tile_size=1.4
    )
    fig.suptitle(
        f"CAM of {image_name} while the head trains (p: softmax score of the row's class)", fontsize=10
    )
    return fig


def subject_of(args, checkpoint):
    """The model to explain: a trained CAM model from `checkpoint`, or `--model`."""
    if checkpoint is None:
        return cli.load_subject(args.model, args.weights)
    info = read_checkpoint(checkpoint)
    meta = info.get("metadata", {})
    if "model" not in meta:
        raise InputError(
            f"checkpoint '{checkpoint}' was not written by example/cam.py --train (no model recorded)"
        )
    # Random weights: the checkpoint holds every weight.
    if meta["model"] in bundled.names():
        base = bundled.build(meta["model"])
    elif meta["model"] in cli.IMAGENET_MODELS:
        base = cli.imagenet_builder(meta["model"])(include_top=False)
    else:
        base = cli.load_subject(meta["model"]).model  # the model file it was trained on
    keys = ("feature_layer", "conv_width", "train_base", "seed")
    model = cam_model(base, len(info["class_names"]), **{key: meta[key] for key in keys})
    load_weights(model, checkpoint)
    print(f"loaded the CAM model trained for {info['epoch']} epochs from {checkpoint}")
    size = meta["image_size"]  # a side (named models), [h, w] (model files) or None (any size)
    if isinstance(size, int):
        size = (size, size)
    size = tuple(size) if size else None
    name = Path(meta["model"]).name
    return cli.Subject(f"{name} + CAM head", model, tuple(info["class_names"]), size)


def explainer(subject):
    try:
        return CAM(subject.model)
    except LayerError as err:
        raise LayerError(
            f"{err}, or train a CAM head first: example/cam.py --train --model "
            f"{subject.path or subject.name} [--weights ...], then --predict --checkpoint <out>/checkpoint"
        ) from None


def predict(args, out, checkpoint):
    """CAM of each image for its top-k or the chosen classes; writes figures and cam.mat."""
    paths = cli.image_sources(args.images)
    subject = subject_of(args, checkpoint)
    names = list(subject.class_names)
    chosen = cli.parse_class_id(args.class_id, names)
    if chosen is None and args.top_k > len(names):
        raise InputError(
            f"--top-k {args.top_k} exceeds the model's {len(names)} classes; pass at most {len(names)}"
        )
    cam = explainer(subject)
    run = cli.ImageRun(paths, subject.image_size, args.batch_size, crop=args.crop)
    kept, images, all_maps, all_ids, all_scores = [], [], [], [], []
    targets = cli.class_targets(chosen, args.top_k)
    for batch in run:
        result = cam.explain(batch.images, targets)  # one pass: the classes, their probabilities, maps
        for path, image, row, class_ids, scores in zip(
            batch.paths, batch.images, result.maps, result.class_ids, result.probabilities, strict=True
        ):
            stem = Path(path).stem
            figure = image_figure(
                image, row, [f"{names[c]} {p:.2f}" for c, p in zip(class_ids, scores, strict=True)]
            )
            save_figure(figure, out / f"{stem}_cam.png", dpi=DPI, colors=COLORS)
            kept.append(stem)
            images.append(image)
            all_maps.append(row)
            all_ids.append(class_ids)
            all_scores.append(scores)
    mat = {"maps": np.stack(all_maps), "class_ids": np.stack(all_ids), "scores": np.stack(all_scores)}
    save_mat(
        out / "cam.mat", {**mat, "files": np.array(kept, object), "class_names": np.array(names, object)}
    )
    fig = overview_figure(images, mat, kept, names, subject.name)
    save_figure(fig, out / "cam_overview.png", dpi=DPI, colors=COLORS)
    print(f"{run.summary()}; wrote {len(kept)} *_cam.png, cam.mat and cam_overview.png to {out}")


def image_figure(image, maps, titles):
    """One row: the image, then the CAM overlay of each class, titled with class and score."""
    row = [to_uint8(image, (0, 255))] + [overlay(image, heatmap) for heatmap in maps]
    return figure_rows([row], cell_titles=[["image", *titles]], colorbar=True, tile_size=2.0)


def short(text, length=16):
    """`text` cut to `length` characters, so that titles of narrow tiles do not overlap."""
    return text if len(text) <= length else text[: length - 1] + "…"


def overview_figure(images, mat, stems, names, model_name):
    """Columns: the first MAX_OVERVIEW images; rows: the image, then its maps by rank."""
    count, rank = min(len(images), MAX_OVERVIEW), mat["class_ids"].shape[1]
    rows = [[to_uint8(image, (0, 255)) for image in images[:count]]]
    cells = [[short(stem) for stem in stems[:count]]]
    for k in range(rank):
        rows.append([overlay(images[i], mat["maps"][i, k]) for i in range(count)])
        cells.append(
            [f"{short(names[mat['class_ids'][i, k]], 11)} {mat['scores'][i, k]:.2f}" for i in range(count)]
        )
    labels = ["image"] + [f"class {k + 1}" for k in range(rank)]
    fig = figure_rows(rows, row_titles=labels, cell_titles=cells, tile_size=1.1)
    fig.suptitle(f"CAM of {model_name}: class and softmax score above each map", fontsize=10)
    return fig


def main(args):
    if args.list_layers:
        print(cli.list_layers(subject_of(args, args.checkpoint).model))
        return 0
    cli.check_model_arg(args.model)
    if args.data is not None:
        quiet_class_folders(args.data)  # a bad folder or image fails here, before anything is written
    if args.train:
        read_image(args.image)
    checkpoint = args.checkpoint
    if args.predict or not args.train:
        cli.image_sources(args.images)
    out = cli.prepare_output(args.out)
    if args.train:
        checkpoint = train(args, out)
    if args.predict or not args.train:
        predict(args, out, checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
