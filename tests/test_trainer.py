"""DGSR training loop: determinism, learning, early stopping, resume (also after SIGKILL), inference, MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
import torch
from torch import nn

from gnn_recsys.graph.sampler import TemporalSubgraphSampler
from gnn_recsys.graph.temporal_graph import AppendedArray, TemporalGraph, build_temporal_graph
from gnn_recsys.inference import InferenceConfig, recall_at_k, recommend, recommend_by_type
from gnn_recsys.inference.recommend import choose_keep_windows
from gnn_recsys.loader import SampleSet
from gnn_recsys.models.batch import make_batch
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.models.loss import add_history_bonus
from gnn_recsys.models.topk import keep_items_in_window, recent_history_items, topk_blocked
from gnn_recsys.serving.mlflow_model import DGSRRecommender, append_sessions, log_dgsr_model
from gnn_recsys.training import CHECKPOINT_FILE, FitConfig, train_dgsr
from gnn_recsys.training.config import TrainConfig
from gnn_recsys.training.ema import WeightAverage

SRC = Path(__file__).resolve().parents[1] / "src"

# Everything small: ~3k events, 16-dim model, 7 batches per epoch. Validation as the pipeline does it:
# 40% of the sessions held out whole, each cut once, their events from the cut on hidden from the graph.
DATA_CODE = """
import numpy as np
from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader.samples import SampleConfig, hold_out_validation, make_samples
from gnn_recsys.training import FitConfig

def tiny_data():
    events = synthetic_events(SyntheticConfig(num_items=200, num_train_sessions=200, num_test_sessions=0, seed=11))
    config = SampleConfig(seed=0, val_fraction=0.4, future_target_types=())
    visible, val_targets = hold_out_validation(events, np.zeros(0, np.int64), config)
    graph = build_temporal_graph(visible, item_aids=np.sort(events["aid"].unique().to_numpy()))
    train, val = make_samples(graph, np.zeros(0, np.int64), val_targets, config)
    return visible, graph, train, val

