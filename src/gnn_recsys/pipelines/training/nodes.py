"""Training nodes: samples, DGSR training, full-catalogue top-K candidates, the MLflow model.

Per-epoch curves go straight to the active MLflow run (kedro-mlflow opens it before the pipeline
starts), so a long training shows progress in the UI while it runs.
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import polars as pl

from gnn_recsys.export.candidates import candidates_frame, typed_candidates
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.inference.recommend import InferenceConfig, choose_keep_windows, recommend_by_type
from gnn_recsys.loader.loaders import LoaderConfig
from gnn_recsys.loader.samples import (
    SampleConfig,
    SampleSet,
    hold_out_validation,
    make_samples,
    refit_samples,
)
from gnn_recsys.models.config import ModelConfig
from gnn_recsys.models.dgsr import DGSR, NUM_EVENT_TYPES
from gnn_recsys.pipelines.mlflow_metrics import mlflow_metrics
from gnn_recsys.runtime import resolve_device
from gnn_recsys.serving.mlflow_model import log_dgsr_model
from gnn_recsys.training.config import FitConfig, RefitConfig
from gnn_recsys.training.fit import train_dgsr, training_outputs
from gnn_recsys.training.refit import refit_dgsr

logger = logging.getLogger(__name__)


def make_dgsr_train_graph(
    local_train_events: pl.DataFrame,
    local_test_inputs: pl.DataFrame,
    item_vocabulary: pl.DataFrame,
    params: dict[str, Any],
) -> tuple[TemporalGraph, pl.DataFrame]:
    """The graph DGSR trains on and the validation targets.

    :func:`~gnn_recsys.loader.samples.hold_out_validation` cuts the validation sessions; the graph
    holds only what precedes each cut (inference still uses ``local_graph``). The samples are drawn
    by the next node from the graph as the catalog saved it: memory-mapped, so that at OTTO scale
    the events, the graph and the samples are never all in memory at once.
    """
    config = SampleConfig.from_dict(params)
    test_sessions = local_test_inputs["session"].unique().to_numpy()
    visible, val_targets = hold_out_validation(local_train_events, test_sessions, config)
    graph = build_temporal_graph(
        pl.concat([visible, local_test_inputs.select(visible.columns).cast(visible.schema)]),
        item_aids=item_vocabulary["aid"].to_numpy(),
    )
    return graph, val_targets


def make_dgsr_samples(
    graph: TemporalGraph, local_test_inputs: pl.DataFrame, val_targets: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Training and validation samples on the training graph (:func:`~gnn_recsys.loader.samples.make_samples`)."""
    config = SampleConfig.from_dict(params)
    test_sessions = local_test_inputs["session"].unique().to_numpy()
    train, val = make_samples(graph, test_sessions, val_targets, config)
    return train.to_frame(), val.to_frame()


