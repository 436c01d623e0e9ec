"""Contiguous item ids and the dynamic session-item graph as time-sorted CSR arrays."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
