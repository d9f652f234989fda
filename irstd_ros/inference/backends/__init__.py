"""Inference backends behind one Protocol (:class:`Backend`); see ``select.py``."""

from irstd_ros.inference.backends.base import Backend, BackendOptions

__all__ = ["Backend", "BackendOptions"]
