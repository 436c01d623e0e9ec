"""Project hooks: runtime parameters checked against conf/, MLflow runs closed with the right status."""

from __future__ import annotations

import signal
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gnn_recsys.hooks import NodeTimingHook, UnknownParameterError, check_runtime_params, overrides_text
from gnn_recsys.pipeline_registry import register_pipelines

DEFINED = {
    "split": {"test_days": 7, "seed": 42},
    "covisitation": {"top_k": 50, "type_weights": {"clicks": 1.0, "carts": 6.0}},
    "raw_train_path": None,
    "event_types": {"clicks": "clicks"},
    "dgsr": {"train": {"context_window": [2, 2]}},
}


@pytest.mark.parametrize(
    "runtime",
    [
        {"split": {"test_days": 1}},
        {"covisitation": {"type_weights": {"carts": 3.0}}},
        {"raw_train_path": "/x/train.jsonl"},  # a null default takes any value
        {"event_types": {"view": "clicks", "addtocart": "carts"}},  # an open mapping takes new keys
        {"dgsr": {"train": {"context_window": [3, 3]}}},  # a list is replaced whole
    ],
)
def test_valid_overrides_pass(runtime: dict) -> None:
    check_runtime_params(runtime, DEFINED)


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        (
            {"baselines": {"covisitation": {"top_k": 30}}},
            "no parameter 'baselines' at the top level.*covisitation, dgsr, event_types, raw_train_path, split",
        ),
        (
            {"covisitation": {"topk": 30}},
            "valid keys under 'covisitation': top_k, type_weights.*'covisitation.top_k'",
        ),
        (
            {"covisitation": {"type_weights": {"views": 1}}},
            "under 'covisitation.type_weights': carts, clicks",
        ),
        ({"split": {"test_days": {"x": 1}}}, "'split.test_days' is a single value"),
    ],
)
def test_unknown_overrides_name_the_valid_keys(runtime: dict, message: str) -> None:
    with pytest.raises(UnknownParameterError, match=message):
        check_runtime_params(runtime, DEFINED)


def test_overrides_text_reads_like_the_command_line() -> None:
    assert overrides_text({"split": {"test_days": 3}, "raw_train_path": "a.jsonl"}) == (
        "split.test_days=3,raw_train_path=a.jsonl"
    )


def test_misspelt_params_stop_the_session_before_any_node(kedro_project: Path) -> None:
    bootstrap_project(kedro_project)
    with (
        KedroSession.create(
            project_path=kedro_project, runtime_params={"baselines": {"covisitation": {"top_k": 30}}}
        ) as session,
        pytest.raises(UnknownParameterError, match="valid keys at the top level: .*covisitation"),
    ):
        session.run(pipeline_names=["covisitation_otto"])
    assert not any((kedro_project / "data").rglob("*.parquet")), "a node ran before the check"
    assert mlflow.active_run() is None


def _interrupting_split(events: pl.DataFrame, params: dict) -> None:
    """Stands in for the split node: the user presses Ctrl-C while it runs."""
    signal.raise_signal(signal.SIGINT)


@pytest.mark.slow
def test_ctrl_c_records_the_run_as_killed(kedro_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "gnn_recsys.pipelines.data_split.pipeline.split_local_validation", _interrupting_split
    )
    previous_handler = signal.getsignal(signal.SIGINT)
    bootstrap_project(kedro_project)  # registers the pipelines again, with the patched node
    params = {
        "synthetic": {"num_items": 100, "num_train_sessions": 200, "num_test_sessions": 20},
        "ingestion": {"progress": False},
    }
    with (
        KedroSession.create(project_path=kedro_project, runtime_params=params) as session,
        pytest.raises(KeyboardInterrupt),
    ):
        session.run(pipeline_names=["covisitation_otto"])

    assert mlflow.active_run() is None
    assert signal.getsignal(signal.SIGINT) is previous_handler
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("gnn_recsys").experiment_id])
    assert run.info.status == "KILLED"
    assert "metrics.covisitation.score" not in run.data.metrics


def test_every_node_is_timed_in_the_log_and_in_mlflow(kedro_project: Path) -> None:
    bootstrap_project(kedro_project)
    params = {
        "synthetic": {"num_items": 100, "num_train_sessions": 200, "num_test_sessions": 20},
        "ingestion": {"progress": False},
    }
    with KedroSession.create(project_path=kedro_project, runtime_params=params) as session:
        session.run(pipeline_names=["ingestion", "data_split"])
    pipelines = register_pipelines()
    ran = {n.name for name in ("ingestion", "data_split") for n in pipelines[name].nodes}

    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("gnn_recsys").experiment_id])
    seconds = {
        k.removeprefix("node_seconds."): v
        for k, v in run.data.metrics.items()
        if k.startswith("node_seconds.")
    }
    assert set(seconds) == ran
    assert all(value > 0 for value in seconds.values())
    peaks = [v for k, v in run.data.metrics.items() if k.startswith("node_peak_rss_gb.")]
    if Path("/proc/self/status").exists():
        assert len(peaks) == len(ran) and all(0.01 < peak < 100 for peak in peaks)
    table = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/node_timings.txt")
    lines = table.splitlines()
    assert len(lines) == len(ran) + 2  # header, one line per node, total
    listed = [float(line.split()[1]) for line in lines[1:-1]]
    assert listed == sorted(listed, reverse=True)  # the longest node first


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from Linux /proc")
def test_a_node_that_allocates_has_the_higher_peak() -> None:
    class FakeNode:
        def __init__(self, name: str) -> None:
            self.name = name

    hook = NodeTimingHook()
    hook.before_pipeline_run({}, None, None)
    for name, megabytes in (("small", 1), ("big", 400), ("after_big", 1)):
        hook.before_node_run(FakeNode(name))
        block = np.ones(megabytes * 2**20 // 8)  # pages touched: resident
        del block
        hook.after_node_run(FakeNode(name))
    peaks = {name: peak for name, (_, peak) in hook.timings.items()}
    assert peaks["big"] - peaks["small"] > 0.3  # GB: the 400 MB block while "big" ran
    assert peaks["after_big"] < peaks["big"] - 0.3  # freed, and the next node is not charged for it
