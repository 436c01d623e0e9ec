"""Batches cross from loader workers to the main process with narrowed integers and come back whole."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_sample_events
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader import LoaderConfig, SampleSet
from gnn_recsys.loader.collate import SubgraphCollate
from gnn_recsys.loader.loaders import EpochBatches, _CompactCollate, make_loader
from gnn_recsys.models.batch import DGSRBatch, narrow_integers
from gnn_recsys.training import FitConfig


def _tensors(batch: DGSRBatch) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    batch.map(lambda t: found.append(t) or t)
    return found


def _batches(workers: int, *, compact: bool = False) -> list[DGSRBatch]:
    events = synthetic_events(
        SyntheticConfig(num_items=400, num_train_sessions=200, num_test_sessions=0, seed=5)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    config = FitConfig().model.with_(neighbour_items=8)  # the co-visitation tensors travel too
    collate = SubgraphCollate(graph, samples, config)
    batches = EpochBatches(len(samples), 128)
    batches.new_epoch(np.random.default_rng(0).permutation(len(samples))[:512])
    loader = make_loader(collate, batches, LoaderConfig(num_workers=workers), torch.device("cpu"))
    if compact:  # what make_loader does for a CUDA device, here on the CPU
        loader = DataLoader(loader.dataset, batch_sampler=batches, collate_fn=_CompactCollate(collate),
                            num_workers=workers)  # fmt: skip
    return [batch.to("cpu") for batch in loader]


def test_loader_compacts_only_for_cuda_with_workers() -> None:
    events = synthetic_events(
        SyntheticConfig(num_items=50, num_train_sessions=20, num_test_sessions=0, seed=1)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    collate = SubgraphCollate(graph, samples, FitConfig().model)

    def collate_of(workers: int, device: str, compact: bool = True) -> object:
        config = LoaderConfig(num_workers=workers, compact=compact, pin_memory=False)
        return make_loader(collate, EpochBatches(len(samples), 8), config, torch.device(device)).collate_fn

    assert isinstance(collate_of(1, "cuda"), _CompactCollate)
    assert collate_of(1, "cuda", compact=False) is collate
    assert collate_of(0, "cuda") is collate  # no hand-over between processes
    assert collate_of(1, "cpu") is collate  # widening would cost the main process what narrowing saves


@pytest.mark.parametrize(
    ("cores", "ranks", "workers"), [(2, 1, 0), (4, 1, 3), (16, 1, 8), (64, 1, 8), (16, 4, 3), (16, 8, 0)]
)
def test_auto_workers_share_the_machine_with_other_ranks(
    monkeypatch: pytest.MonkeyPatch, cores: int, ranks: int, workers: int
) -> None:
    """One worker per core but one (at most 8); ranks started by torchrun on one machine split it."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    assert LoaderConfig().workers() == workers
    assert LoaderConfig(num_workers=5).workers() == 5


def test_narrow_integers_picks_the_smallest_type_that_holds_the_values() -> None:
    assert narrow_integers(torch.tensor([-1, 0, 2])).dtype == torch.int8
    assert narrow_integers(torch.tensor([0, 200])).dtype == torch.int16
    assert narrow_integers(torch.tensor([-40_000, 5])).dtype == torch.int32
    assert narrow_integers(torch.tensor([0, 2**31])).dtype == torch.int64  # does not fit: kept
    flags = torch.tensor([True, False])
    assert narrow_integers(flags) is flags  # not int64: untouched
    assert torch.equal(narrow_integers(torch.tensor([-40_000, 5])).long(), torch.tensor([-40_000, 5]))


def test_compact_batch_is_smaller_and_restores_exactly() -> None:
    batch = _batches(0)[0]
    compact = batch.compact()
    assert any(t.dtype == torch.int8 for t in _tensors(compact))
    assert len(pickle.dumps(compact)) < len(pickle.dumps(batch)) / 2
    restored = compact.to("cpu")
    pairs = list(zip(_tensors(batch), _tensors(restored), strict=True))
    assert pairs and all(a.dtype == b.dtype and torch.equal(a, b) for a, b in pairs)
    assert all(t.dtype in (torch.int64, torch.bool, torch.float32) for t in _tensors(restored))


def test_worker_batches_equal_in_process_batches() -> None:
    """With a worker the batches travel compacted; after ``to`` they equal the in-process ones."""
    in_process, from_worker = _batches(0), _batches(1, compact=True)
    assert len(in_process) == len(from_worker) == 4
    for a, b in zip(in_process, from_worker, strict=True):
        pairs = list(zip(_tensors(a), _tensors(b), strict=True))
        assert all(x.dtype == y.dtype and torch.equal(x, y) for x, y in pairs)
