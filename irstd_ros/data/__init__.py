"""Datasets of IR images with target masks (NUDT-SIRST layout and a generic one)."""

from irstd_ros.data.datasets import DatasetSpec, IRSTDDataset, find_pairs, load_image, load_mask

__all__ = ["DatasetSpec", "IRSTDDataset", "find_pairs", "load_image", "load_mask"]
