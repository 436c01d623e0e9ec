"""DGSR tuning: the search space, the study, and the `tune_dgsr` pipeline with nested MLflow runs."""

from __future__ import annotations

import copy
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

from gnn_recsys.data.synthetic import SyntheticConfig, synthetic_events
from gnn_recsys.graph.sampler import training_samples
from gnn_recsys.graph.temporal_graph import build_temporal_graph
from gnn_recsys.loader import SampleSet
from gnn_recsys.models.loss import LossConfig
from gnn_recsys.training import FitConfig, train_dgsr
from gnn_recsys.tuning import TuningConfig, best_params_yaml, params_cli, parse_search_space, run_study
from gnn_recsys.tuning.space import effective_dimensions

PARAMS = Path(__file__).resolve().parents[1] / "conf" / "base" / "parameters_tuning.yml"

TINY_DGSR = {
    "model": {"embedding_dim": 16, "item_max_length": 6, "user_max_length": 4},
    "train": {"batch_size": 256, "max_epochs": 2, "warmup_steps": 0, "lr": 1e-2, "progress": False},
    "loader": {"num_workers": 0},
}
TINY_SPACE = {
    "train": {"lr": {"low": 1e-3, "high": 3e-2, "log": True}},
    "model": {"embedding_dim": {"choices": [8, 16]}, "user_max_length": {"low": 2, "high": 4}},
    "loss": {"num_negatives": {"choices": [16, 32]}},
}


def test_yaml_mirrors_the_dataclass_defaults() -> None:
    tuning = yaml.safe_load(PARAMS.read_text())["tuning"]
    assert TuningConfig.from_dict(tuning) == TuningConfig()
    assert tuning == TuningConfig().to_dict()


