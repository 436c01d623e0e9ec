"""Raw OTTO-format JSONL (synthetic, Kaggle or user-given) or a user's event table (CSV/TSV or
parquet) -> typed event tables."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
