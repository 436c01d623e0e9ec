"""Kedro blueprint for graph-neural-network session recommendation (DGSR on OTTO)."""

__version__ = "0.1.0"
