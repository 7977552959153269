"""In-graph checks for NaN and Inf, tagged so that `Explainer` can tell their errors from others."""

import tensorflow as tf

NOT_FINITE = "lib.methods: NaN or Inf"


def checked(tensor):
    """`tensor`, made to raise a `NOT_FINITE`-tagged error when run if it holds NaN or Inf.

    Non-float tensors pass unchanged. The error is `tf.errors.InvalidArgumentError`; inside a
    compiled pass the scan costs microseconds.
    """
    if not tensor.dtype.is_floating:
        return tensor
    return tf.debugging.check_numerics(tensor, NOT_FINITE)
