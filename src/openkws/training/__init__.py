"""openkws training: data synthesis, encoders, metric-learning losses, trainer, export, evaluation."""
