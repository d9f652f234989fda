"""Training: SoftIoU loss and the resumable training loop."""
