"""CNN visualization for TensorFlow 2 / Keras 3: builders in `lib.nets`, methods in `lib.methods`.

Importing `lib` changes nothing in the process: it imports no TensorFlow, sets no environment
variable and leaves every file descriptor alone. Scripts call `lib.start_tensorflow()` before they
import keras or tensorflow: a pooled CPU allocator and a quiet start-up log.
"""

__version__ = "0.1.0"


def start_tensorflow() -> None:
    """Imports TensorFlow as our scripts run it: CPU tensors from a memory pool, start-up log silenced.

    TensorFlow's default CPU allocator is malloc, which maps every tensor above 32 MB afresh from
    the kernel and unmaps it when freed, so each batched pass zero-fills its activations again: at
    batch 16, SqueezeNet's forward and backward pass took 35,000 page faults and 1.24x its time with
    the pool, and Score-CAM or RISE ran 1.8x slower. `TF_CPU_ALLOCATOR_USE_BFC=true` (unless the
    user set it) makes TensorFlow keep freed memory in its BFC pool and reuse it; the pool holds the
    process's peak. It takes effect only before TensorFlow's first tensor. Then `quiet_tensorflow()`.
    """
    import os

    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    quiet_tensorflow()


def quiet_tensorflow() -> None:
    """Imports TensorFlow with its start-up log silenced; for scripts, before keras is imported.

    TensorFlow's C++ start-up lines (absl, CUDA probing) go straight to file descriptor 2 before any
    log level applies, so the import runs with fd 2 sent to `os.devnull`, and `TF_CPP_MIN_LOG_LEVEL`
    is set to 3 (errors only) unless the user set it. A failed import still raises, but whatever
    TensorFlow's C++ code printed while it failed is lost: notebooks and libraries should not call
    this. Once TensorFlow is imported, only the log level is set.
    """
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
