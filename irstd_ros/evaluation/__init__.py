"""Evaluation: pixel-level IoU/nIoU/F1 and target-level Pd/Fa."""
