"""Reading the raw downloads: MATLAB files (scipy.io), the ADE20K index (a pickle, read by an
unpickler that builds nothing but containers and numpy arrays), split lists and JSON. Every
failure is one `DataError` naming the file."""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError


def load_mat_array(path: Path, key: str) -> np.ndarray:
    """The array `key` of a MATLAB (v4-v7.2) file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = loadmat(path, variable_names=[key])
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file; expected a v5 .mat file (e.g. COCO-Stuff-10K "
                        "v1.1, not v1.0)") from None
    except (MatReadError, ValueError, TypeError, OSError) as e:
        raise DataError(f"{path}: not a readable MATLAB .mat file ({e})") from None
    if key not in data:
        raise DataError(f"{path}: has no variable {key!r}")
    array = np.asarray(data[key])
    if array.ndim != 2:
        raise DataError(f"{path}: {key} has shape {array.shape}; expected a 2-D label map")
    return array


def load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def read_names(path: Path, what: str) -> list[str]:
    """One name a line (blank lines skipped); a missing or empty list is an error naming it."""
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{what} {path} lists nothing")
    return names


# What a pickled index of lists, strings and numpy arrays needs, and nothing else: no function,
# class or module outside this table can be reached from the file.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: the index may hold only containers, "
                                         "strings, numbers and numpy arrays")
        if module.startswith("numpy") and module.endswith("multiarray"):
            return getattr(_multiarray(), name)
        if module == "collections":
            import collections

            return collections.OrderedDict
        return getattr(np, name)


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def load_index_pickle(path: Path) -> Any:
    """An official index distributed as a pickle (ADE20K's index_ade20k.pkl), unpickled with only
    containers, strings, numbers and numpy arrays allowed."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as f:
            return _IndexUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{path}: cannot read the index ({e})") from None