TINY = FitConfig().with_(
    model={"embedding_dim": 16, "item_max_length": 6, "user_max_length": 4},
    loss={"kind": "sampled", "num_negatives": 32},
    train={"batch_size": 256, "max_epochs": 3, "samples_per_epoch": None, "warmup_steps": 0, "patience": 5,
           "min_steps": 0, "lr": 1e-2, "progress": False, "seed": 7},
    loader={"num_workers": 0},
)
"""
_namespace: dict = {}
exec(DATA_CODE, _namespace)  # the SIGKILL test's child process runs the very same code
tiny_data = _namespace["tiny_data"]
TINY: FitConfig = _namespace["TINY"]


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, TemporalGraph, SampleSet, SampleSet]:
    return tiny_data()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Bit-identical CPU results need the same thread count in every compared run (matmul splits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _curve(history: list[dict[str, float]]) -> list[tuple[float, float, float]]:
    return [(h["epoch"], h["train_loss"], h.get("val_recall@20", -1.0)) for h in history]


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_validation_rows_come_from_held_out_sessions(data) -> None:
    """No validation session is a training session, and none of its events after its cut is in the
    graph the training samples are drawn from (hold_out_validation cuts by row: an event tied in time
    with the cut event and stored before it stays visible, though the validation sample itself only
    sees ``ts < cut``)."""
    events, graph, train, val = data
    assert len(val) >= 50 and not np.isin(val.session, train.session).any()
    assert len(np.unique(val.session)) == len(val)  # one cut per held-out session
    ptr, ev_ts = np.asarray(graph.session_ptr), np.asarray(graph.ev_ts)
    for s, cut in zip(val.session, val.cut_ts, strict=True):
        session_ts = ev_ts[ptr[s] : ptr[s + 1]]
        assert len(session_ts) and session_ts.max() <= cut


def test_training_is_deterministic_and_learns(data, tmp_path: Path) -> None:
    _, graph, train, val = data
    seen: list[tuple[int, dict[str, float]]] = []
    first = train_dgsr(graph, train, val, TINY, on_epoch_end=lambda e, m: seen.append((e, m)))
    second = train_dgsr(graph, train, val, TINY.with_(loader={"num_workers": 1}))
    assert _curve(first.history) == _curve(second.history)
    _assert_same_weights(first.model, second.model)

    assert [e for e, _ in seen] == [1, 2, 3]
    assert all({"train_loss", "val_recall@20", "train_samples_per_s"} <= set(m) for _, m in seen)
    losses = [m["train_loss"] for _, m in seen]
    assert losses[-1] < losses[0]
    # Learned something beyond popularity: beats the 20 most frequent training targets.
    popular = np.argsort(-np.bincount(train.target, minlength=graph.num_items))[:20]
    popularity_recall = np.isin(val.target, popular).mean()
    assert first.best_metric is not None and first.best_metric > popularity_recall + 0.1
    assert first.best_metric == max(m["val_recall@20"] for _, m in seen)


def test_early_stopping_keeps_the_best_epoch(data) -> None:
    _, graph, train, val = data
    frozen = TINY.with_(
        train={"lr": 0.0, "max_epochs": 6, "patience": 2}
    )  # nothing changes: no epoch improves
    result = train_dgsr(graph, train, val, frozen)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0]
    assert result.stopped_early and result.best_epoch == 1


@pytest.mark.parametrize(("sparse", "ema_decay"), [(False, None), (True, None), (False, 0.9)])
def test_resume_continues_and_matches_an_uninterrupted_run(
    data, tmp_path: Path, sparse: bool, ema_decay: float | None
) -> None:
    _, graph, train, val = data
    base = TINY.with_(model={"sparse_embedding": sparse}, train={"ema_decay": ema_decay})
    two = train_dgsr(graph, train, val, base.with_(train={"max_epochs": 2}), tmp_path / "a")
    assert two.start_epoch == 1 and len(two.history) == 2
    resumed_epochs: list[int] = []
    resumed = train_dgsr(
        graph,
        train,
        val,
        base.with_(train={"max_epochs": 3}),
        tmp_path / "a",
        on_epoch_end=lambda e, m: resumed_epochs.append(e),
    )
    straight = train_dgsr(graph, train, val, base.with_(train={"max_epochs": 3}), tmp_path / "b")
    assert resumed.start_epoch == 3 and resumed_epochs == [3]
    assert _curve(resumed.history) == _curve(straight.history)
    _assert_same_weights(resumed.model, straight.model)
    last_a = torch.load(tmp_path / "a" / CHECKPOINT_FILE, weights_only=True)["model"]
    last_b = torch.load(tmp_path / "b" / CHECKPOINT_FILE, weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)


def _ema_by_hand(snapshots: list[torch.Tensor], decay: float) -> torch.Tensor:
    """a_0 = w_0; a_t = d_t a_{t-1} + (1 - d_t) w_t with d_t = min(decay, t / (9 + t)), t = 1, 2, ..."""
    average = snapshots[0].clone()
    for t, weights in enumerate(snapshots[1:], start=1):
        d = min(decay, t / (9 + t))
        average = d * average + (1 - d) * weights
    return average


def test_average_follows_the_formula_and_swaps_in_and_out() -> None:
    layer = nn.Linear(3, 2, bias=False)
    average = WeightAverage(layer, decay=0.5)
    snapshots = [layer.weight.detach().clone()]
    for step in range(12):  # d_t grows 0.1, 0.18, ... and is capped at 0.5 from t = 9 on
        with torch.no_grad():
            layer.weight.add_(torch.full_like(layer.weight, float(step + 1)))
        snapshots.append(layer.weight.detach().clone())
        average.update()
    assert average.current_decay() == 0.5
    want = _ema_by_hand(snapshots, 0.5)
    raw = layer.weight.detach().clone()
    with average.swapped_in():
        torch.testing.assert_close(layer.weight, want)
    assert torch.equal(layer.weight, raw)
    with pytest.raises(RuntimeError), average.swapped_in():
        raise RuntimeError("the raw weights come back even then")
    assert torch.equal(layer.weight, raw)


def test_shared_parameters_are_averaged_once_and_checkpoints_round_trip() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight = model[0].weight  # tied, as with model.tie_weights
    average = WeightAverage(model, decay=0.9)
    assert len(average.average) == 3  # one weight (shared) and two biases
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    average.update()
    average.copy_to_model()
    assert model[1].weight is model[0].weight
    copy = WeightAverage(model, decay=0.9)
    copy.load_state_dict(average.state_dict())
    assert copy.updates == 1 and all(
        torch.equal(a, b) for a, b in zip(copy.average, average.average, strict=True)
    )
    with pytest.raises(ValueError, match="not this model's"):
        WeightAverage(nn.Linear(2, 2), decay=0.9).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_fit_validates_keeps_and_returns_the_average(data, monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the weights after every optimiser step and at every validation: validation sees the
    average of the steps so far, training goes on from the raw weights, the result is the average at
    the best epoch (with validation) or after the last step (without)."""
    from gnn_recsys.training import fit  # noqa: PLC0415

    _, graph, train, val = data
    decay = 0.8
    steps: list[torch.Tensor] = []
    starts: list[torch.Tensor] = []
    validated: list[tuple[int, torch.Tensor]] = []
    real_step, real_recall = fit.train_step, fit.recall_at_k

    def recording_step(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not steps:
            steps.append(model.item_embedding.weight.detach().clone())  # the initial weights
        starts.append(model.item_embedding.weight.detach().clone())
        loss = real_step(model, *args, **kwargs)
        steps.append(model.item_embedding.weight.detach().clone())
        return loss

    def recording_recall(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        validated.append((len(steps) - 1, model.item_embedding.weight.detach().clone()))
        return real_recall(model, *args, **kwargs)

    monkeypatch.setattr(fit, "train_step", recording_step)
    monkeypatch.setattr(fit, "recall_at_k", recording_recall)
    config = TINY.with_(train={"ema_decay": decay, "max_epochs": 3})
    result = fit.train_dgsr(graph, train, val, config)

    per_epoch = len(steps) // 3
    assert [after for after, _ in validated] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    for after, weights in validated:
        torch.testing.assert_close(weights, _ema_by_hand(steps[: after + 1], decay))
    # the step after a validation starts from the raw weights, not the average
    assert torch.equal(starts[per_epoch], steps[per_epoch])
    assert not torch.allclose(steps[per_epoch], validated[0][1])
    best = validated[result.best_epoch - 1][1]
    torch.testing.assert_close(result.model.item_embedding.weight.detach(), best)

    steps.clear()
    no_val = fit.train_dgsr(graph, train, None, config.with_(train={"max_epochs": 2}))
    torch.testing.assert_close(no_val.model.item_embedding.weight.detach(), _ema_by_hand(steps, decay))
    plain = fit.train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 2, "ema_decay": None}))
    torch.testing.assert_close(
        plain.model.item_embedding.weight.detach(), steps[-1]
    )  # same steps, no average


