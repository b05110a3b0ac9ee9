"""Every exception fastdl raises on purpose.

Each one derives from :class:`FastDLError` and from the built-in type a Python user would expect
(``ValueError`` for a bad value, ``TypeError`` for a bad type, ...), so ``except ValueError`` keeps
working. Messages say what was received, what was expected and what to do next.
"""

from __future__ import annotations


class FastDLError(Exception):
    """Base class of all errors raised by fastdl on purpose."""


class UnknownBackendError(FastDLError, ValueError):
    """A backend name that fastdl does not know."""


class BackendUnavailableError(FastDLError, RuntimeError):
    """A known backend that cannot run here (package missing, no CUDA device, ...)."""


class ShapeError(FastDLError, ValueError):
    """An array of the wrong rank, feature count or batch size."""


class DTypeError(FastDLError, TypeError):
    """An array of a dtype fastdl cannot compute with (int, bool, complex, object, ...)."""


class NonFiniteError(FastDLError, ValueError):
    """NaN or Inf in an input array."""


class LabelError(FastDLError, ValueError):
    """Labels outside [0, C), not integers, or one-hot rows that are not one-hot."""


class DeviceError(FastDLError, TypeError):
    """An array that lives on another device than the backend computes on."""


class DivergenceError(FastDLError, FloatingPointError):
    """Training produced a non-finite loss; the network keeps its last good parameters."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class DatasetError(FastDLError, OSError):
    """A data set that cannot be found, downloaded or verified."""


class FileFormatError(FastDLError, ValueError):
    """A file (IDX, parameters, checkpoint) that is malformed, truncated or unsafe."""
