"""The submission refit: its samples, its schedule, its starting point, and that it never scores the local split."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from gnn_recsys.data.schema import MS_PER_DAY
from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader.samples import SampleConfig, refit_samples
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.pipeline_registry import register_pipelines
from gnn_recsys.training import FitConfig
from gnn_recsys.training.config import RefitConfig
from gnn_recsys.training.refit import local_schedule, recent_samples, refit_dgsr

SYNTH = SyntheticConfig(num_items=150, num_train_sessions=200, num_test_sessions=40, seed=5)
TINY = FitConfig().with_(
    model={"embedding_dim": 8, "item_max_length": 4, "user_max_length": 3},
    loss={"kind": "full"},
    train={"batch_size": 128, "samples_per_epoch": None, "warmup_steps": 0, "progress": False, "seed": 3},
    loader={"num_workers": 0},
)


@pytest.fixture(scope="module")
def full_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return synthetic_events(SYNTH), synthetic_events(SYNTH, "test")


def _next_event_rows(events: pl.DataFrame) -> set[tuple[int, int, int, int]]:
    """Reference: every event with an earlier event strictly before it in its session."""
    first = pl.col("ts").min().over("session")
    rows = events.filter(pl.col("ts") > first)
    return set(rows.select("session", "ts", "aid", "type").iter_rows())


def _sample_rows(graph, samples) -> set[tuple[int, int, int, int]]:
    ids, aids = np.asarray(graph.session_id), np.asarray(graph.item_aid)
    return set(
        zip(
            ids[samples.session].tolist(),
            samples.cut_ts.tolist(),
            aids[samples.target].tolist(),
            samples.target_type.tolist(),
            strict=True,
        )
    )


def test_refit_samples_add_the_test_file_prefixes_as_targets_and_nothing_else(full_data) -> None:
    """The refit's next-event samples are the train file's (every session: no validation held out)
    plus the test file's prefixes; with the policy "neither" the test sessions are left out."""
    events, test_events = full_data
    graph = build_temporal_graph(pl.concat([events, test_events]))
    test_sessions = test_events["session"].unique().to_numpy()
    config = SampleConfig(future_target_types=())
    samples = refit_samples(graph, test_sessions, config)
    train_rows, test_rows = _next_event_rows(events), _next_event_rows(test_events)
    assert test_rows and train_rows
    assert _sample_rows(graph, samples) == train_rows | test_rows
    neither = refit_samples(
        graph, test_sessions, SampleConfig(future_target_types=(), test_prefixes_as_targets=False)
    )
    assert _sample_rows(graph, neither) == train_rows
    # Carts / orders from earlier cuts: targets of real events of the same sessions, cut before them.
    typed = refit_samples(graph, test_sessions, SampleConfig())
    extra = _sample_rows(graph, typed) - train_rows - test_rows
    assert extra and {t for *_, t in extra} <= {1, 2}
    real = {(s, a, t) for s, _, a, t in events.select("session", "ts", "aid", "type").iter_rows()}
    real |= {(s, a, t) for s, _, a, t in test_events.select("session", "ts", "aid", "type").iter_rows()}
    assert {(s, a, t) for s, _, a, t in extra} <= real


def test_local_schedule_replays_the_early_stopping_decisions() -> None:
    """Plateaus that did not stop training decayed the rate; the best epoch is where recall peaked."""
    recalls = [0.10, 0.20, 0.15, 0.25, 0.20, 0.19]
    history = {
        "best_epoch": 4,
        "epochs": [{"epoch": i + 1, "val_recall@20": r} for i, r in enumerate(recalls)],
    }
    schedule = local_schedule(history, TINY.with_(train={"patience": 2}))
    assert schedule.best_epoch == 4 and schedule.decay_after == (3,)  # epoch 5's decay came after the best
    no_val = local_schedule({"best_epoch": 3, "epochs": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]}, TINY)
    assert no_val.best_epoch == 3 and no_val.decay_after == ()


