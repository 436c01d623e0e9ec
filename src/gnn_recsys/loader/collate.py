"""Sampling and batch building, run where the batches are made (a DataLoader worker or the main process).

As in PyG's loaders, the sampler runs in the workers' collate step: the main process only moves
ready tensors to the device and runs the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gnn_recsys.graph.sampler import TemporalSubgraphSampler
from gnn_recsys.loader.samples import SampleSet
from gnn_recsys.models.batch import DGSRBatch, make_batch
from gnn_recsys.models.config import ModelConfig


def make_sampler(graph: Any, config: ModelConfig) -> TemporalSubgraphSampler:
    """The temporal subgraph sampler that feeds a model of ``config``."""
    return TemporalSubgraphSampler(
        graph,
        item_max_length=config.item_max_length,
        user_max_length=config.user_max_length,
        k_hop=config.num_layers,
        context_window=config.context_window,
        distinct_sessions=config.distinct_sessions,
    )


class SubgraphCollate:
    """Sample indices -> :class:`DGSRBatch`: temporal subgraphs, then per-hop tensors.

    Picklable (graph arrays are memory-mapped or shared copy-on-write by forked workers).
    """

    def __init__(
        self,
        graph: Any,
        samples: SampleSet,
        config: ModelConfig,
        *,
        sampler: Any = None,
        with_target: bool = True,
    ) -> None:
        self.graph = graph
        self.samples = samples
        self.config = config
        self.sampler = sampler if sampler is not None else make_sampler(graph, config)
        self.with_target = with_target

    def __call__(self, rows: np.ndarray) -> DGSRBatch:
        rows = np.asarray(rows, dtype=np.int64)
        session, cut_ts = self.samples.session[rows], self.samples.cut_ts[rows]
        subgraph = self.sampler.sample(session, cut_ts)
        typed = self.with_target and self.samples.target_type is not None
        return make_batch(
            self.graph,
            subgraph,
            cut_ts,
            self.config.num_layers,
            context_window=self.config.context_window,
            target=self.samples.target[rows] if self.with_target else None,
            target_type=self.samples.target_type[rows] if typed else None,
            history_length=self.config.history_length if self.config.repeat_bonus else None,
            neighbour_items=self.config.neighbour_items,
        )
