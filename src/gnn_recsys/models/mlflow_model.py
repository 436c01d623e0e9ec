"""DGSR as an MLflow pyfunc model: session events in, top-K aids out.

What a logged model contains (artifacts):

* ``dgsr.pt`` -- the state dict, the constructor arguments and the :class:`TrainConfig` as a dict;
* ``graph/`` -- the temporal graph the model reads neighbours from (:meth:`TemporalGraph.save`).

What ``predict`` does: DGSR needs a session *inside* the graph (its items' neighbour sessions, its own
context). The input sessions (a frame ``session, aid, ts, type``) are therefore **appended to the
stored graph** as new sessions -- under fresh internal ids, so an input session id that already
exists in the graph is treated as a different, new session -- the graph is rebuilt
(:func:`build_temporal_graph`, O(stored events): seconds for millions of events, so batch requests
rather than calling it per session), and each input session is scored after its last event. Events
whose aid is not in the stored catalogue cannot be embedded: they are dropped and counted in a
warning log; a session left without events gets no rows. The output has the candidates contract's
columns ``session, rank, aid, score`` (rank 1 = best).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import torch
import torch_geometric
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from gnn_recsys.data.schema import event_type_code
from gnn_recsys.graph.temporal_graph import TemporalGraph, build_temporal_graph
from gnn_recsys.models.dgsr import DGSR
from gnn_recsys.training.config import TrainConfig
from gnn_recsys.training.trainer import make_sampler, recommend

logger = logging.getLogger(__name__)

_CHECKPOINT = "dgsr.pt"
_GRAPH = "graph"
_INPUT_COLUMNS = ("session", "aid", "ts", "type")


def graph_events(graph: TemporalGraph) -> pl.DataFrame:
    """The event table a graph was built from (session ids and aids, session order)."""
    return pl.DataFrame(
        {
            "session": np.asarray(graph.session_id)[graph.ev_session()],
            "aid": np.asarray(graph.item_aid)[np.asarray(graph.ev_item)],
            "ts": np.asarray(graph.ev_ts),
            "type": np.asarray(graph.ev_type),
        },
        schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8},
    )


def append_sessions(
    graph: TemporalGraph, events: pl.DataFrame
) -> tuple[TemporalGraph, np.ndarray, np.ndarray]:
    """Graph with ``events``' sessions added as new sessions; ``(graph, input session ids, their indices)``.

    Input sessions get internal ids after the graph's largest session id (in ascending order of the
    input id); aids outside the catalogue are dropped (counted in a warning). Sessions that keep no
    event are absent from the returned ids.
    """
    missing = [c for c in _INPUT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"DGSR input lacks column(s) {missing}; has {events.columns}")
    for column in _INPUT_COLUMNS:
        nulls = events[column].null_count()
        if nulls:
            raise ValueError(
                f"DGSR input column {column!r} has {nulls} null(s), first at row {events[column].is_null().arg_max()}"
            )
    events = events.select(pl.col(c).cast(pl.Int64, strict=True) for c in _INPUT_COLUMNS)
    known = np.isin(events["aid"].to_numpy(), np.asarray(graph.item_aid))
    if not known.all():
        logger.warning(
            "DGSR predict: dropped %d event(s) whose aid is not in the model's catalogue, e.g. %s",
            int((~known).sum()),
            np.unique(events["aid"].to_numpy()[~known])[:10].tolist(),
        )
        events = events.filter(pl.Series(known))
    input_ids = np.unique(events["session"].to_numpy())
    if len(input_ids) == 0:
        return graph, input_ids, np.zeros(0, dtype=np.int64)
    first_new = int(np.asarray(graph.session_id).max()) + 1 if graph.num_sessions else 0
    if first_new + len(input_ids) > np.iinfo(np.int32).max:
        raise ValueError("DGSR predict: too many sessions for Int32 session ids")
    internal = events.with_columns(
        session=(pl.col("session").rank("dense").cast(pl.Int64) - 1 + first_new),
    )
    stored = graph_events(graph)
    combined = pl.concat([stored, internal.cast(stored.schema)])
    new_graph = build_temporal_graph(combined, item_aids=np.asarray(graph.item_aid))
    indices = new_graph.session_to_index(np.arange(first_new, first_new + len(input_ids)))
    return new_graph, input_ids, indices


class DGSRPyfunc(mlflow.pyfunc.PythonModel):
    """Top-K aids for sessions given as events (see module docstring for what ``predict`` does)."""

    def load_context(self, context: Any) -> None:
        state = torch.load(context.artifacts["checkpoint"], map_location="cpu", weights_only=False)
        self.config = TrainConfig.from_dict(state["config"])
        self.model = DGSR(**state["hyperparameters"])
        self.model.load_state_dict(state["state_dict"])
        self.model.eval()
        self.graph = TemporalGraph.load(context.artifacts["graph"], mmap=False)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``session, rank, aid, score`` rows, ``k`` per session.

        ``params``: ``k`` (default ``top_k``) and, for a model with type heads, ``event_type``
        (``"clicks"`` default, ``"carts"`` or ``"orders"``): which of the three lists to return.
        """
        k = int((params or {}).get("k", self.config.top_k))
        event_type = None
        if self.model.type_head is not None:
            event_type = event_type_code(str((params or {}).get("event_type", "clicks")))
        events = (
            pl.from_pandas(model_input)
            if isinstance(model_input, pd.DataFrame)
            else pl.DataFrame(model_input)
        )
        graph, session_ids, indices = append_sessions(self.graph, events)
        aids, scores = recommend(
            self.model,
            graph,
            indices,
            k=k,
            batch_size=self.config.eval_batch_size or self.config.batch_size,
            sampler=make_sampler(graph, self.config),
            context_window=self.config.context_window,
            event_type=event_type,
        )
        n, width = aids.shape
        return pd.DataFrame(
            {
                "session": np.repeat(session_ids, width).astype(np.int32),
                "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n),
                "aid": aids.reshape(-1).astype(np.int32),
                "score": scores.reshape(-1).astype(np.float32),
            }
        )


