"""CNN visualization for TensorFlow 2 / Keras 3: builders in `lib.nets`, methods in `lib.methods`.

Importing `lib` changes nothing in the process: it imports no TensorFlow, sets no environment
variable and leaves every file descriptor alone. Scripts that want TensorFlow's start-up log off
their terminal call `lib.quiet_tensorflow()` before they import keras or tensorflow.
"""

__version__ = "0.1.0"


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
