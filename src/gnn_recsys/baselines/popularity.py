"""Popularity baseline: the same most-frequent items for every session.

It is the floor every other model must beat and the filler the co-visitation baseline uses when a
session has too few items of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES
from gnn_recsys.data.split import as_event_table
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA

#: Plain event frequency.
UNIFORM_TYPE_WEIGHTS: Mapping[int, float] = dict.fromkeys(EVENT_TYPE_CODES.values(), 1.0)


def type_weight_expr(column: str, weights: Mapping[int, float]) -> pl.Expr:
    """Float32 weight of each event type code in ``column``; every type code must have a weight."""
    missing = sorted(set(EVENT_TYPE_CODES.values()) - set(weights))
    if missing:
        raise ValueError(f"type weights lack event type code(s) {missing}; got {dict(weights)}")
    return pl.col(column).replace_strict(dict(weights), return_dtype=pl.Float32)


@dataclass
class PopularityModel:
    """Items ranked by (type-weighted) event count, ties broken by ascending aid."""

    items: pl.DataFrame  # aid Int32, score Float32, best first
    name: str = "popularity"

    @classmethod
    def fit(
        cls,
        events: pl.DataFrame,
        type_weights: Mapping[int, float] | None = None,
        name: str = "popularity",
    ) -> PopularityModel:
        """Count events per aid, each weighted by its event type (default: all 1 = frequency)."""
        frame = as_event_table(events)
        weights = UNIFORM_TYPE_WEIGHTS if type_weights is None else type_weights
        items = (
            frame.group_by("aid")
            .agg(type_weight_expr("type", weights).sum().alias("score"))
            .sort(["score", "aid"], descending=[True, False])
        )
        return cls(
            items=items.select(pl.col("aid").cast(pl.Int32), pl.col("score").cast(pl.Float32)), name=name
        )

    def top(self, k: int) -> pl.DataFrame:
        """The ``k`` most popular items (fewer when the catalogue is smaller)."""
        return self.items.head(k)

    def recommend(self, session_events: pl.DataFrame, k: int = 20) -> pl.DataFrame:
        """Candidates table: the same top-``k`` list for every session present in ``session_events``."""
        if k < 1:
            raise ValueError(f"recommend: k must be >= 1, got {k}")
        sessions = (
            as_event_table(session_events, name="session_events").select("session").unique().sort("session")
        )
        top = self.top(k).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"))
        return (
            sessions.join(top, how="cross")
            .with_columns(pl.lit(self.name).alias("model"))
            .select(list(CANDIDATE_SCHEMA))
            .sort(["session", "rank"])
        )