def test_space_kinds_and_bad_entries_named() -> None:
    dims = {d.key: d for d in parse_search_space(TuningConfig().search_space)}
    assert dims["train.lr"].kind == "float" and dims["train.lr"].log
    assert dims["model.num_layers"].kind == "int"
    assert dims["model.dropout"].kind == "float"  # 0.0 .. 0.4: not an int range
    assert dims["model.distinct_sessions"].choices == (False, True)
    space = copy.deepcopy(TuningConfig().search_space)
    space["model"]["dropout"] = None  # switched off from the command line
    assert "model.dropout" not in {d.key for d in parse_search_space(space)}
    with pytest.raises(ValueError, match=r"tuning.search_space.model.hops: dgsr.model has no field 'hops'"):
        parse_search_space({"model": {"hops": {"low": 1, "high": 3}}})
    with pytest.raises(ValueError, match=r"tuning.search_space.optimiser: unknown section"):
        parse_search_space({"optimiser": {"lr": {"low": 0.1, "high": 1.0}}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hi'\] in tuning.search_space.train.lr"):
        parse_search_space({"train": {"lr": {"low": 0.1, "hi": 1.0}}})
    with pytest.raises(ValueError, match=r"train.lr: low \(1.0\) must be below high"):
        parse_search_space({"train": {"lr": {"low": 1.0, "high": 0.1}}})
    with pytest.raises(ValueError, match="unknown key"):
        TuningConfig.from_dict({"trials": 3})


def test_negatives_are_searched_only_under_the_sampled_softmax() -> None:
    dims = parse_search_space(TuningConfig().search_space)
    full = {d.key for d in effective_dimensions(dims, LossConfig(full_max_items=1000), num_items=1000)}
    sampled = {d.key for d in effective_dimensions(dims, LossConfig(full_max_items=1000), num_items=1001)}
    assert "loss.num_negatives" not in full
    assert sampled - full == {"loss.num_negatives"}


@pytest.fixture(scope="module")
def tiny() -> tuple:
    events = synthetic_events(
        SyntheticConfig(num_items=200, num_train_sessions=150, num_test_sessions=0, seed=11)
    )
    graph = build_temporal_graph(events)
    samples = SampleSet(*training_samples(graph))
    val_rows = np.zeros(len(samples), dtype=bool)
    val_rows[np.random.default_rng(0).choice(len(samples), 150, replace=False)] = True
    return graph, samples.subset(~val_rows), samples.subset(val_rows)


def test_study_trains_each_trial_with_its_values_and_returns_the_best(tiny) -> None:
    graph, train, val = tiny
    config = TuningConfig(n_trials=3, pruner="none", search_space=TINY_SPACE)
    base = {**TINY_DGSR, "loss": {"kind": "sampled"}}
    result = run_study(graph, train, val, base, config)

    assert [row["trial"] for row in result.trials] == [0, 1, 2]
    assert all(row["state"] == "complete" and row["epochs"] == 2 for row in result.trials)
    best_row = max(result.trials, key=lambda row: row["objective"])
    assert result.best_value == best_row["objective"]
    assert result.best_params == {key: best_row[key] for key in result.dimensions}
    # a trial's value is reproduced by training its configuration alone
    config_of_best = FitConfig.from_dict(
        {**TINY_DGSR, "loss": {"kind": "sampled"}, "train": {**TINY_DGSR["train"], "progress": False}}
    ).with_(**result.best_dgsr_params()["dgsr"])
    assert train_dgsr(graph, train, val, config_of_best).best_metric == pytest.approx(result.best_value)


def test_minutes_budget_ends_the_running_trial_after_its_epoch(tiny) -> None:
    graph, train, val = tiny
    config = TuningConfig(n_trials=5, timeout_minutes=1e-9, pruner="none", search_space=TINY_SPACE)
    result = run_study(graph, train, val, TINY_DGSR, config)
    assert len(result.trials) == 1
    (row,) = result.trials
    assert row["state"] == "complete" and row["epochs"] == 1 and "budget" in row["reason"]
    assert result.best_value == row["objective"]


def test_best_params_file_and_params_string_round_trip(tiny) -> None:
    graph, train, val = tiny
    result = run_study(graph, train, val, TINY_DGSR, TuningConfig(n_trials=1, search_space=TINY_SPACE))
    text = best_params_yaml(result)
    parsed = yaml.safe_load(text)
    assert parsed == result.best_dgsr_params()
    # the `--params` string in the header gives the same values as the file (as kedro parses it)
    cli = text.split('kedro run --params "', 1)[1].split('"', 1)[0]
    assert OmegaConf.to_container(OmegaConf.from_dotlist(cli.split(","))) == parsed
    assert params_cli({"dgsr": {"model": {"distinct_sessions": True}}}) == "dgsr.model.distinct_sessions=true"


def _runs(experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


@pytest.mark.slow
def test_tune_dgsr_pipeline_nested_runs_and_best_params_file(kedro_project: Path) -> None:
    params = {
        "synthetic": {"num_items": 300, "num_train_sessions": 600, "num_test_sessions": 50, "seed": 3},
        "ingestion": {"progress": False},
        "dgsr": TINY_DGSR,
        "tuning": {"n_trials": 2, "search_space": TINY_SPACE},
    }
    bootstrap_project(kedro_project)
    with KedroSession.create(project_path=kedro_project, runtime_params=params) as session:
        session.run(pipeline_names=["tune_dgsr"])
    while mlflow.active_run() is not None:
        mlflow.end_run()

    runs = _runs("gnn_recsys")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.info.run_name for c in children) == ["trial-000", "trial-001"]

    reporting = kedro_project / "data" / "08_reporting"
    trials = pl.read_csv(reporting / "dgsr_tuning_trials.csv")
    assert trials["trial"].to_list() == [0, 1]
    for child in children:
        trial = int(child.data.params["tuning.trial"])
        row = trials.filter(pl.col("trial") == trial).row(0, named=True)
        assert child.data.metrics["tuning.objective"] == pytest.approx(row["objective"])
        assert float(child.data.params["dgsr.train.lr"]) == pytest.approx(row["train.lr"])
        curve = mlflow.MlflowClient().get_metric_history(child.info.run_id, "dgsr.val_recall_at_20")
        assert [m.step for m in curve] == list(range(1, row["epochs"] + 1))
    # the full softmax (300 items): the negatives were not searched
    assert "loss.num_negatives" not in trials.columns

    best = yaml.safe_load((reporting / "dgsr_best_params.yml").read_text())
    best_row = trials.sort("objective", descending=True).row(0, named=True)
    assert best["dgsr"]["train"]["lr"] == pytest.approx(best_row["train.lr"])
    assert parent.data.metrics["tuning.best_objective"] == pytest.approx(best_row["objective"])
    config = FitConfig.from_dict(best["dgsr"])
    assert config.model.embedding_dim == best_row["model.embedding_dim"]
    assert config.model.user_max_length == best_row["model.user_max_length"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "tuning")}
    assert artifacts == {"tuning/dgsr_best_params.yml", "tuning/dgsr_tuning_trials.csv"}

    # copied into conf/local, the file changes only the tuned fields of `dgsr`
    (kedro_project / "conf" / "local" / "parameters_dgsr_tuned.yml").write_text(
        (reporting / "dgsr_best_params.yml").read_text()
    )
    with KedroSession.create(project_path=kedro_project) as session:
        dgsr = session.load_context().params["dgsr"]
    assert dgsr["train"]["lr"] == pytest.approx(best_row["train.lr"])
    assert dgsr["train"]["batch_size"] == 512 and "checkpoint_dir" in dgsr and "samples" in dgsr


def test_trials_below_the_median_are_pruned(tiny) -> None:
    graph, train, val = tiny
    # lr 0 never learns: after a learning trial its first epoch is below the median (seed 8 draws
    # 0.05, then 0.0 twice)
    space = {"train": {"lr": {"choices": [0.0, 0.05]}}}
    config = TuningConfig(
        n_trials=3, pruner_startup_trials=1, pruner_warmup_epochs=0, search_space=space, seed=8
    )
    result = run_study(graph, train, val, TINY_DGSR, config)
    pruned = [row for row in result.trials if row["state"] == "pruned"]
    assert [row["trial"] for row in pruned] == [1, 2], result.trials
    assert all(row["train.lr"] == 0.0 and row["epochs"] == 1 for row in pruned)
    assert result.best_params == {"train.lr": 0.05}
