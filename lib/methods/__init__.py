"""Visualization methods, one module each, on any functional or Sequential Keras CNN.

    from lib.methods import CAM, Deconvnet, GradCAM, GuidedBackprop, GuidedGradCAM

    GradCAM(model, layer=None)(images, class_ids=None)        # float32 (N, K, H, W) in [0, 1]
    GuidedGradCAM(model, layer=None)(images, class_ids=None)  # float32 (N, K, H, W, 3)
    CAM(model, layer=None)(images, class_ids=None)            # float32 (N, K, H, W) in [0, 1]
    GuidedBackprop(model)(images, class_ids=None)             # float32 (N, K, H, W, 3)
    Deconvnet(model, layer)(images, channel=None, k=9)        # deconvnet.Reconstructions
    FeatureMaps(model, layer)(images, num_maps=16)            # (maps (N, h, w, M), channel ids)

    # called like GradCAM, (N, K, H, W) in [0, 1]:
    GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, EigenCAM, ScoreCAM, AblationCAM
    # called like GuidedBackprop, (N, K, H, W, 3) raw values; SmoothGrad wraps any of them:
    Saliency, GradientTimesInput, IntegratedGradients(model, steps=64), SmoothGrad(Saliency(model))
    # score maps (N, K, H, W), raw score changes:
    Occlusion(model, size=32, stride=16), RISE(model, masks=4000)

    # images optimised to excite channels, units, classes (float32 (B, H, W, 3)), or to match features:
    FeatureVisualization(model)([channel("fire5_concat", c) for c in range(8)], steps=512)
    Inversion(model, layer="fire3_concat")(photos, steps=300)

    result = GradCAM(model).explain(images)   # Explanation: maps, class_ids, scores, probabilities, layer
    GradCAM(model).explain(images, TopK(3))   # each image's 3 top classes, from the same one pass

Images are float32 (N, H, W, 3) as the model expects (RGB 0-255 for our builders). `class_ids` is
None (top class), `TopK(k)`, an int, K ints, N lists of K ints, or a callable (see `targets`). Scores are
logits: a final softmax (or log-softmax) is skipped. The function form `lib.methods.grad_cam.grad_cam`
keeps its `GradCAM` with the model (the module name stays the module's).

The design, from the bottom up:
- `graph.ModelGraph` flattens the model once (nested models included) into steps it runs on real
  tensors; `graph.ModelGraph.resolve` is the one way to find a layer. Private Keras API is reached
  only through `keras_internals`.
- `rules.Rules` changes the backward pass of the ReLUs while the graph runs (guided, deconvnet), so
  the user's model is never modified.
- `base.Explainer` compiles a method's pass once per input shape and kind of target, and owns the
  one `GradientTape` (`base.activations_and_gradients`); `base.ClassExplainer`, the base of the
  methods that explain class scores, adds `explain()`, which returns a `base.Explanation`.
- `class_map.ClassMap` is the base of the class-map methods: a subclass overrides one hook, the
  channel weights (Grad-CAM: the mean gradient) or the spatial weights; `channel_perturbation`
  scores channels by forward passes (Score-CAM, Ablation-CAM).
- `input_gradient.InputGradient` is the base of the input-space gradient methods (Saliency,
  Gradient x Input, guided backpropagation); `sampling` averages them over noisy copies or a path
  (SmoothGrad, Integrated Gradients); `perturbation` scores masked copies (occlusion, RISE).
- `image_optimization.ImageOptimization` optimises images through the same graph and tape:
  feature visualization (`objectives`, `parameterization`, `robustness`) and inversion.
- `catalog` builds any of them by a short name, for scripts and comparisons.
"""

from lib.methods.ablation_cam import AblationCAM
from lib.methods.base import ClassExplainer, Explainer, Explanation
from lib.methods.cam import CAM
from lib.methods.class_map import ClassMap
from lib.methods.deconvnet import Deconvnet
from lib.methods.eigen_cam import EigenCAM
from lib.methods.feature_visualization import FeatureVisualization
from lib.methods.filters import FeatureMaps, feature_maps, filter_tiles, layer_filters
from lib.methods.grad_cam import GradCAM, GuidedGradCAM
from lib.methods.grad_cam_plus_plus import GradCAMPlusPlus
from lib.methods.gradient_input import GradientTimesInput
from lib.methods.guided_backprop import GuidedBackprop
from lib.methods.hires_cam import HiResCAM
from lib.methods.input_gradient import InputGradient
from lib.methods.integrated_gradients import IntegratedGradients
from lib.methods.inversion import Inversion
from lib.methods.layer_cam import LayerCAM
from lib.methods.occlusion import Occlusion
from lib.methods.rise import RISE
from lib.methods.saliency import Saliency
from lib.methods.score_cam import ScoreCAM
from lib.methods.smoothgrad import SmoothGrad, VarGrad
from lib.methods.targets import TopK
from lib.methods.xgrad_cam import XGradCAM

__all__ = [
    "RISE",
    "AblationCAM",
    "CAM",
    "ClassExplainer",
    "ClassMap",
    "Deconvnet",
    "EigenCAM",
    "Explainer",
    "Explanation",
    "FeatureMaps",
    "FeatureVisualization",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientTimesInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputGradient",
    "IntegratedGradients",
    "Inversion",
    "LayerCAM",
    "Occlusion",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "TopK",
    "VarGrad",
    "XGradCAM",
    "feature_maps",
    "filter_tiles",
    "layer_filters",
]
