"""Kedro blueprint for graph-neural-network session recommendation (DGSR on OTTO)."""

from gnn_recsys.runtime import configure_threads

# Before anything imports torch: its OpenMP pool reads the wait policy once, when it starts.
configure_threads()

__version__ = "0.1.0"
