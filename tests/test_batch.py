"""Batches cross from loader workers to the main process packed in one buffer (integers narrowed for a
GPU) and come back whole."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_sample_events
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader import LoaderConfig, SampleSet
from gnn_recsys.loader.collate import SubgraphCollate
from gnn_recsys.loader.loaders import EpochBatches, PackedCollate, make_loader
from gnn_recsys.models.batch import DGSRBatch, narrowest_integer_dtype
from gnn_recsys.runtime import uses_glibc
from gnn_recsys.training import FitConfig


def _batches(workers: int, *, narrow: bool = False) -> list[DGSRBatch]:
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
    if narrow:  # what make_loader does for a CUDA device, here on the CPU
        loader = DataLoader(loader.dataset, batch_sampler=batches, num_workers=workers,
                            collate_fn=PackedCollate(collate, narrow=True))  # fmt: skip
    return [batch.to("cpu") for batch in loader]


def test_loader_packs_with_workers_and_narrows_only_for_cuda() -> None:
    events = synthetic_events(
        SyntheticConfig(num_items=50, num_train_sessions=20, num_test_sessions=0, seed=1)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    collate = SubgraphCollate(graph, samples, FitConfig().model)

    def collate_of(workers: int, device: str, **config: bool) -> object:
        loader_config = LoaderConfig(num_workers=workers, pin_memory=False, **config)
        return make_loader(
            collate, EpochBatches(len(samples), 8), loader_config, torch.device(device)
        ).collate_fn

    def narrows(fn: object) -> bool:
        assert isinstance(fn, PackedCollate) and fn.collate is collate
        return fn.narrow

    assert narrows(collate_of(1, "cuda"))
    assert not narrows(collate_of(1, "cuda", compact=False))
    assert not narrows(collate_of(1, "cpu"))  # widening would cost the main process what narrowing saves
    assert collate_of(1, "cuda", pack=False) is collate
    assert collate_of(0, "cuda") is collate  # no hand-over between processes
    assert collate_of(0, "cpu") is collate


_IN_HEAP = """
import sys
import numpy as np
from gnn_recsys.loader.loaders import _worker_init
_worker_init(0, keep_memory=sys.argv[1] == "1")
block = np.ones(64 << 20, dtype=np.uint8)  # above glibc's largest mmap threshold by default (32 MB)
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        low, high = (int(x, 16) for x in line.split()[0].split("-"))
        print(low <= block.ctypes.data < high)
        break
else:
    print(False)
"""


@pytest.mark.skipif(not (sys.platform == "linux" and uses_glibc()), reason="a glibc malloc setting")
def test_workers_keep_freed_memory_for_the_next_batch() -> None:
    """With ``loader.keep_freed_memory`` a worker's large arrays come from its heap, where freed blocks
    are reused, not from a fresh mmap that pays page faults again every batch."""

    def in_heap(keep: bool) -> bool:
        result = subprocess.run([sys.executable, "-c", _IN_HEAP, str(int(keep))],
                                capture_output=True, text=True, check=True)  # fmt: skip
        return result.stdout.strip() == "True"

    assert in_heap(True)
    assert not in_heap(False)
    graph = build_temporal_graph(synthetic_events(SyntheticConfig(num_items=50, num_train_sessions=20,
                                                                  num_test_sessions=0, seed=1)))  # fmt: skip
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    collate = SubgraphCollate(graph, samples, FitConfig().model)
    for keep in (True, False):
        config = LoaderConfig(num_workers=1, keep_freed_memory=keep)
        loader = make_loader(collate, EpochBatches(len(samples), 8), config, torch.device("cpu"))
        assert loader.worker_init_fn.keywords == {"keep_memory": keep}


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


def test_narrowest_integer_dtype_holds_every_value() -> None:
    assert narrowest_integer_dtype(torch.tensor([-1, 0, 2])) == torch.int8
    assert narrowest_integer_dtype(torch.tensor([0, 200])) == torch.int16
    assert narrowest_integer_dtype(torch.tensor([-40_000, 5])) == torch.int32
    assert narrowest_integer_dtype(torch.tensor([0, 2**31])) == torch.int64  # does not fit: kept
    assert narrowest_integer_dtype(torch.tensor([True, False])) == torch.bool  # not int64: its own
    assert narrowest_integer_dtype(torch.zeros(0, dtype=torch.int64)) == torch.int64


@pytest.mark.parametrize("narrow", [False, True])
def test_packed_batch_is_one_buffer_and_restores_exactly(narrow: bool) -> None:
    batch = _batches(0)[0]
    # edge cases beside the real tensors: an empty one and one too wide for int32
    batch = replace(batch, history_slot=torch.zeros(0, dtype=torch.int64),
                    target=batch.target + 2**40)  # fmt: skip
    packed = batch.pack(narrow=narrow)
    assert packed.num_samples == batch.num_samples
    assert packed.data.dtype == torch.uint8 and packed.data.dim() == 1
    assert len(packed.leaves) == len(batch.tensors()) > 20
    # the template carries no data: everything is in the one buffer
    assert all(t.numel() == 0 for t in packed.template.tensors())
    assert all(start % 8 == 0 for _, _, start, _ in packed.groups)
    stored = {s for s, *_ in packed.groups}
    assert (torch.int8 in stored) is narrow
    if narrow:
        assert packed.data.numel() < sum(t.numel() * t.element_size() for t in batch.tensors()) / 2
    restored = packed.to("cpu")
    pairs = list(zip(batch.tensors(), restored.tensors(), strict=True))
    assert all(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in pairs)
    assert restored.num_samples == batch.num_samples
    assert [h.layout.width for h in restored.hops] == [h.layout.width for h in batch.hops]


@pytest.mark.parametrize("narrow", [False, True])
def test_worker_batches_equal_in_process_batches(narrow: bool) -> None:
    """From a worker the batches travel packed (and narrowed); after ``to`` they equal the in-process ones."""
    in_process, from_worker = _batches(0), _batches(1, narrow=narrow)
    assert len(in_process) == len(from_worker) == 4
    for a, b in zip(in_process, from_worker, strict=True):
        pairs = list(zip(a.tensors(), b.tensors(), strict=True))
        assert pairs and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in pairs)
