"""Every method scored by every metric of `lib.metrics` on one model and one set of images.

What `example/evaluate.py` tabulates: the maps of each method (`lib.compare.compare`, timed), then
each metric on those maps, with the method itself for the randomisation tests.

    scored = evaluate(model, images, class_ids, ["grad_cam", "rise"], SHAPES_METRICS, masks=masks)
    scored.results["Grad-CAM"]          # [MetricResult, ...] in the order of the metrics
    scored.seconds["Grad-CAM"]          # s per image of the maps, once compiled
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from lib import cli, metrics, plot, report
from lib.compare import DEFAULT_LAYERS, OPTIONS, Compared, compare, tile
from lib.methods import catalog
from lib.nets import bundled

# progress(method label, metric label or "maps"), called before each step
Progress = Callable[[str, str], None]


@dataclasses.dataclass(frozen=True)
class Metric:
    """One column of the table: a `lib.metrics` function and what it takes besides the maps.

    Attributes:
        label: the column's name.
        function: `f(model, images, class_ids, maps=None, method=None, **keywords)`.
        context: names of the evaluation's keyword arguments it takes (`masks`, `cells`, ...).
        needs_method: it calls the method again (the randomisation tests), not only its maps.
        options: its own keyword arguments.
    """

    label: str
    function: Callable
    context: tuple[str, ...] = ()
    needs_method: bool = False
    options: dict = dataclasses.field(default_factory=dict)
    limit: int | None = None  # scores only the first `limit` images (set by `with_limit`)


def with_limit(measures: Sequence[Metric], limit: int) -> tuple[Metric, ...]:
    """The randomisation tests of `measures` on their first `limit` images, the others on all: each
    test explains its images once per layer of the cascade."""
    return tuple(dataclasses.replace(m, limit=limit) if m.needs_method else m for m in measures)


FAITHFULNESS = (
    Metric("deletion", metrics.deletion, options={"steps": 20}),
    Metric("insertion", metrics.insertion, options={"steps": 20}),
    Metric("average drop", metrics.average_drop),
    Metric("increase in confidence", metrics.increase_in_confidence),
    Metric("ROAD MoRF", metrics.road, options={"percentages": (10, 30, 50, 70, 90)}),
)
LOCALISATION = (
    Metric("pointing game", metrics.pointing_game, ("masks",)),
    Metric("energy in mask", metrics.energy_in_mask, ("masks",)),
)
RANDOMISATION = (
    Metric("model randomisation", metrics.model_randomisation, needs_method=True),
    Metric("data randomisation", metrics.data_randomisation, ("permuted",), needs_method=True),
)
# the generated images with exact masks, on a bundled model: every metric
SHAPES_METRICS = LOCALISATION + FAITHFULNESS + RANDOMISATION
PHOTO_METRICS = FAITHFULNESS  # photos of one object each, on an ImageNet network
GRID_METRICS = (Metric("grid pointing game", metrics.grid_pointing_game, ("cells",)),)


@dataclasses.dataclass(frozen=True)
class Scored:
    """Each method's maps and its results, on one model and image set.

    Attributes:
        compared: `compare`'s results (maps, labels, timings, method objects), in the order asked.
        results: method label -> one `MetricResult` per metric, in the order of the metrics.
        seconds: method label -> seconds per image of its maps, once compiled.
    """

    compared: list[Compared]
    results: dict[str, list]
    seconds: dict[str, float]


def evaluate(
    model,
    images: np.ndarray,
    class_ids,
    names: Sequence[str],
    measures: Sequence[Metric],
    layer: str | None = None,
    progress: Progress | None = None,
    **context,
) -> Scored:
    """Every method of `names` (catalog names) on `images`, scored by every metric of `measures`.

    Args:
        model: a Keras CNN.
        images: float32 (N, H, W, 3) as the model expects.
        class_ids: the classes to explain, as the methods take them (None: each image's top class,
            picked by the first method and then explained by all).
        names: `lib.methods.catalog` names.
        measures: the metrics, e.g. `SHAPES_METRICS`.
        layer: the class-map methods' layer (None: the catalog's default per network).
        progress: called before each method's maps and each metric.
        **context: what the metrics take by name: `masks=` (N, H, W) for the pointing game, `cells=`
            (N, H, W) for the grid pointing game, `permuted=` (a model) for the data randomisation test.
    """
    compared, results = [], {}
    for name in names:
        if progress:
            progress(name, "maps")
        (done,) = compare(model, images, [name], class_ids=class_ids, layer=layer)
        class_ids = done.result.class_ids if class_ids is None else class_ids  # the first one's classes
        compared.append(done)
        results[done.label] = [
            _score(model, images, done, measure, context, progress) for measure in measures
        ]
    return Scored(compared, results, {c.label: c.seconds for c in compared})


def _per_image(value, used):
    """Arrays in the context (masks, cells) hold one entry per image; anything else (a model) is shared."""
    return value[used] if isinstance(value, np.ndarray) else value


def _remake(done):
    """`model -> method`: the method of `done` built again, as `compare` built it, on another model."""
    layer = getattr(done.method, "layer", None)
    return lambda model: catalog.build(done.name, model, layer, **OPTIONS.get(done.name, {}))


def _score(model, images, done, measure, context, progress):
    if progress:
        progress(done.label, measure.label)
    keywords = {key: context[key] for key in measure.context if context.get(key) is not None}
    method = _remake(done) if measure.needs_method else None
    return measure.function(
        model,
        images,
        done.result.class_ids,
        maps=done.result.maps,
        method=method,
        **keywords,
        **measure.options,
    )


BUNDLED = bundled.names()
IMAGENET = ("squeezenet", "efficientnet_lite0")
SHAPES_SEED = 4040  # generator seed of the evaluation's shapes images (not one of the training seeds)


@dataclasses.dataclass(frozen=True)
class ModelEvaluation:
    """One model's evaluation: its table, the maps behind it, and what the report shows of it.

    Attributes:
        name: the model's name.
        notes: what was evaluated (data, settings), as sentences.
        scored: the evaluations merged into `table`: the shapes images for a bundled model; the photos
            and the grids of photos for an ImageNet one.
        table: methods x metrics (`lib.report.metric_table`), with seconds per image.
        images: the images of `scored[0]`, and `names`, a label for each.
    """

    name: str
    notes: tuple[str, ...]
    scored: tuple[Scored, ...]
    table: report.MetricTable
    images: np.ndarray
    names: tuple[str, ...]
    class_names: tuple[str, ...]

    def curves_png(self) -> bytes | None:
        """The randomisation curves (`randomisation_figure`) as PNG bytes, or None without that test."""
        figure = randomisation_figure(self)
        return None if figure is None else plot.figure_png(figure, dpi=90)

    def report_section(self, pictures: int, curves_png: bytes | None = None) -> report.Section:
        """The model's part of the page: notes, table, `curves_png` (from `curves_png()`), maps of
        `pictures` images."""
        gallery = [_picture(self, i) for i in range(min(pictures, len(self.images)))]
        return report.Section(self.name, self.table, self.notes, curves_png, gallery)


def evaluate_model(name, names, num_images=16, num_photos=4, num_grids=2, randomised=4, progress=None):
    """Every method of `names` on model `name`: a bundled one on generated two-object images with
    exact masks (every metric), an ImageNet one on photos (faithfulness) and on 2x2 grids of photos
    (the grid pointing game). The randomisation tests use the first `randomised` images."""
    if name in BUNDLED:
        return _bundled(name, names, num_images, randomised, progress)
    return _imagenet(name, names, num_photos, num_grids, progress)


def _bundled(name, names, num_images, randomised, progress):
    from lib.dataflow.shapes import CLASS_NAMES, generate

    model = bundled.load(name)
    images, labels, masks = generate(num_images, seed=SHAPES_SEED, objects_per_image=2)
    images = images.astype(np.float32)
    measures = with_limit(SHAPES_METRICS, randomised)
    layer = DEFAULT_LAYERS[name]
    scored = evaluate(model, images, labels, names, measures, layer=layer, progress=progress, masks=masks)
    notes = (
        f"{num_images} generated images of two shapes each (seed {SHAPES_SEED}), both classes explained, "
        f"64x64; the randomisation tests on the first {randomised}. Class-map methods at {layer}.",
    )
    names_ = tuple(f"shapes {i}" for i in range(num_images))
    return ModelEvaluation(name, notes, (scored,), _table([scored]), images, names_, tuple(CLASS_NAMES))


def _imagenet(name, names, num_photos, num_grids, progress):
    from lib.dataflow import photos
    from lib.grid_game import confident_photos

    subject = cli.load_subject(name)
    side = subject.image_size[0]
    chosen = [p for p in photos.names()][:num_photos]
    images, _ = photos.load_grids([(p,) for p in chosen], cell=side, cols=1)
    layer = DEFAULT_LAYERS[name]
    scored = [evaluate(subject.model, images, None, names, PHOTO_METRICS, layer=layer, progress=progress)]
    notes = [
        f"{len(chosen)} photos ({', '.join(chosen)}) at {side}x{side}, each photo's top class. Class-map "
        f"methods at {layer}."
    ]
    if num_grids > 0:
        big = cli.imagenet_builder(name)(weights="imagenet", input_shape=(2 * side, 2 * side, 3))
        confident = confident_photos(subject.model, cell=side)
        ids_of = {c.name: c.class_id for c in confident}
        arrangement = photos.arrangements(list(ids_of), num_grids, seed=0)
        grids, cells = photos.load_grids(arrangement, cell=side)
        ids = np.array([[ids_of[p] for p in names_] for names_ in arrangement])
        cells = np.broadcast_to(cells, (len(grids), *cells.shape)).copy()
        scored.append(
            evaluate(big, grids, ids, names, GRID_METRICS, layer=layer, progress=progress, cells=cells)
        )
        notes.append(
            f"{num_grids} 2x2 grids of the {len(confident)} photos the network is surest of, at "
            f"{2 * side}x{2 * side}, each cell's class explained."
        )
    return ModelEvaluation(
        name, tuple(notes), tuple(scored), _table(scored), images, tuple(chosen), subject.class_names
    )


def _table(scored: Sequence[Scored]) -> report.MetricTable:
    """One row per method, the columns of every evaluation side by side, seconds of the first."""
    results = {label: [r for s in scored for r in s.results.get(label, [])] for label in scored[0].results}
    return report.metric_table(results, seconds=scored[0].seconds)


def _picture(evaluation: ModelEvaluation, i: int) -> report.Picture:
    first = evaluation.scored[0].compared
    ids = first[0].result.class_ids[i]
    label = ", ".join(evaluation.class_names[c] for c in ids)
    pixels = plot.to_uint8(evaluation.images[i], value_range=(0, 255))
    tiles = [("image", plot.png_bytes(pixels, colors=256))]
    for k in range(len(ids)):
        for c in first:
            tile_ = tile(c.kind, evaluation.images[i], c.result.maps[i, k])
            tiles.append((f"{c.label}: {evaluation.class_names[ids[k]]}", plot.png_bytes(tile_, colors=256)))
    return report.Picture(f"{evaluation.names[i]} ({label})", tiles)


def randomisation_figure(evaluation: ModelEvaluation):
    """Mean similarity to the trained maps along the cascade, per method (rank correlation, SSIM,
    HOG), or None if the evaluation has no model randomisation test."""
    import matplotlib
    import matplotlib.figure

    found = {
        label: r
        for s in evaluation.scored
        for label, results in s.results.items()
        for r in results
        if isinstance(r, metrics.SanityResult) and r.curves is not None
    }
    if not found:
        return None
    fig = matplotlib.figure.Figure(figsize=(17, 4.8), layout="constrained")
    axes = fig.subplots(1, 3, sharey=False)
    colours = matplotlib.colormaps["tab20"].colors  # 17 methods: one colour each, not a cycle of ten
    for ax, measure in zip(axes, ("rank correlation", "SSIM", "HOG"), strict=True):
        for i, (label, r) in enumerate(found.items()):
            part = {"rank correlation": r, "SSIM": r.ssim, "HOG": r.hog}[measure]
            style = {"color": colours[i % 20], "linestyle": ("-", "--", ":")[i // 20 % 3]}
            ax.plot(np.nanmean(part.curves, axis=(0, 1)), marker=".", label=label, **style)
        labels = next(iter(found.values())).labels
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{measure} with the trained maps", fontsize=plot.TITLE_SIZE)
        ax.set_xlabel("layers randomised, top first (cumulative)")
        ax.axhline(0, color="gray", lw=0.5)
    axes[0].set_ylabel("mean over images and classes")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8)
    fig.suptitle(f"{evaluation.name}: cascading model randomisation (Adebayo et al. 2018)")
    return fig
