"""DGSR training samples, training with checkpoints and early stopping, top-K inference."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
