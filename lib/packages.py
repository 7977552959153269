"""Data files inside installed packages (weights, photos), found without importing the packages' code."""

import importlib.util
import os


def is_installed(package: str) -> bool:
    """Whether the top-level `package` can be imported; finding its spec runs none of its code."""
    return importlib.util.find_spec(package) is not None


def locate(package: str, relative: str) -> str | None:
    """The path of `relative` ('/'-separated) inside the installed `package`, or None if it is absent.

    Only the import path is searched (`importlib.util.find_spec`): nothing of the package is imported.
    """
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    roots = spec.submodule_search_locations or [os.path.dirname(spec.origin)]
    for root in roots:
        path = os.path.join(root, *relative.split("/"))
        if os.path.isfile(path):
            return path
    return None
