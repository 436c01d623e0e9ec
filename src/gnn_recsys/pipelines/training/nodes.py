"""Training nodes: samples, DGSR training, full-catalogue top-K candidates, the MLflow model.

Per-epoch curves go straight to the active MLflow run (kedro-mlflow opens it before the pipeline
starts), so a long training shows progress in the UI while it runs.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import numpy as np
import polars as pl

from gnn_recsys.export.candidates import candidates_frame, typed_candidates
from gnn_recsys.graph.sampler import future_target_samples, training_sample_events
from gnn_recsys.graph.temporal_graph import TemporalGraph
from gnn_recsys.models.dgsr import DGSR, NUM_EVENT_TYPES
from gnn_recsys.models.mlflow_model import log_dgsr_model
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics
from gnn_recsys.training.config import TrainConfig
from gnn_recsys.training.trainer import (
    SampleSet,
    build_model,
    recommend_by_type,
    resolve_device,
    train_dgsr,
)

logger = logging.getLogger(__name__)


def make_dgsr_samples(
    graph: TemporalGraph, local_test_inputs: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training samples (every next event of every session in the local graph) and validation samples.

    Validation holds out ``val_fraction`` of the local *train* sessions whole (none of their events
    is a training target), each cut once at a seeded random position, as the official protocol cuts
    test sessions. The local test sessions stay out of validation: they are what we report on, but
    their observed prefixes are legitimate training targets (their labels lie after the cut and are
    not in the graph).
    """
    rng = np.random.default_rng(params["seed"])
    test_sessions = graph.session_to_index(local_test_inputs["session"].unique().to_numpy())
    is_test = np.zeros(graph.num_sessions, dtype=bool)
    is_test[test_sessions] = True
    candidates = np.flatnonzero(~is_test)
    held_out = rng.choice(candidates, size=int(len(candidates) * params["val_fraction"]), replace=False)
    is_val = np.zeros(graph.num_sessions, dtype=bool)
    is_val[held_out] = True

    train_events = training_sample_events(graph, sessions=np.flatnonzero(~is_val))
    cap = params.get("max_train_samples")
    if cap and len(train_events) > cap:
        train_events = np.sort(rng.choice(train_events, size=cap, replace=False))
    train = SampleSet.from_events(graph, train_events)
    future_types = tuple(params.get("future_target_types") or ())
    if future_types:  # carts / orders seen from random earlier cuts, as OTTO labels them
        cut, target = future_target_samples(
            graph,
            future_types,
            sessions=np.flatnonzero(~is_val),
            seed=params["seed"],
            cuts_per_event=params.get("future_cuts_per_event", 1),
        )
        train = SampleSet.concat([train, SampleSet.from_cut_events(graph, cut, target)])
    val = SampleSet.from_events(
        graph, training_sample_events(graph, sessions=held_out, max_per_session=1, seed=params["seed"])
    )
    logger.info(
        "DGSR samples: %d train, %d validation (%d held-out sessions)", len(train), len(val), len(held_out)
    )
    return train.to_frame(), val.to_frame()


def _log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    logger.info("epoch %d: %s", epoch, {k: round(v, 5) for k, v in metrics.items()})
    if mlflow.active_run() is not None:
        logged = mlflow_metrics({f"dgsr.{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({k: v["value"] for k, v in logged.items()}, step=epoch)


def train_dgsr_model(
    graph: TemporalGraph,
    train_samples: pl.DataFrame,
    val_samples: pl.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train DGSR (resuming from ``checkpoint_dir`` after an interruption) and keep its best weights."""
    config = TrainConfig.from_dict(params["train"])
    result = train_dgsr(
        graph,
        SampleSet.from_frame(train_samples),
        SampleSet.from_frame(val_samples),
        config,
        checkpoint_dir=params["checkpoint_dir"],
        on_epoch_end=_log_epoch,
    )
    artifact = {
        "config": config.to_dict(),
        "num_items": graph.num_items,
        "state_dict": {k: v.detach().cpu() for k, v in result.model.state_dict().items()},
    }
    history = {
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "start_epoch": result.start_epoch,
        "stopped_early": result.stopped_early,
        "epochs": result.history,
    }
    return artifact, history


def load_dgsr(artifact: dict[str, Any]) -> tuple[DGSR, TrainConfig]:
    """Rebuild the trained model from the ``dgsr_model`` dataset (CPU; move it where you need it)."""
    config = TrainConfig.from_dict(artifact["config"])
    model = build_model(artifact["num_items"], config)
    model.load_state_dict(artifact["state_dict"])
    return model.eval(), config


def recommend_dgsr(
    artifact: dict[str, Any], graph: TemporalGraph, test_inputs: pl.DataFrame, params: dict[str, Any]
) -> pl.DataFrame:
    """Top-K over the full catalogue for every session of ``test_inputs``, after its last event."""
    model, config = load_dgsr(artifact)
    sessions = test_inputs["session"].unique(maintain_order=True).to_numpy()
    model = model.to(resolve_device(config.device))
    lists = recommend_by_type(
        model,
        graph,
        graph.session_to_index(sessions),
        k=params["top_k"],
        batch_size=params["batch_size"],
        block_size=params["block_size"],
        event_types=tuple(range(NUM_EVENT_TYPES)) if config.type_heads else (None,),
    )
    if not config.type_heads:
        aids, scores = lists[None]
        return candidates_frame(sessions, aids, scores, "dgsr")
    return typed_candidates(
        {
            t: candidates_frame(sessions, aids, scores, "dgsr", event_type=t)
            for t, (aids, scores) in lists.items()
        }
    )


def log_dgsr_to_mlflow(artifact: dict[str, Any], graph: TemporalGraph) -> None:
    """Log the trained model with the full graph as a loadable MLflow pyfunc model (when a run is active)."""
    if mlflow.active_run() is None:
        logger.info("No active MLflow run: the DGSR model is not logged to MLflow")
        return
    model, config = load_dgsr(artifact)
    info = log_dgsr_model(model, graph, config, artifact_path="dgsr_model")
    logger.info("Logged DGSR as an MLflow model: %s", info.model_uri)