def log_dgsr_model(
    model: DGSR,
    graph: TemporalGraph,
    config: TrainConfig,
    artifact_path: str = "dgsr_model",
    registered_model_name: str | None = None,
) -> Any:
    """Log ``model`` (+ its graph and config) as a pyfunc model in the active MLflow run; returns ``ModelInfo``."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / _CHECKPOINT
        torch.save(
            {
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "hyperparameters": model.hyperparameters(),
                "config": config.to_dict(),
            },
            checkpoint,
        )
        graph_dir = graph.save(Path(tmp) / _GRAPH)
        return mlflow.pyfunc.log_model(
            name=artifact_path,
            python_model=DGSRPyfunc(),
            artifacts={"checkpoint": str(checkpoint), "graph": str(graph_dir)},
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
                f"torch-geometric=={torch_geometric.__version__}",
                f"polars=={pl.__version__}",
                f"numpy=={np.__version__}",
            ],
            registered_model_name=registered_model_name,
            metadata={"config": json.dumps(config.to_dict())},
            signature=_signature(config),
        )


def _signature(config: TrainConfig) -> ModelSignature:
    """Session events in, ranked aids out; ``k`` and ``event_type`` as inference parameters."""
    return ModelSignature(
        inputs=Schema(
            [
                ColSpec("integer", "session"),
                ColSpec("integer", "aid"),
                ColSpec("long", "ts"),
                ColSpec("integer", "type"),
            ]
        ),
        outputs=Schema(
            [
                ColSpec("integer", "session"),
                ColSpec("integer", "rank"),
                ColSpec("integer", "aid"),
                ColSpec("float", "score"),
            ]
        ),
        params=ParamSchema(
            [ParamSpec("k", "long", config.top_k), ParamSpec("event_type", "string", "clicks")]
        ),
    )
