"""CNN visualization for TensorFlow 2 / Keras 3: builders in `lib.nets`, methods in `lib.methods`."""

import os

# TensorFlow's C++ start-up log is noise for our users; respect a value they set themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
