"""CNN visualization for TensorFlow 2 / Keras 3: builders in `lib.nets`, methods in `lib.methods`."""

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    """Sends file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines bypass Python logging."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow's start-up log is noise for our users. Its C++ lines (absl, CUDA probing) go straight to
# file descriptor 2 before any log level applies, so the first import happens with stderr silenced;
# a log level the user set themselves is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "tensorflow" not in sys.modules:
    with _stderr_silenced():
        import tensorflow  # noqa: F401  (imported here once, quietly)