def test_refit_modes_start_where_they_should_and_follow_the_local_schedule(full_data) -> None:
    events, test_events = full_data
    graph = build_temporal_graph(pl.concat([events, test_events]))
    samples = refit_samples(graph, test_events["session"].unique().to_numpy(), SampleConfig())
    history = {
        "best_epoch": 3,
        "epochs": [{"epoch": i + 1, "val_recall@20": r} for i, r in enumerate([0.3, 0.2, 0.4, 0.1, 0.1])],
    }
    # "Local" weights no initialisation would draw.
    local = {
        k: torch.randn_like(v) for k, v in DGSR.from_config(graph.num_items, TINY.model).state_dict().items()
    }

    # Warm start: the local weights are the starting point (a zero learning rate keeps them) ...
    frozen = refit_dgsr(
        graph,
        samples,
        TINY.with_(train={"lr": 0.0}),
        RefitConfig(mode="warm_start", epochs=2),
        history=history,
        local_state=local,
    )
    assert all(torch.equal(frozen.model.state_dict()[k], v) for k, v in local.items())
    assert len(frozen.history) == 2
    # ... and it trains at train.lr after a fresh warm-up (the default, warm_rate: base) ...
    warm = refit_dgsr(
        graph, samples, TINY, RefitConfig(mode="warm_start", epochs=1), history=history, local_state=local
    )
    assert [h["lr"] for h in warm.history] == [pytest.approx(TINY.train.lr)]
    assert not all(torch.equal(warm.model.state_dict()[k], v) for k, v in local.items())
    # ... or at the rate the local run had at its best epoch (one decay, after epoch 2).
    slow = refit_dgsr(
        graph,
        samples,
        TINY,
        RefitConfig(mode="warm_start", epochs=1, warm_rate="local"),
        history=history,
        local_state=local,
    )
    assert [h["lr"] for h in slow.history] == [pytest.approx(TINY.train.lr * TINY.train.lr_decay)]
    # From scratch: the local best number of epochs, decayed after the same epochs, not from the local weights.
    scratch = refit_dgsr(
        graph, samples, TINY, RefitConfig(mode="from_scratch"), history=history, local_state=local
    )
    lr, decay = TINY.train.lr, TINY.train.lr_decay
    assert [h["lr"] for h in scratch.history] == pytest.approx([lr, lr, lr * decay])
    fresh = refit_dgsr(
        graph,
        samples,
        TINY.with_(train={"lr": 0.0}),
        RefitConfig(mode="from_scratch"),
        history=history,
        local_state=local,
    )
    assert not torch.equal(fresh.model.state_dict()["item_embedding.weight"], local["item_embedding.weight"])


def test_the_refit_model_never_scores_the_local_split() -> None:
    """The refit has seen the local test labels: nothing the local scores depend on may come from it,
    while the test file's candidates and the MLflow model must."""
    pipeline = register_pipelines()["dgsr_otto"]
    refit = [n for n in pipeline.nodes if "dgsr_submission_model" in n.outputs]
    assert [n.name for n in refit] == ["dgsr_training.refit_dgsr"]
    assert set(refit[0].inputs) == {"full_graph", "test_events", "dgsr_model", "params:dgsr"}
    for local in (
        "metrics_report",
        "candidates_dgsr",
        "candidates_reranker",
        "candidates_fusion",
        "ranker_model",
    ):
        upstream = pipeline.to_outputs(local)
        assert "dgsr_submission_model" not in {i for n in upstream.nodes for i in n.inputs}, local
        assert refit[0] not in upstream.nodes, local
    by_name = {n.name: n for n in pipeline.nodes}
    assert "dgsr_model" in by_name["dgsr_training.dgsr_local_candidates"].inputs
    assert "dgsr_submission_model" in by_name["dgsr_training.dgsr_test_candidates"].inputs
    assert "dgsr_submission_model" in by_name["dgsr_training.log_dgsr_to_mlflow"].inputs


def test_refit_disabled_or_without_a_test_file_passes_the_local_model_on(full_data) -> None:
    from gnn_recsys.pipelines.training.nodes import refit_dgsr_model  # noqa: PLC0415

    events, test_events = full_data
    graph = build_temporal_graph(pl.concat([events, test_events]))
    local = {"state_dict": {}, "history": {}}
    assert refit_dgsr_model(local, graph, test_events, {"refit": {"enabled": False}}) is local
    assert refit_dgsr_model(local, graph, test_events.clear(), {"refit": {"enabled": True}}) is local
    with pytest.raises(ValueError, match="no training history"):
        refit_dgsr_model(local, graph, test_events, {"refit": {"enabled": True}, "samples": {}})


def test_recent_days_keeps_the_samples_cut_in_the_last_days_only(full_data) -> None:
    events, test_events = full_data
    graph = build_temporal_graph(pl.concat([events, test_events]))
    samples = refit_samples(graph, test_events["session"].unique().to_numpy(), SampleConfig())
    end = int(pl.concat([events, test_events])["ts"].max())
    recent = recent_samples(graph, samples, 2.5)
    expected = sorted(t for t in samples.cut_ts.tolist() if t >= end - 2.5 * MS_PER_DAY)
    assert 0 < len(recent) < len(samples) and sorted(recent.cut_ts.tolist()) == expected


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"mode": "sideways"}, "refit.mode"),
        ({"epochs": 0}, "refit.epochs"),
        ({"warm_rate": "fast"}, "refit.warm_rate"),
    ],
)
def test_invalid_refit_settings_are_refused_by_name(values: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RefitConfig.from_dict(values)