def test_sparse_embedding_training_learns_too(data) -> None:
    _, graph, train, val = data
    result = train_dgsr(graph, train, val, TINY.with_(model={"sparse_embedding": True}))
    popular = np.argsort(-np.bincount(train.target, minlength=graph.num_items))[:20]
    assert result.best_metric is not None and result.best_metric > np.isin(val.target, popular).mean() + 0.1
    assert result.model.item_embedding.sparse


def test_checkpoint_of_another_config_is_not_resumed(data, tmp_path: Path) -> None:
    _, graph, train, val = data
    train_dgsr(graph, train, val, TINY.with_(train={"max_epochs": 1}), tmp_path)
    other = train_dgsr(graph, train, val, TINY.with_(train={"max_epochs": 1, "lr": 1e-3}), tmp_path)
    assert other.start_epoch == 1 and len(other.history) == 1


CHILD = """
import sys, time
from pathlib import Path
from gnn_recsys.graph.sampler import TemporalSubgraphSampler
from gnn_recsys.training import train_dgsr
{data_code}
marker = Path(sys.argv[2])
epochs_done = []

class StallInEpochTwo(TemporalSubgraphSampler):
    def sample(self, *args, **kwargs):
        if epochs_done:  # first batch of epoch 2: tell the parent, then hang until killed
            marker.write_text("in epoch 2")
            time.sleep(120)
        return super().sample(*args, **kwargs)

_, graph, train, val = tiny_data()
sampler = StallInEpochTwo(graph, TINY.model.item_max_length, TINY.model.user_max_length, TINY.model.num_layers)
train_dgsr(graph, train, val, TINY, sys.argv[1], on_epoch_end=lambda e, m: epochs_done.append(e), sampler=sampler)
"""


def test_sigkill_mid_epoch_two_then_resume(data, tmp_path: Path) -> None:
    _, graph, train, val = data
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(data_code=textwrap.dedent(DATA_CODE)))
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ckpt"), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "child exited before reaching epoch 2"
            assert time.monotonic() < deadline, "child never reached epoch 2"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CHECKPOINT_FILE]  # no torn temp file

    resumed = train_dgsr(graph, train, val, TINY, tmp_path / "ckpt")
    straight = train_dgsr(graph, train, val, TINY)
    assert resumed.start_epoch == 2
    assert _curve(resumed.history) == _curve(straight.history)
    _assert_same_weights(resumed.model, straight.model)


def test_topk_blocked_equals_full_topk() -> None:
    g = torch.Generator().manual_seed(0)
    query, items = torch.randn(9, 6, generator=g), torch.randn(1000, 6, generator=g)
    index, score = topk_blocked(query, items, k=25, block_size=64)
    want_score, want_index = torch.topk(query @ items.T, 25, dim=1)
    torch.testing.assert_close(score, want_score)
    assert torch.equal(index, want_index)
    small_index, _ = topk_blocked(query, items[:10], k=25, block_size=3)  # k > catalogue: all items
    assert small_index.shape == (9, 10) and all(sorted(r) == list(range(10)) for r in small_index.tolist())


