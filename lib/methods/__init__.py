"""Visualization methods, one module each, on any functional or Sequential Keras CNN.

    from lib.methods.grad_cam import GradCAM, GuidedGradCAM
    from lib.methods.cam import CAM
    from lib.methods.guided_backprop import GuidedBackprop
    from lib.methods.deconvnet import Deconvnet

    GradCAM(model, layer=None)(images, class_ids=None)        # float32 (N, K, H, W) in [0, 1]
    GuidedGradCAM(model, layer=None)(images, class_ids=None)  # float32 (N, K, H, W, 3)
    CAM(model, layer=None)(images, class_ids=None)            # float32 (N, K, H, W) in [0, 1]
    GuidedBackprop(model)(images, class_ids=None)             # float32 (N, K, H, W, 3)
    Deconvnet(model, layer)(images, channel=None, k=9)        # deconvnet.Reconstructions

Images are float32 (N, H, W, 3) as the model expects (RGB 0-255 for our builders). `class_ids` is
None (top class), an int, K ints, N lists of K ints, or a callable (see `targets`). Scores are
logits: a final softmax is skipped. Each object flattens the model once (`graph.ModelGraph`, nested
models included), compiles its pass once per input shape, and never modifies the model; guided and
deconvnet rules are applied while running the graph (`rules`). `base.activations_and_gradients` is
the project's one `GradientTape`.
"""
