"""Candidate export: Kaggle submission CSVs named after the model that produced them."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
