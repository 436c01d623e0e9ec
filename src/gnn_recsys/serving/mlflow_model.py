"""DGSR as an MLflow pyfunc model: session events in, top-K aids out.

What a logged model holds:

* ``dgsr.pt`` -- the weights (a state dict) and, as plain values, the model and inference configs
  and the catalogue size; loaded with ``torch.load(weights_only=True)``, so it cannot carry code;
* ``item_aid.npy`` -- the item vocabulary, checked against the graph at load time;
* a *reference* to the temporal graph (``model_config["graph_path"]``, the folder the training graph
  was memory-mapped from), not a copy: at OTTO size it is ~11 GB. :func:`load_dgsr_pyfunc` or
  ``mlflow.pyfunc.load_model(uri, model_config={"graph_path": ...})`` can point it elsewhere.

``load_context`` maps the graph once. ``predict`` takes sessions as events (``session, aid, ts,
type``; any integer dtypes), appends them to a *view* of the graph -- the session-side arrays read
as the stored ones followed by the request's events (:class:`AppendedArray`, nothing copied), the item
side shared as it is, so nothing is rebuilt, re-sorted or copied --
and scores each session after its last event. Request sessions are new sessions: an id that also
exists in the graph is a different session. Their events do not enter the item side, so they are
nobody's neighbours. Events whose aid is not in the catalogue cannot be embedded: they are dropped
and counted in a warning; a session left without events gets no rows. The output has the candidate
contract's columns ``session, rank, aid, score`` (rank 1 = best).
"""

import json
import logging
import tempfile
import threading
from dataclasses import replace
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
from gnn_recsys.graph.temporal_graph import AppendedArray, TemporalGraph
from gnn_recsys.inference.recommend import InferenceConfig, recommend
from gnn_recsys.models.config import ModelConfig
from gnn_recsys.models.dgsr import DGSR

logger = logging.getLogger(__name__)

_WEIGHTS = "dgsr.pt"
_VOCABULARY = "item_aid.npy"
_INPUT_COLUMNS = ("session", "aid", "ts", "type")


def _check_request(events: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in _INPUT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"DGSR input lacks column(s) {missing}; has {events.columns}")
    for column in _INPUT_COLUMNS:
        nulls = events[column].null_count()
        if nulls:
            raise ValueError(
                f"DGSR input column {column!r} has {nulls} null(s), first at row {events[column].is_null().arg_max()}"
            )
    # Any integer dtype is fine (pandas gives int64); values must fit the event table's types.
    try:
        return events.select(pl.col(c).cast(pl.Int64, strict=True) for c in _INPUT_COLUMNS)
    except pl.exceptions.InvalidOperationError as error:
        raise ValueError(f"DGSR input columns {list(_INPUT_COLUMNS)} must be integers: {error}") from None


def append_sessions(
    graph: TemporalGraph, events: pl.DataFrame
) -> tuple[TemporalGraph, np.ndarray, np.ndarray]:
    """A view of ``graph`` with ``events``' sessions appended; ``(view, input session ids, their indices)``.

    Only the session-side arrays grow (the request's events after the stored ones); the item side is
    shared unchanged, so the request sessions are no other session's neighbours. Input sessions get
    internal ids after the graph's largest id; aids outside the catalogue are dropped (counted in a
    warning); sessions that keep no event are absent from the returned ids.
    """
    events = _check_request(events)
    item_index = graph.aid_to_index(events["aid"].to_numpy(), missing=-1)
    known = item_index >= 0
    if not known.all():
        logger.warning(
            "DGSR predict: dropped %d event(s) whose aid is not in the model's catalogue, e.g. %s",
            int((~known).sum()),
            np.unique(events["aid"].to_numpy()[~known])[:10].tolist(),
        )
    events = events.with_columns(item=pl.Series(item_index)).filter(pl.Series(known))
    events = events.sort(["session", "ts"], maintain_order=True)
    input_ids, counts = np.unique(events["session"].to_numpy(), return_counts=True)
    if len(input_ids) == 0:
        return graph, input_ids, np.zeros(0, dtype=np.int64)
    first_new = int(graph.session_id[-1]) + 1 if graph.num_sessions else 0  # ids are ascending
    if first_new + len(input_ids) > np.iinfo(np.int32).max:
        raise ValueError("DGSR predict: too many sessions for Int32 session ids")
    item = events["item"].to_numpy().astype(np.int32)
    ts = events["ts"].to_numpy()
    # Search hint of each new event in its item's time-sorted rows: the last row not later than it.
    item_ptr, item_ts = graph.item_ptr, graph.item_ts
    item_pos = np.array(
        [
            item_ptr[i] + np.searchsorted(item_ts[item_ptr[i] : item_ptr[i + 1]], t, "right") - 1
            for i, t in zip(item, ts, strict=True)
        ],
        dtype=np.int64,
    )
    num_events = graph.num_events
    # Lazy appends: the stored session-side arrays stay memory-mapped, nothing O(events) is copied.
    view = TemporalGraph(
        item_aid=graph.item_aid,
        session_id=AppendedArray(
            graph.session_id, np.arange(first_new, first_new + len(input_ids), dtype=np.int32)
        ),
        session_ptr=AppendedArray(graph.session_ptr, num_events + np.cumsum(counts)),
        ev_item=AppendedArray(graph.ev_item, item),
        ev_ts=AppendedArray(graph.ev_ts, ts),
        ev_type=AppendedArray(graph.ev_type, events["type"].to_numpy()),
        ev_item_pos=AppendedArray(graph.ev_item_pos, item_pos),
        item_ptr=graph.item_ptr,
        item_view=graph.item_view,
    )
    return view, input_ids, np.arange(graph.num_sessions, graph.num_sessions + len(input_ids), dtype=np.int64)


