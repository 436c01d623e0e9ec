"""Local validation split and labels, following the official OTTO protocol."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
