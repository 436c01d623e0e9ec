"""Ranking stage: candidate features, a learning-to-rank model per type, reranked candidates."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
