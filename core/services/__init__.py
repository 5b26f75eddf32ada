"""Services that connect the ML code to the registry: worker, serving API, CLI, demo."""

import os

# TensorFlow's C++ start-up chatter hides our own messages; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
