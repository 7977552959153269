"""What every metric returns: per-image values, their mean, and a bootstrap 95% interval."""

import dataclasses

import numpy as np

RESAMPLES = 2000  # bootstrap resamples of the images


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """The values of one metric on a batch of images.

    Attributes:
        name: the metric ("deletion", "pointing game", ...).
        values: float (N, K), one value per image and target; NaN where the metric is undefined for
            that pair (e.g. the pointing game of a class absent from the image).
        mean: the mean over the defined values.
        interval: (low, high), the 2.5 and 97.5 percentiles of the mean over images resampled with
            replacement (`RESAMPLES` times, seeded): a 95% bootstrap interval.
        baseline: the same metric of a map that knows nothing of the image (a centre prior, a uniform
            map, ...), to print beside it; None if the metric has none.
        curves: float (N, K, T), the curve behind each value (deletion, insertion, ROAD, the
            randomisation cascade), or None.
        steps: float (T,), the abscissa of the curves (fraction of pixels, cascade step), or None.
        labels: names of the T points of the curves (the randomised layers), or None.
        higher_is_better: how to read the values (False for deletion and average drop).
    """

    name: str
    values: np.ndarray
    mean: float
    interval: tuple[float, float]
    higher_is_better: bool = True
    baseline: "MetricResult | None" = None
    curves: np.ndarray | None = None
    steps: np.ndarray | None = None
    labels: tuple[str, ...] | None = None

    def __str__(self):
        text = f"{self.name}: {self.mean:.3f} [{self.interval[0]:.3f}, {self.interval[1]:.3f}]"
        return text if self.baseline is None else f"{text}, baseline {self.baseline.mean:.3f}"


def result(name, values, seed=0, higher_is_better=True, **fields) -> MetricResult:
    """A `MetricResult` of `values` (N, K), with its mean and bootstrap interval."""
    values = np.asarray(values, np.float64)
    values = values.reshape(values.shape[0], -1) if values.ndim != 2 else values
    mean, interval = bootstrap(values, seed)
    return MetricResult(name, values, mean, interval, higher_is_better, **fields)


def bootstrap(values, seed=0, resamples=RESAMPLES):
    """(mean, (low, high)): the mean of the defined values (N, K) and its 95% bootstrap interval.

    Images (rows) are resampled with replacement, keeping each image's K values together; the mean of
    a resample is over its defined values. With one image, or no defined value, the interval is the
    mean itself (NaN if nothing is defined).
    """
    values = np.asarray(values, np.float64)
    defined = ~np.isnan(values)
    if not defined.any():
        return float("nan"), (float("nan"), float("nan"))
    mean = float(values[defined].mean())
    if values.shape[0] < 2:
        return mean, (mean, mean)
    rows = np.random.default_rng(seed).integers(0, values.shape[0], (resamples, values.shape[0]))
    sums = np.where(defined, values, 0).sum(axis=1)[rows].sum(axis=1)  # (resamples,)
    counts = defined.sum(axis=1)[rows].sum(axis=1)
    means = sums[counts > 0] / counts[counts > 0]
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, (float(low), float(high))
