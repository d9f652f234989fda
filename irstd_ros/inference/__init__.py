"""Inference: pre-processing, backends, post-processing and the Detector facade."""