def test_recommend_scores_the_whole_catalogue_after_the_last_event(data) -> None:
    _, graph, train, val = data
    model = train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 1})).model
    sessions = np.array([3, 0, 17, 42])
    plain = InferenceConfig(top_k=12, batch_size=3, block_size=7, keep_session_items=0)
    aids, scores = recommend(model, graph, sessions, plain)
    # Reference: full score matrix of representations at cut = last ts + 1.
    cut = graph.ev_ts[graph.session_ptr[sessions + 1] - 1] + 1
    subgraph = TemporalSubgraphSampler(graph, 6, 4, 2).sample(sessions, cut)
    with torch.no_grad():
        batch = make_batch(graph, subgraph, cut, 2, history_length=model.history_length)
        full = model.score_all(model(batch))
        # the repeat bonus of each session's own earlier items, added densely
        bonus = model.history_bonus(batch)
        rows = torch.arange(len(sessions)).unsqueeze(1).expand_as(batch.history_item)
        valid = batch.history_item >= 0
        assert valid.any() and bonus is not None
        full[rows[valid], batch.history_item[valid]] += bonus[valid]
    want_score, want_index = torch.topk(full, 12, dim=1)
    np.testing.assert_allclose(scores, want_score.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(aids, graph.item_aid[want_index.numpy()])
    index_only, _ = recommend(
        model, graph, sessions, InferenceConfig(top_k=12, keep_session_items=0), return_aids=False
    )
    np.testing.assert_array_equal(graph.item_aid[index_only], aids)


def test_keep_items_in_window_by_hand() -> None:
    index = torch.tensor([[10, 11, 12, 13, 14, 15]])
    score = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0]])
    kept = torch.tensor([[12, 30, -1]])  # 12 already listed; 30 is not; one empty slot
    items, scores = keep_items_in_window(index, score, kept, torch.tensor([[7.0, 1.0, 0.0]]))
    # window of 3: both kept items and the best other (10), by score; then 11, 13, 14 in score order
    assert items.tolist() == [[10, 12, 30, 11, 13, 14]]
    assert scores.tolist() == [[9.0, 7.0, 1.0, 8.0, 6.0, 5.0]]
    none_kept = torch.full((1, 3), -1)
    unchanged = keep_items_in_window(index, score, none_kept, torch.zeros(1, 3))
    assert torch.equal(unchanged[0], index) and torch.equal(unchanged[1], score)


def test_lists_hold_the_sessions_most_recent_items_first(data) -> None:
    """``keep_session_items = W``: the first W slots are the session's W most recent distinct items
    (all of them if fewer) plus the best new items of the plain list; the rest follow in its order."""
    _, graph, train, _ = data
    model = train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 1})).model
    sessions = np.arange(60)
    width, k = 5, 12
    plain, _ = recommend(model, graph, sessions, InferenceConfig(top_k=k, keep_session_items=0))
    aids, scores = recommend(
        model,
        graph,
        sessions,
        InferenceConfig(top_k=k, keep_session_items=width, keep_session_items_by="recency", batch_size=7),
    )
    changed = 0
    for row, session in enumerate(sessions):
        events = np.asarray(graph.ev_item[graph.session_ptr[session] : graph.session_ptr[session + 1]])
        events = events[-model.history_length :]
        recent = list(dict.fromkeys(graph.item_aid[events[::-1]].tolist()))[:width]
        others = [aid for aid in plain[row].tolist() if aid not in recent]
        window, tail = aids[row, :width].tolist(), aids[row, width:].tolist()
        assert set(window) == set(recent) | set(others[: width - len(recent)])
        assert tail == others[width - len(recent) :][: k - width]
        assert np.all(np.diff(scores[row, :width]) <= 0) and np.all(np.diff(scores[row, width:]) <= 0)
        changed += not set(recent) <= set(plain[row, :width].tolist())
    assert changed > 0  # the rule made a difference somewhere (an untrained-ish model forgets repeats)


def test_recall_at_k_counts_targets_in_the_top_k(data) -> None:
    _, graph, train, val = data
    model = train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 1})).model
    sampler = TemporalSubgraphSampler(graph, 6, 4, 2)
    few = val.subset(slice(0, 40))
    recall = recall_at_k(model, graph, few, sampler=sampler, k=20, batch_size=16)
    subgraph = sampler.sample(few.session, few.cut_ts)
    with torch.no_grad():
        batch = make_batch(graph, subgraph, few.cut_ts, 2, history_length=model.history_length)
        scores = add_history_bonus(
            model.score_all(model(batch)), (batch.history_item, model.history_bonus(batch))
        )
        top = torch.topk(scores, 20).indices.numpy()
    assert recall == pytest.approx(np.mean([t in row for t, row in zip(few.target, top, strict=True)]))
    assert np.isnan(recall_at_k(model, graph, val.subset(slice(0, 0)), sampler=sampler))


def test_bad_samples_are_rejected_with_row_and_field(data) -> None:
    _, graph, train, val = data
    bad = SampleSet(train.session[:5], train.cut_ts[:5], np.array([0, 1, graph.num_items, 2, 3]))
    with pytest.raises(ValueError, match=r"train_samples: row 2 field 'target'"):
        train_dgsr(graph, bad, val, TINY)