class DGSRRecommender(mlflow.pyfunc.PythonModel):
    """Top-K aids for sessions given as events (see the module docstring for what ``predict`` does)."""

    def load_context(self, context: Any) -> None:
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.config = ModelConfig.from_dict(state["model_config"])
        self.inference = InferenceConfig.from_dict(state["inference_config"])
        self.model = DGSR.from_config(int(state["num_items"]), self.config)
        self.model.load_state_dict(state["state_dict"])
        self.model.eval()
        graph_path = (context.model_config or {}).get("graph_path")
        if not graph_path:
            raise ValueError("DGSR model: model_config['graph_path'] (the temporal graph folder) is not set")
        self.graph = TemporalGraph.load(graph_path, mmap=True)
        vocabulary = np.load(context.artifacts["item_aid"], allow_pickle=False)
        if not np.array_equal(vocabulary, np.asarray(self.graph.item_aid)):
            raise ValueError(
                f"DGSR model: the graph at {graph_path} has another item vocabulary "
                f"({self.graph.num_items} items) than the model ({len(vocabulary)} items)"
            )
        self._lock = threading.Lock()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``session, rank, aid, score`` rows, ``k`` per session.

        ``params``: ``k`` (default ``top_k``) and, for a model with type heads, ``event_type``
        (``"clicks"`` default, ``"carts"`` or ``"orders"``): which of the three lists to return.
        """
        k = int((params or {}).get("k", self.inference.top_k))
        event_type = None
        if self.model.type_head is not None:
            event_type = event_type_code(str((params or {}).get("event_type", "clicks")))
        events = (
            pl.from_pandas(model_input)
            if isinstance(model_input, pd.DataFrame)
            else pl.DataFrame(model_input)
        )
        graph, session_ids, indices = append_sessions(self.graph, events)
        with self._lock, torch.inference_mode():
            aids, scores = recommend(
                self.model, graph, indices, replace(self.inference, top_k=k), event_type=event_type
            )
        n, width = aids.shape
        return pd.DataFrame(
            {
                "session": np.repeat(session_ids, width).astype(np.int64),
                "rank": np.tile(np.arange(1, width + 1, dtype=np.int64), n),
                "aid": aids.reshape(-1).astype(np.int64),
                "score": scores.reshape(-1).astype(np.float32),
            }
        )


def log_dgsr_model(
    model: DGSR,
    graph: TemporalGraph,
    inference: InferenceConfig,
    *,
    artifact_path: str = "dgsr_model",
    registered_model_name: str | None = None,
) -> Any:
    """Log ``model`` as a pyfunc model in the active MLflow run; returns ``ModelInfo``.

    ``graph`` must be memory-mapped from a folder (``graph.source_dir``): the model refers to it.
    """
    if graph.source_dir is None:
        raise ValueError(
            "log_dgsr_model needs a graph loaded from a folder (TemporalGraph.load): it refers to it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(model, graph, inference, Path(tmp))
        example = graph_example(graph)
        return mlflow.pyfunc.log_model(
            name=artifact_path,
            python_model=DGSRRecommender(),
            artifacts=artifacts,
            model_config={"graph_path": str(graph.source_dir)},
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
                f"torch-geometric=={torch_geometric.__version__}",
                f"polars=={pl.__version__}",
                f"numpy=={np.__version__}",
            ],
            registered_model_name=registered_model_name,
            metadata={"model_config": json.dumps(model.config.to_dict())},
            signature=_signature(inference),
            input_example=example,
        )


def write_artifacts(
    model: DGSR, graph: TemporalGraph, inference: InferenceConfig, folder: Path
) -> dict[str, str]:
    """Write the model's artifacts into ``folder``: ``dgsr.pt`` (weights, configs, catalogue size; tensors
    and plain values only) and ``item_aid.npy``; returns them as :class:`DGSRRecommender` expects."""
    weights = folder / _WEIGHTS
    torch.save(
        {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "num_items": model.num_items,
            "model_config": model.config.to_dict(),
            "inference_config": inference.to_dict(),
        },
        weights,
    )
    vocabulary = folder / _VOCABULARY
    np.save(vocabulary, np.asarray(graph.item_aid), allow_pickle=False)
    return {"weights": str(weights), "item_aid": str(vocabulary)}


def graph_example(graph: TemporalGraph, events: int = 3) -> pd.DataFrame:
    """A request of one session: the first events of the graph's first session (a model input example)."""
    stop = int(min(events, graph.session_ptr[1])) if graph.num_sessions else 0
    return pd.DataFrame(
        {
            "session": np.full(stop, 1, dtype=np.int64),
            "aid": np.asarray(graph.item_aid)[np.asarray(graph.ev_item[:stop])].astype(np.int64),
            "ts": np.asarray(graph.ev_ts[:stop]).astype(np.int64),
            "type": np.asarray(graph.ev_type[:stop]).astype(np.int64),
        }
    )


def _signature(inference: InferenceConfig) -> ModelSignature:
    """Session events in, ranked aids out; ``k`` and ``event_type`` as inference parameters."""
    return ModelSignature(
        inputs=Schema([ColSpec("long", c) for c in _INPUT_COLUMNS]),
        outputs=Schema(
            [
                ColSpec("long", "session"),
                ColSpec("long", "rank"),
                ColSpec("long", "aid"),
                ColSpec("float", "score"),
            ]
        ),
        params=ParamSchema(
            [ParamSpec("k", "long", inference.top_k), ParamSpec("event_type", "string", "clicks")]
        ),
    )
