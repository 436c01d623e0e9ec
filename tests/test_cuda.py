"""CUDA-only checks (skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them on a GPU machine):
mixed-precision training, checkpoints resuming CUDA -> CPU -> CUDA, GPU scores against CPU scores,
packed batches moved to the GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_sample_events
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.inference import InferenceConfig, recommend
from gnn_recsys.loader import SampleSet
from gnn_recsys.loader.collate import SubgraphCollate
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.training import CHECKPOINT_FILE, FitConfig, train_dgsr

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SMALL = FitConfig().with_(
    model={"embedding_dim": 32, "item_max_length": 8, "user_max_length": 6},
    loss={"kind": "sampled", "num_negatives": 64},
    train={
        "batch_size": 256,
        "max_epochs": 3,
        "samples_per_epoch": None,
        "warmup_steps": 0,
        "patience": 5,
        "lr": 1e-2,
        "progress": False,
        "seed": 3,
        "device": "cuda",
    },
    loader={"num_workers": 0},
)


@pytest.fixture(scope="module")
def data() -> tuple[TemporalGraph, SampleSet, SampleSet]:
    events = synthetic_events(
        SyntheticConfig(num_items=300, num_train_sessions=300, num_test_sessions=0, seed=2)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet.from_events(graph, training_sample_events(graph))
    val = np.zeros(len(samples), dtype=bool)
    val[np.random.default_rng(0).choice(len(samples), 300, replace=False)] = True
    return graph, samples.subset(~val), samples.subset(val)


def test_amp_training_learns_on_cuda(data) -> None:
    graph, train, val = data
    result = train_dgsr(graph, train, val, SMALL.with_(train={"amp": True}))
    losses = [h["train_loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    popular = np.argsort(-np.bincount(train.target, minlength=graph.num_items))[:20]
    assert result.best_metric is not None and result.best_metric > np.isin(val.target, popular).mean()
    assert next(result.model.parameters()).device.type == "cuda"


def test_checkpoint_resumes_from_cuda_to_cpu_and_back(data, tmp_path: Path) -> None:
    graph, train, val = data
    first = train_dgsr(graph, train, val, SMALL.with_(train={"max_epochs": 1}), tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["device"] == "cuda"
    on_cpu = train_dgsr(graph, train, val, SMALL.with_(train={"max_epochs": 2, "device": "cpu"}), tmp_path)
    assert on_cpu.start_epoch == 2 and on_cpu.history[0] == first.history[0]
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["device"] == "cpu"
    back = train_dgsr(graph, train, val, SMALL.with_(train={"max_epochs": 3}), tmp_path)
    assert back.start_epoch == 3 and back.history[:2] == on_cpu.history
    assert next(back.model.parameters()).device.type == "cuda"
    assert np.isfinite(back.history[-1]["train_loss"])


def test_gpu_scores_match_cpu_scores(data) -> None:
    """The same weights give the same top-K on both devices (fp32), and close lists under autocast."""
    graph, _, _ = data
    torch.manual_seed(0)
    model = DGSR.from_config(graph.num_items, SMALL.model).eval()
    sessions = np.arange(64)
    exact = InferenceConfig(top_k=20, amp=False)
    cpu_items, cpu_scores = recommend(model, graph, sessions, exact, return_aids=False)
    gpu_items, gpu_scores = recommend(model.to("cuda"), graph, sessions, exact, return_aids=False)
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-4, atol=1e-4)
    assert (gpu_items == cpu_items).mean() > 0.99  # only near-ties may swap
    amp_items, _ = recommend(model, graph, sessions, InferenceConfig(top_k=20, amp=True), return_aids=False)
    overlap = np.mean([len(set(a) & set(c)) / 20 for a, c in zip(amp_items, cpu_items, strict=True)])
    assert overlap > 0.8


def test_packed_batch_reaches_the_gpu_whole(data) -> None:
    """A narrowed, packed batch, pinned and moved as the loader does, equals the batch built on the CPU."""
    graph, train, _ = data
    collate = SubgraphCollate(graph, train, SMALL.model)
    batch = collate(np.arange(256))
    on_gpu = batch.pack(narrow=True).pin_memory().to("cuda", non_blocking=True)
    pairs = list(zip(batch.tensors(), on_gpu.tensors(), strict=True))
    assert pairs and all(b.device.type == "cuda" for _, b in pairs)
    assert all(a.dtype == b.dtype and torch.equal(a, b.cpu()) for a, b in pairs)
