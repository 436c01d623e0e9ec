"""Baseline nodes. Each model fits on the train events plus the observed test prefixes (as in the
competition, where the test prefixes are known) and ranks K candidates for every test session."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from gnn_recsys.baselines.covisitation import (
    CandidateRerankConfig,
    CandidateRerankModel,
    CovisitationConfig,
    CovisitationModel,
)
from gnn_recsys.baselines.popularity import PopularityModel
from gnn_recsys.baselines.recent_items import RecentItemsModel
from gnn_recsys.data.schema import event_type_code

_TYPE_WEIGHT_KEYS = ("type_weights", "history_type_weights", "popularity_type_weights")


def _type_codes(weights: Mapping[str, float] | None) -> dict[int, float] | None:
    """YAML names event types (``carts: 6``); the core library keys them by code."""
    return None if weights is None else {event_type_code(name): float(w) for name, w in weights.items()}


def recommend_popularity(
    train_events: pl.DataFrame, test_inputs: pl.DataFrame, params: dict[str, Any]
) -> pl.DataFrame:
    """Most frequent (type-weighted) items, the same list for every session."""
    model = PopularityModel.fit(
        pl.concat([train_events, test_inputs]), type_weights=_type_codes(params.get("type_weights"))
    )
    return model.recommend(test_inputs, k=params["top_k"])


def recommend_recent_items(
    train_events: pl.DataFrame, test_inputs: pl.DataFrame, params: dict[str, Any]
) -> pl.DataFrame:
    """The session's own distinct items, most recent first (the train events are not needed)."""
    del train_events
    return RecentItemsModel().recommend(test_inputs, k=params["top_k"])


def recommend_covisitation(
    train_events: pl.DataFrame, test_inputs: pl.DataFrame, params: dict[str, Any]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Co-visitation candidates of the configured ``variant``, and its matrices as one long table
    (``matrix, aid, neighbour, weight``: the ranker's co-visitation features read them).

    ``candidate_rerank``: one list per event type (typed candidates), fillers from the popularity of
    the sessions being recommended (the test period).  ``legacy``: today's single list, kept so the
    change is measured on the same split.  Parameters without ``variant`` are the legacy ones, flat.
    """
    variant = params.get("variant")
    events = pl.concat([train_events, test_inputs])
    if variant == "candidate_rerank":
        config = CandidateRerankConfig.from_params(params.get("candidate_rerank") or {})
        model = CandidateRerankModel.fit(events, config, filler_events=test_inputs)
        return model.recommend(test_inputs, k=params["top_k"]), model.neighbour_table()
    if variant not in (None, "legacy"):
        raise ValueError(f"covisitation.variant: {variant!r} is not one of 'candidate_rerank', 'legacy'")
    options = params.get("legacy", {}) if variant == "legacy" else params
    options = {k: v for k, v in options.items() if k not in ("top_k", "variant")}
    options |= {k: _type_codes(options[k]) for k in _TYPE_WEIGHT_KEYS if k in options}
    model = CovisitationModel.fit(events, CovisitationConfig(**options))
    return model.recommend(test_inputs, k=params["top_k"]), model.neighbour_table()
