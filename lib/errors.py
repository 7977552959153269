"""Project exceptions: one family, so scripts can turn them into a one-line message and exit status 2.

Each subclasses the built-in it refines, so `except ValueError` in user code still works.
"""


class VizError(Exception):
    """Base of every error this project raises on purpose about the user's input."""


class InputError(VizError, ValueError):
    """An image, array, class id or argument that cannot be used as given."""


class LayerError(VizError, ValueError):
    """A layer name or model structure that the requested method cannot work with."""


class WeightsError(VizError, ValueError):
    """A weights file of the wrong format, truncated, unsafe, or not matching the model."""


class MissingFileError(VizError, FileNotFoundError):
    """A path the user gave that does not exist."""
