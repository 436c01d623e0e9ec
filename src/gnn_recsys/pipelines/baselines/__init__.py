"""Popularity and co-visitation baselines: top-K candidates for the local and the Kaggle test sessions."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