def _log_epoch(epoch: int, metrics: dict[str, float], prefix: str = "dgsr") -> None:
    if mlflow.active_run() is not None:
        logged = mlflow_metrics({f"{prefix}.{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({k: v["value"] for k, v in logged.items()}, step=epoch)


def _log_refit_epoch(epoch: int, metrics: dict[str, float]) -> None:
    _log_epoch(epoch, metrics, prefix="dgsr_refit")


def train_dgsr_model(
    graph: TemporalGraph,
    train_samples: pl.DataFrame,
    val_samples: pl.DataFrame,
    params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train DGSR (resuming from ``checkpoint_dir`` after an interruption) and keep its best weights."""
    config = FitConfig.from_dict(params)
    val = SampleSet.from_frame(val_samples)
    result = train_dgsr(
        graph,
        SampleSet.from_frame(train_samples),
        val,
        config,
        checkpoint_dir=params["checkpoint_dir"],
        on_epoch_end=_log_epoch,
    )
    artifact, history = training_outputs(result, config, graph.num_items)
    inference = InferenceConfig.from_dict(params["inference"])
    if inference.keep_session_items == "auto" and len(val):
        windows, recalls = choose_keep_windows(
            result.model,
            graph,
            val,
            inference.keep_session_items_choices,
            k=config.train.eval_k,
            batch_size=config.train.eval_batch_size or config.train.batch_size,
            block_size=inference.block_size,
            loader=config.loader,
            amp=inference.amp,
            keep_by=inference.keep_session_items_by,
        )
        logger.info(
            "Recent-items window per list, chosen on the validation sessions: %s (recall@%d %s)",
            windows,
            config.train.eval_k,
            recalls,
        )
        artifact["keep_session_items"] = windows
        history["keep_session_items"] = {"chosen": windows, "val_recall": _string_keys(recalls)}
        if mlflow.active_run() is not None:
            mlflow.log_metrics({f"dgsr.keep_session_items.{name}": float(w) for name, w in windows.items()})
    return artifact, history


def _string_keys(recalls: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    """JSON keys are strings."""
    return {name: {str(w): r for w, r in values.items()} for name, values in recalls.items()}


def refit_dgsr_model(
    local_model: dict[str, Any],
    full_graph: TemporalGraph,
    test_events: pl.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The submission model: DGSR trained again on the full data (``dgsr.refit``; docs/model.md).

    Only the test file's candidates and the MLflow model use it: the full data holds the local test
    labels, so it must never score the local split. ``refit.enabled: false`` (or no test file) passes
    the local model on. The refit's length comes from the local training history stored in the model artifact.
    """
    refit = RefitConfig.from_dict(params.get("refit"))
    if not refit.enabled:
        logger.info("dgsr.refit.enabled is false: the submission uses the local model")
        return local_model
    if test_events.height == 0:  # no test file: nothing for a refit to score
        logger.info("No test file: no DGSR refit, the MLflow model is the local one")
        return local_model
    config = FitConfig.from_dict(params)
    samples = refit_samples(
        full_graph, test_events["session"].unique().to_numpy(), SampleConfig.from_dict(params["samples"])
    )
    result = refit_dgsr(
        full_graph,
        samples,
        config,
        refit,
        history=local_model.get("history") or {},
        local_state=local_model["state_dict"],
        on_epoch_end=_log_refit_epoch,
        checkpoint_dir=refit.checkpoint_dir,
    )
    artifact, _ = training_outputs(result, config, full_graph.num_items)
    if "keep_session_items" in local_model:  # no validation here: the local model's choice
        artifact["keep_session_items"] = dict(local_model["keep_session_items"])
    return artifact


def load_dgsr(artifact: dict[str, Any]) -> DGSR:
    """Rebuild the trained model from the ``dgsr_model`` dataset (CPU; move it where you need it)."""
    model = DGSR.from_config(int(artifact["num_items"]), ModelConfig.from_dict(artifact["model_config"]))
    model.load_state_dict(artifact["state_dict"])
    return model.eval()


def recommend_dgsr(
    artifact: dict[str, Any], graph: TemporalGraph, test_inputs: pl.DataFrame, params: dict[str, Any]
) -> pl.DataFrame:
    """Top-K over the full catalogue for every session of ``test_inputs``, after its last event."""
    model = load_dgsr(artifact).to(resolve_device(params["train"]["device"]))
    inference = InferenceConfig.from_dict(params["inference"]).resolve(artifact.get("keep_session_items"))
    sessions = test_inputs["session"].unique(maintain_order=True).to_numpy()
    typed = model.type_head is not None
    lists = recommend_by_type(
        model,
        graph,
        graph.session_to_index(sessions),
        inference,
        event_types=tuple(range(NUM_EVENT_TYPES)) if typed else (None,),
        loader=LoaderConfig.from_dict(params["loader"]),
        show_progress=bool(params["train"].get("progress", False)),
    )
    if not typed:
        aids, scores = lists[None]
        return candidates_frame(sessions, aids, scores, "dgsr")
    return typed_candidates(
        {
            t: candidates_frame(sessions, aids, scores, "dgsr", event_type=t)
            for t, (aids, scores) in lists.items()
        }
    )


def log_dgsr_to_mlflow(artifact: dict[str, Any], graph: TemporalGraph, params: dict[str, Any]) -> None:
    """Log the trained model as an MLflow pyfunc model referring to ``graph``'s folder (when a run is active)."""
    if mlflow.active_run() is None:
        logger.info("No active MLflow run: the DGSR model is not logged to MLflow")
        return
    info = log_dgsr_model(
        load_dgsr(artifact),
        graph,
        InferenceConfig.from_dict(params).resolve(artifact.get("keep_session_items")),
        artifact_path="dgsr_model",
    )
    logger.info("Logged DGSR as an MLflow model: %s", info.model_uri)
