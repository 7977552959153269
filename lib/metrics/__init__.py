"""Which map to trust: faithfulness, localisation and randomisation metrics of explanation maps.

Every metric is called as `f(model, images, class_ids, maps=None, method=None, **its_own)`, with
precomputed maps (N, K, H, W) or a method object that makes them, and returns a `MetricResult`: the
value per image and target, their mean and a bootstrap 95% interval (doc/metrics.md).

    from lib import metrics
    result = metrics.pointing_game(model, images, ids, method=GradCAM(model), masks=masks)
    result.values, result.mean, result.interval, result.baseline
"""

from lib.metrics.faithfulness import average_drop, deletion, increase_in_confidence, insertion
from lib.metrics.inputs import Scorer, as_class_maps, maps_and_classes, scorer
from lib.metrics.localisation import energies, energy_in_mask, grid_pointing_game, hits, pointing_game
from lib.metrics.randomisation import SanityResult, data_randomisation, model_randomisation
from lib.metrics.result import MetricResult, bootstrap
from lib.metrics.road import road

__all__ = [
    "MetricResult",
    "SanityResult",
    "Scorer",
    "as_class_maps",
    "average_drop",
    "bootstrap",
    "data_randomisation",
    "deletion",
    "energies",
    "energy_in_mask",
    "grid_pointing_game",
    "hits",
    "increase_in_confidence",
    "insertion",
    "maps_and_classes",
    "model_randomisation",
    "pointing_game",
    "road",
    "scorer",
]