def test_mlflow_pyfunc_round_trip(data, tmp_path: Path) -> None:
    events, memory_graph, train, val = data
    graph = TemporalGraph.load(memory_graph.save(tmp_path / "graph"))  # memory-mapped: the model refers to it
    model = train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 1})).model
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment(
            "dgsr-test", artifact_location=(tmp_path / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment):
            info = log_dgsr_model(model, graph, InferenceConfig(top_k=7), artifact_path="dgsr")
        loaded = mlflow.pyfunc.load_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    # The artifacts hold weights and the vocabulary, not a copy of the graph.
    artifacts = {p.name for p in (tmp_path / "artifacts").rglob("*") if p.is_file()}
    assert {"dgsr.pt", "item_aid.npy"} <= artifacts and "item_view.npy" not in artifacts
    assert loaded.metadata.get_input_schema() is not None and loaded.metadata.saved_input_example_info

    # Two sessions as a plain pandas frame (int64 columns): a copy of session 0's events under a new
    # id, and one with an unknown aid mixed in.
    first = events.filter(pl.col("session") == events["session"][0])
    request = pd.concat(
        [
            first.with_columns(session=pl.lit(9_000_001, pl.Int32)).to_pandas(),
            pd.DataFrame(
                {"session": [555, 555], "aid": [int(graph.item_aid[3]), 10**6], "ts": [5, 6], "type": [0, 0]}
            ),
        ]
    ).astype("int64")
    out = loaded.predict(request)
    assert list(out.columns) == ["session", "rank", "aid", "score"]
    assert sorted(out["session"].unique()) == [555, 9_000_001]
    assert (out.groupby("session").size() == 7).all()
    assert out["aid"].isin(graph.item_aid).all()

    # The same answer as the in-memory model on the appended view ...
    appended, ids, indices = append_sessions(graph, pl.from_pandas(request))
    want, want_scores = recommend(model, appended, indices, InferenceConfig(top_k=7), event_type=0)
    # ... which copies nothing of the stored graph (its session arrays are lazy appends of the mapped
    # ones) and answers as the same arrays concatenated would.
    assert isinstance(appended.ev_ts, AppendedArray) and np.shares_memory(appended.ev_ts.base, graph.ev_ts)
    copied = TemporalGraph(**{name: np.asarray(array) for name, array in appended.arrays().items()})
    copied_aids, copied_scores = recommend(model, copied, indices, InferenceConfig(top_k=7), event_type=0)
    np.testing.assert_array_equal(copied_aids, want)
    np.testing.assert_array_equal(copied_scores, want_scores)
    got = out.sort_values(["session", "rank"])
    np.testing.assert_array_equal(got["aid"].to_numpy().reshape(2, 7), want)
    np.testing.assert_allclose(got["score"].to_numpy().reshape(2, 7), want_scores, rtol=1e-5, atol=1e-6)
    # ... and the view samples what a graph rebuilt with the request sessions samples, except that a
    # request session is not its own neighbour (its events are not on the item side).
    stored = pl.DataFrame(
        {
            "session": np.asarray(graph.session_id)[graph.ev_session()],
            "aid": np.asarray(graph.item_aid)[np.asarray(graph.ev_item)],
            "ts": np.asarray(graph.ev_ts),
            "type": np.asarray(graph.ev_type),
        }
    )
    asked = pl.from_pandas(request).filter(pl.col("aid").is_in(graph.item_aid.tolist()))
    new_ids = (appended.session_id[indices]).tolist()
    asked = asked.with_columns(session=pl.col("session").replace_strict(ids.tolist(), new_ids))
    rebuilt = build_temporal_graph(pl.concat([stored, asked.cast(stored.schema)]), item_aids=graph.item_aid)
    cut = appended.ev_ts[appended.session_ptr[indices + 1] - 1] + 1

    def edges(g: TemporalGraph, sessions: np.ndarray) -> tuple[list, set]:
        sub = TemporalSubgraphSampler(g, 50, 10_000, 2, context_window=None).sample(sessions, cut)
        hop1, hop2 = sub.hops
        items = list(zip(hop1.parent.tolist(), hop1.order.tolist(), hop1.node.tolist(), strict=True))
        neighbours = {
            (int(hop1.parent[p]), int(g.session_id[n]), int(t))
            for p, n, t in zip(hop2.parent, hop2.node, hop2.ts, strict=True)
        }
        return items, neighbours

    view_items, view_neighbours = edges(appended, indices)
    full_items, full_neighbours = edges(rebuilt, rebuilt.session_to_index(np.array(new_ids)))
    assert view_items == full_items and view_neighbours
    assert view_neighbours == {e for e in full_neighbours if e[1] not in new_ids}
    orders = loaded.predict(request, params={"k": 3, "event_type": "orders"}).sort_values(["session", "rank"])
    order_aids, _ = recommend(model, appended, indices, InferenceConfig(top_k=3), event_type=2)
    np.testing.assert_array_equal(orders["aid"].to_numpy().reshape(2, 3), order_aids)
    assert type(loaded.unwrap_python_model()) is DGSRRecommender


class _Payload:
    """Unpickling this runs code: what a malicious checkpoint would carry."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_load_paths_refuse_pickled_code(data, tmp_path: Path) -> None:
    from kedro.io import DatasetError  # noqa: PLC0415

    from gnn_recsys.datasets import TorchDataset  # noqa: PLC0415
    from gnn_recsys.training.checkpoint import load_safely  # noqa: PLC0415

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "extra": _Payload()}, path)
    with pytest.raises(Exception, match="Weights only load failed"):
        load_safely(path)
    with pytest.raises(DatasetError, match="Weights only load failed"):
        TorchDataset(str(path)).load()
    # A resume from such a checkpoint fails the same way instead of running it.
    _, graph, train, val = data
    (tmp_path / "ckpt").mkdir()
    torch.save({"fingerprint": "x", "extra": _Payload()}, tmp_path / "ckpt" / CHECKPOINT_FILE)
    with pytest.raises(Exception, match="Weights only load failed"):
        train_dgsr(graph, train, val, TINY.with_(train={"max_epochs": 1}), tmp_path / "ckpt")


def test_checkpoint_from_another_device_resumes(data, tmp_path: Path) -> None:
    """A checkpoint written on CUDA resumes on CPU: weights and optimiser carry over, draws restart."""
    _, graph, train, val = data
    first = train_dgsr(graph, train, val, TINY.with_(train={"max_epochs": 1}), tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    state["device"] = "cuda"  # as a GPU run writes it (its generator state is another device's)
    state["rng"]["negative"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, path)
    resumed = train_dgsr(graph, train, val, TINY.with_(train={"max_epochs": 2}), tmp_path)
    assert resumed.start_epoch == 2 and len(resumed.history) == 2
    assert resumed.history[0] == first.history[0]


def test_type_heads_start_shared_and_learn_type_specific_lists(data) -> None:
    """Typed samples train one head per event type; inference then gives three different lists."""
    events, graph, train, val = data
    from gnn_recsys.graph.sampler import training_sample_events  # noqa: PLC0415

    untrained = DGSR.from_config(graph.num_items, TINY.model)
    reps = torch.randn(4, TINY.model.embedding_dim)
    for event_type in range(3):  # zero-initialised heads: every type starts from the shared representation
        assert torch.equal(untrained.typed(reps, event_type), reps)

    typed = SampleSet.from_events(graph, training_sample_events(graph))
    assert np.array_equal(typed.target_type, np.asarray(graph.ev_type)[training_sample_events(graph)])
    assert set(np.unique(typed.target_type)) == {0, 1, 2}
    result = train_dgsr(graph, typed, None, TINY.with_(train={"max_epochs": 2}))
    heads = result.model.type_head.weight.detach().view(3, TINY.model.embedding_dim, TINY.model.embedding_dim)
    assert heads.abs().sum() > 0
    assert not torch.allclose(heads[0], heads[2])

    sessions = np.arange(20)
    lists = recommend_by_type(
        result.model, graph, sessions, InferenceConfig(top_k=10), event_types=(0, 1, 2, None)
    )
    assert all(lists[t][0].shape == (20, 10) for t in lists)
    assert not np.array_equal(lists[0][0], lists[2][0])
    shared, _ = recommend(result.model, graph, sessions, InferenceConfig(top_k=10))
    assert np.array_equal(shared, lists[None][0])
    clicks, _ = recommend(result.model, graph, sessions, InferenceConfig(top_k=10), event_type=0)
    assert np.array_equal(clicks, lists[0][0])


class _Recorder:
    """Wraps ``fit.train_step``: the learning rate the optimiser really used and the batch size, per step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from gnn_recsys.training import fit  # noqa: PLC0415

        self.steps: list[tuple[float, int]] = []
        real = fit.train_step

        def step(model, loss_fn, optimizer, scaler, batch, **kwargs):
            self.steps.append((optimizer.optimizers[0].param_groups[0]["lr"], batch.num_samples))
            return real(model, loss_fn, optimizer, scaler, batch, **kwargs)

        monkeypatch.setattr(fit, "train_step", step)


def test_schedule_warms_up_decays_on_each_plateau_and_stops_after_patience(data, monkeypatch) -> None:
    """A scripted validation curve (the metric is the schedule's input): each evaluation that does not
    beat the best multiplies the learning rate by lr_decay; `patience` of them in a row stop training."""
    from gnn_recsys.training import fit  # noqa: PLC0415

    _, graph, train, val = data
    curve = iter([0.5, 0.4, 0.6, 0.6, 0.5, 0.9, 0.9])  # best, plateau, best, plateau, plateau -> stop
    monkeypatch.setattr(fit, "recall_at_k", lambda *args, **kwargs: next(curve))
    recorder = _Recorder(monkeypatch)
    config = TINY.with_(
        train={"max_epochs": 10, "patience": 2, "lr": 0.01, "lr_decay": 0.5, "warmup_steps": 4}
    )
    result = train_dgsr(graph, train, val, config)

    assert [h["val_recall@20"] for h in result.history] == [0.5, 0.4, 0.6, 0.6, 0.5]
    assert result.stopped_early and result.best_epoch == 3 and result.best_metric == 0.6
    per_epoch = -(-len(train) // config.train.batch_size)
    lrs = [lr for lr, _ in recorder.steps]
    assert len(lrs) == 5 * per_epoch
    # linear warm-up over the first 4 steps, then the decayed rate after each plateau (epochs 2 and 4)
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    want = {1: 0.01, 2: 0.01, 3: 0.005, 4: 0.005, 5: 0.0025}
    for epoch, lr in want.items():
        epoch_lrs = lrs[(epoch - 1) * per_epoch : epoch * per_epoch]
        assert epoch_lrs[-1] == pytest.approx(lr), epoch
        assert result.history[epoch - 1]["lr"] == pytest.approx(lr), epoch
    assert all(lr == pytest.approx(0.005) for lr in lrs[2 * per_epoch : 4 * per_epoch])


def test_no_plateau_counts_before_min_steps(data, monkeypatch) -> None:
    """A scripted curve with min_steps just over 3 epochs of steps: the flat start neither decays the
    rate nor counts towards patience (small data), the best weights are still the best epoch's."""
    from gnn_recsys.training import fit  # noqa: PLC0415

    _, graph, train, val = data
    per_epoch = -(-len(train) // TINY.train.batch_size)
    curve = iter([0.5, 0.4, 0.4, 0.6, 0.5, 0.5, 0.9])  # plateaus at 2, 3 are too early; 5, 6 stop
    monkeypatch.setattr(fit, "recall_at_k", lambda *args, **kwargs: next(curve))
    config = TINY.with_(train={"max_epochs": 10, "patience": 2, "lr": 0.01, "lr_decay": 0.5,
                               "min_steps": 3 * per_epoch + 1})  # fmt: skip
    result = train_dgsr(graph, train, val, config)

    assert [h["val_recall@20"] for h in result.history] == [0.5, 0.4, 0.4, 0.6, 0.5, 0.5]
    assert [h["lr"] for h in result.history] == pytest.approx([0.01] * 5 + [0.005])  # decayed after 5
    assert result.stopped_early and result.best_epoch == 4 and result.best_metric == 0.6
    # without min_steps the plateaus of epochs 2 and 3 stop training at epoch 3
    curve = iter([0.5, 0.4, 0.4, 0.6])
    early = train_dgsr(graph, train, val, config.with_(train={"min_steps": 0}))
    assert len(early.history) == 3 and early.best_epoch == 1


def test_samples_per_epoch_and_max_samples_cap_what_is_trained(data, monkeypatch) -> None:
    """Each epoch trains a fresh draw of samples_per_epoch samples; the max_samples budget ends training
    (the last epoch gets what is left) before max_epochs."""
    from gnn_recsys.training import fit  # noqa: PLC0415

    _, graph, train, val = data
    orders: list[np.ndarray] = []
    real_order = fit._epoch_order
    monkeypatch.setattr(fit, "_epoch_order", lambda *a: orders.append(real_order(*a)) or orders[-1])
    recorder = _Recorder(monkeypatch)
    config = TINY.with_(train={"max_epochs": 10, "samples_per_epoch": 300, "max_samples": 700})
    result = train_dgsr(graph, train, None, config)

    assert len(result.history) == 3 and not result.stopped_early
    per_step = [n for _, n in recorder.steps]
    assert per_step == [256, 44, 256, 44, 100]  # batch_size 256: 300, 300, then the 100 left
    assert sum(per_step) == 700
    assert [len(o) for o in orders] == [300, 300, 100, 0]  # the fourth draw finds the budget spent
    assert all(len(np.unique(o)) == len(o) and o.max() < len(train) for o in orders[:3])
    assert not np.array_equal(np.sort(orders[0]), np.sort(orders[1]))  # a fresh draw each epoch


def _window_data(target_back: int | None, num_items: int, seed: int = 3) -> tuple[TemporalGraph, SampleSet]:
    """40 sessions of 25 distinct clicks; the target (after the last one) is the item clicked
    ``target_back`` events earlier, or (None) an item the session never clicked."""
    rng = np.random.default_rng(seed)
    rows, sessions, targets = [], [], []
    for session in range(40):
        items = rng.choice(num_items, size=26, replace=False)
        rows += [
            (session, int(aid), 1_000_000 + 1_000 * position, 0) for position, aid in enumerate(items[:25])
        ]
        sessions.append(session)
        targets.append(int(items[25] if target_back is None else items[24 - target_back]))
    events = pl.DataFrame(
        rows, schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8}, orient="row"
    )
    graph = build_temporal_graph(events, item_aids=np.arange(num_items))
    cut = np.full(len(sessions), 1_000_000 + 25_000, dtype=np.int64)  # after every event
    return graph, SampleSet(np.array(sessions), cut, np.array(targets), np.zeros(len(sessions), np.int64))


def test_choose_keep_windows_follows_the_data(data) -> None:
    """The window that wins on validation: the widest where targets are the session's own earlier
    items, none where they never are (the window would only hide new items); W = 0 is plain recall."""
    model = DGSR.from_config(60, TINY.model)  # untrained: it cannot know which items come back
    graph, repeats = _window_data(target_back=12, num_items=60)
    windows, recalls = choose_keep_windows(model, graph, repeats, (0, 5, 10, 20), batch_size=16)
    assert recalls["all"][20] == 1.0 and recalls["all"][10] < 1.0  # 12 back: only the widest keeps it
    assert windows == {"clicks": 20, "carts": 20, "orders": 20, "all": 20}  # types without samples: all's
    graph, fresh = _window_data(target_back=None, num_items=60)
    windows, recalls = choose_keep_windows(model, graph, fresh, (0, 5, 10, 20), batch_size=16)
    assert recalls["all"][20] == 0.0 and recalls["all"][0] > 0.0  # 20 slots of history: no room
    assert windows["clicks"] == max((0, 5, 10, 20), key=lambda w: (recalls["clicks"][w], w)) < 20
    # W = 0 is the validation metric itself
    _, graph, train, val = data
    trained = train_dgsr(graph, train, None, TINY.with_(train={"max_epochs": 1})).model
    _, recalls = choose_keep_windows(trained, graph, val, (0, 20))
    assert recalls["all"][0] == pytest.approx(recall_at_k(trained, graph, val, k=20))


def test_inference_config_windows() -> None:
    auto = InferenceConfig()
    assert auto.keep_session_items == "auto" and auto.window(0) == 20  # unresolved: the widest choice
    resolved = auto.resolve({"clicks": 0, "carts": 5, "orders": 20, "all": 10})
    assert [resolved.window(t) for t in (0, 1, 2, None)] == [0, 5, 20, 10]
    assert auto.resolve(None).keep_session_items == 20
    assert InferenceConfig(keep_session_items=7).resolve({"clicks": 0}).window(0) == 7  # explicit wins
    with pytest.raises(ValueError, match="keep_session_items"):
        InferenceConfig(keep_session_items=-1)
    with pytest.raises(ValueError, match="bad entries"):
        InferenceConfig(keep_session_items={"views": 3})


def test_recent_history_items_by_recency_and_by_type() -> None:
    # one sample, items 7 8 9 in slots 0 1 2; events (oldest first): 7 cart, 8 click, 9 click, 8 click
    history_item = torch.tensor([[7, 8, 9, -1]])
    history_slot = torch.tensor([0, 1, 2, 1])
    history_order = torch.tensor([3, 2, 1, 0])  # 0 = the latest event
    history_type = torch.tensor([1, 0, 0, 0])
    by_recency = recent_history_items(history_item, history_slot, history_order, 2)
    assert by_recency.tolist() == [[-1, 8, 9, -1]]  # 8 (latest), 9
    by_type = recent_history_items(history_item, history_slot, history_order, 2, history_type=history_type)
    assert by_type.tolist() == [[7, 8, -1, -1]]  # the carted 7 first, then the latest click 8


def test_prior_lr_scale_gives_the_bonus_priors_their_own_rate_without_decay() -> None:
    from gnn_recsys.training.config import TrainConfig  # noqa: PLC0415
    from gnn_recsys.training.optim import make_optimizer  # noqa: PLC0415

    model = DGSR(50, 8, 2, item_max_length=5, user_max_length=4, type_heads=True, repeat_bonus=True,
                 history_length=10, neighbour_items=5)  # fmt: skip
    plain = make_optimizer(model, TrainConfig(lr=0.01)).optimizers[0]
    assert len(plain.param_groups) == 1  # the default keeps one group (checkpoints resume as before)
    optimizer = make_optimizer(model, TrainConfig(lr=0.01, weight_decay=0.1, prior_lr_scale=20.0))
    rest, priors = optimizer.optimizers[0].param_groups
    assert {id(p) for p in priors["params"]} == {id(model.repeat_prior), id(model.neighbour_prior)}
    assert len(rest["params"]) + 2 == len(list(model.parameters()))
    assert (
        priors["lr"] == pytest.approx(0.2) and priors["weight_decay"] == 0.0 and rest["weight_decay"] == 0.1
    )
    optimizer.set_lr(0.001)  # the schedule keeps the ratio
    assert priors["lr"] == pytest.approx(0.02) and rest["lr"] == pytest.approx(0.001)
    # One step moves each prior entry by about its own rate (Adam), the others by theirs.
    before = model.neighbour_prior.detach().clone()
    model.neighbour_prior.grad = torch.ones_like(model.neighbour_prior)
    optimizer.step(torch.amp.GradScaler(enabled=False))
    torch.testing.assert_close(model.neighbour_prior.detach(), before - 0.02)
