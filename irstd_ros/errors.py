"""Narrow exception classes shared by the core, the CLI and the node.

Every error the user can cause derives from :class:`IrstdError`, so the CLI
can print one readable line and exit non-zero, and the node can log and count.
"""

from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` (an exception: its message) on one line, runs of whitespace one space: the
    CLI's error line, and multi-line reports of OpenVINO and others inside one log line."""
    return " ".join(str(text).split())


class IrstdError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(IrstdError, ValueError):
    """An invalid configuration value or an unknown name."""


class CheckpointError(IrstdError):
    """A model file is missing, unreadable, corrupt or of another architecture."""


class DatasetError(IrstdError):
    """A dataset folder is missing, empty or inconsistent."""


class ImageConversionError(IrstdError, ValueError):
    """An image message cannot be turned into an array.

    ``kind`` is a short stable name (``unknown_encoding``, ``size_mismatch``...)
    used as a counter key by the node.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BackendError(IrstdError):
    """An inference backend is unavailable or failed."""


class BagError(IrstdError):
    """A rosbag2 bag is missing, unreadable, lacks a topic, or cannot be written."""


class DeviceOutOfMemory(IrstdError):
    """The inference device ran out of memory on one frame, which is dropped.

    Raised by :meth:`irstd_ros.inference.detector.Detector.detect`; ``fallback`` is what
    the detector did about it (a log line: it moved to the CPU, or failed to), else None.
    """

    kind = "out_of_memory"

    def __init__(self, message: str, fallback: str | None = None) -> None:
        super().__init__(message)
        self.fallback = fallback
