"""Samples, batches and worker processes that feed DGSR (training, validation and inference alike)."""

from gnn_recsys.loader.collate import SubgraphCollate, make_sampler
from gnn_recsys.loader.loaders import EpochBatches, LoaderConfig, make_loader
from gnn_recsys.loader.samples import SampleConfig, SampleSet, make_samples

__all__ = [
    "EpochBatches",
    "LoaderConfig",
    "SampleConfig",
    "SampleSet",
    "SubgraphCollate",
    "make_loader",
    "make_sampler",
    "make_samples",
]
