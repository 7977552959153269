"""Every class-based method by a short name, for scripts and comparisons that build methods by name.

    from lib.methods import catalog
    method = catalog.build("score_cam", model, layer="fire9_concat")
    catalog.ENTRIES["score_cam"].label          # 'Score-CAM'

Each entry says how to build the method and what its maps are, so that a caller can show them side
by side: "class map" (N, K, H, W) in [0, 1], "score map" (N, K, H, W) raw score changes (occlusion,
RISE), "input space" (N, K, H, W, 3) raw values. The method modules are imported when built.
"""

import dataclasses
import importlib

import keras

from lib.errors import InputError

KINDS = ("class map", "score map", "input space")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One method: its label, where it lives, what its maps are, and whether it takes a layer.

    Attributes:
        label: the name shown in figures ("Grad-CAM++").
        module: the module under `lib.methods`.
        cls: the class in that module.
        kind: one of `KINDS`.
        takes_layer: whether the constructor takes `layer`.
        wraps: for a wrapper (SmoothGrad), the entry of the method it wraps.
        paper: author, venue and year.
    """

    label: str
    module: str
    cls: str
    kind: str
    takes_layer: bool
    paper: str
    wraps: str | None = None


ENTRIES = {
    "grad_cam": Entry("Grad-CAM", "grad_cam", "GradCAM", "class map", True, "Selvaraju et al., ICCV 2017"),
    "grad_cam_plus_plus": Entry(
        "Grad-CAM++",
        "grad_cam_plus_plus",
        "GradCAMPlusPlus",
        "class map",
        True,
        "Chattopadhyay et al., WACV 2018",
    ),
    "xgrad_cam": Entry("XGrad-CAM", "xgrad_cam", "XGradCAM", "class map", True, "Fu et al., BMVC 2020"),
    "layer_cam": Entry("LayerCAM", "layer_cam", "LayerCAM", "class map", True, "Jiang et al., TIP 2021"),
    "hires_cam": Entry("HiResCAM", "hires_cam", "HiResCAM", "class map", True, "Draelos & Carin 2020"),
    "score_cam": Entry("Score-CAM", "score_cam", "ScoreCAM", "class map", True, "Wang et al., CVPRW 2020"),
    "ablation_cam": Entry(
        "Ablation-CAM", "ablation_cam", "AblationCAM", "class map", True, "Desai & Ramaswamy, WACV 2020"
    ),
    "eigen_cam": Entry("Eigen-CAM", "eigen_cam", "EigenCAM", "class map", True, "Muhammad & Yeasin 2020"),
    "cam": Entry("CAM", "cam", "CAM", "class map", False, "Zhou et al., CVPR 2016"),
    "saliency": Entry("Saliency", "saliency", "Saliency", "input space", False, "Simonyan et al. 2014"),
    "gradient_input": Entry(
        "Gradient x Input",
        "gradient_input",
        "GradientTimesInput",
        "input space",
        False,
        "Shrikumar et al. 2016",
    ),
    "guided_backprop": Entry(
        "Guided backprop",
        "guided_backprop",
        "GuidedBackprop",
        "input space",
        False,
        "Springenberg et al. 2014",
    ),
    "guided_grad_cam": Entry(
        "Guided Grad-CAM", "grad_cam", "GuidedGradCAM", "input space", True, "Selvaraju et al., ICCV 2017"
    ),
    "integrated_gradients": Entry(
        "Integrated Gradients",
        "integrated_gradients",
        "IntegratedGradients",
        "input space",
        False,
        "Sundararajan et al., ICML 2017",
    ),
    "smoothgrad": Entry(
        "SmoothGrad",
        "smoothgrad",
        "SmoothGrad",
        "input space",
        False,
        "Smilkov et al. 2017",
        wraps="saliency",
    ),
    "occlusion": Entry(
        "Occlusion", "occlusion", "Occlusion", "score map", False, "Zeiler & Fergus, ECCV 2014"
    ),
    "rise": Entry("RISE", "rise", "RISE", "score map", False, "Petsiuk et al., BMVC 2018"),
}


def names() -> list[str]:
    """The short names of every method, class maps first."""
    return list(ENTRIES)


def build(name: str, model: keras.Model, layer=None, **options):
    """The method `name` on `model` (at `layer` if it takes one), with its own keyword `options`.

    Raises:
        InputError: for an unknown name.
    """
    if name not in ENTRIES:
        raise InputError(f"no method {name!r}; pick one of {', '.join(ENTRIES)}")
    entry = ENTRIES[name]
    cls = getattr(importlib.import_module(f"lib.methods.{entry.module}"), entry.cls)
    if entry.wraps:
        return cls(build(entry.wraps, model, layer), **options)
    return cls(model, layer, **options) if entry.takes_layer else cls(model, **options)
