"""Raw OTTO-format JSONL (synthetic, Kaggle or user-given) -> typed event tables."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
