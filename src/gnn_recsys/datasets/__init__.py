"""Kedro datasets for the project's own artefacts (temporal graphs, torch checkpoints)."""

from .temporal_graph_dataset import TemporalGraphDataset
from .torch_dataset import TorchDataset

__all__ = ["TemporalGraphDataset", "TorchDataset"]
