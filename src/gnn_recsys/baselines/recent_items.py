"""Recent-items baseline: each session's own distinct items, the most recently seen first.

No model at all: it is the bar for repeats. A quarter to two thirds of OTTO's labels (clicks to
orders) are items the session already holds, and a recommender that loses them is worse than this
list on those labels. DGSR's lists keep the items this baseline ranks first (``keep_session_items``
in the inference config) and the metrics table shows both side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from gnn_recsys.data.split import as_event_table
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA
from gnn_recsys.ranking.candidates import history_items, most_recent_items


@dataclass(frozen=True)
class RecentItemsModel:
    """Distinct items of a session ordered by their last occurrence (file order breaks ts ties)."""

    name: str = "recent_items"

    def recommend(self, session_events: pl.DataFrame, k: int = 20) -> pl.DataFrame:
        """Candidates table: up to ``k`` items per session of ``session_events``; ``score`` is the
        number of the session's events after the item's last occurrence, negated (0 = the last one)."""
        if k < 1:
            raise ValueError(f"recommend: k must be >= 1, got {k}")
        events = as_event_table(session_events, name="session_events")  # stable sort: file order kept
        return (
            most_recent_items(history_items(events), k)
            .with_columns(
                pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session").alias("rank"),
                (-pl.col("events_since_last")).cast(pl.Float32).alias("score"),
                pl.lit(self.name).alias("model"),
            )
            .select(
                pl.col("session").cast(pl.Int32),
                "rank",
                pl.col("aid").cast(pl.Int32),
                "score",
                "model",
            )
            .select(list(CANDIDATE_SCHEMA))
        )
