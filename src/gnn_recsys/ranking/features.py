"""Feature table of (session, type, candidate) rows, vectorised with polars.

Every column is computed from three inputs only: the candidate sources' lists, the sessions'
observed events and the events the sources were fitted on (for item popularity).  What happens after
a session's cut is never an input, which is what keeps the ranker's training rows free of leakage
(``docs/ranking.md``).

Columns (``Float32``; null where a value does not exist, e.g. the rank of an item a list lacks):

* ``{source}_rank`` / ``{source}_score``: the item's rank and score in the source's list of the row's
  type; for a typed source also ``{source}_rank_{type}`` / ``{source}_score_{type}`` from each type's
  list (e.g. the DGSR orders head's score of a clicks candidate);
* ``fusion_score``: the untrained reciprocal-rank fusion of the sources for the row's type;
* ``item_clicks``, ``item_carts``, ``item_orders``: occurrences of the item in the session by type;
  ``events_since_last`` and ``seconds_since_last``: recency of its last occurrence (null if none);
* ``session_length`` (events), ``session_duration_s``, ``session_items`` (distinct items);
* ``pop_{type}`` and ``recent_pop_{type}``: the item's events of each type in the fitted events,
  overall and in their last ``recent_days`` days.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES, MS_PER_DAY
from gnn_recsys.ranking.candidates import (
    KEY,
    TYPE_CODES,
    CandidateConfig,
    candidate_keys,
    history_items,
    source_lists,
)

#: Columns of the feature table that are not features.
ID_COLUMNS = ("session", "type", "aid")
#: Columns added by :func:`gnn_recsys.ranking.candidates.attach_labels`.
LABEL_COLUMNS = ("target", "n_true")


def item_popularity(fit_events: pl.DataFrame, recent_days: float) -> pl.DataFrame:
    """``aid, pop_<type>, recent_pop_<type>``: events per item and type, overall and lately."""
    if fit_events.height == 0:
        return pl.DataFrame(
            schema={"aid": pl.Int32}
            | {f"{p}pop_{name}": pl.Float32 for p in ("", "recent_") for name in EVENT_TYPE_CODES}
        )
    max_ts = int(fit_events["ts"].max())  # type: ignore[arg-type]
    recent = pl.col("ts") > max_ts - int(recent_days * MS_PER_DAY)
    return (
        fit_events.group_by("aid")
        .agg(
            *[
                (pl.col("type") == code).sum().cast(pl.Float32).alias(f"pop_{name}")
                for name, code in EVENT_TYPE_CODES.items()
            ],
            *[
                ((pl.col("type") == code) & recent).sum().cast(pl.Float32).alias(f"recent_pop_{name}")
                for name, code in EVENT_TYPE_CODES.items()
            ],
        )
        .with_columns(pl.col("aid").cast(pl.Int32))
    )


def build_features(
    sources: Mapping[str, pl.DataFrame],
    session_events: pl.DataFrame,
    fit_events: pl.DataFrame,
    config: CandidateConfig | None = None,
) -> pl.DataFrame:
    """Candidates and their features for every session of ``session_events``.

    ``sources`` maps a source name (``covisitation``, ``dgsr``, ...) to its candidates table;
    ``session_events`` are the sessions' observed events (event-table contract, sorted by session);
    ``fit_events`` are the events the sources were fitted on (for popularity).  Rows come sorted by
    type, session, aid: each (type, session) list is contiguous, as the ranker's groups need.
    """
    config = CandidateConfig() if config is None else config
    lists = {name: source_lists(frame, name) for name, frame in sources.items()}
    history = history_items(session_events)
    keys = candidate_keys({name: table for name, (table, _) in lists.items()}, history, config)

    frame = keys
    fusion = pl.lit(0.0, pl.Float64)
    for name, (table, typed) in lists.items():
        frame = frame.join(
            table.select(
                *KEY,
                pl.col("rank").cast(pl.Float32).alias(f"{name}_rank"),
                pl.col("score").cast(pl.Float32).alias(f"{name}_score"),
            ),
            on=KEY,
            how="left",
        )
        weight = float(config.fusion_weights.get(name, 0.0))
        if weight:
            fusion = fusion + (
                weight / (config.fusion_offset + pl.col(f"{name}_rank").cast(pl.Float64))
            ).fill_null(0.0)
        if typed:
            for type_name, code in EVENT_TYPE_CODES.items():
                of_type = table.filter(pl.col("type") == code).select(
                    "session",
                    "aid",
                    pl.col("rank").cast(pl.Float32).alias(f"{name}_rank_{type_name}"),
                    pl.col("score").cast(pl.Float32).alias(f"{name}_score_{type_name}"),
                )
                frame = frame.join(of_type, on=["session", "aid"], how="left")
    frame = frame.with_columns(fusion.cast(pl.Float32).alias("fusion_score"))

    item_columns = [f"item_{name}" for name in EVENT_TYPE_CODES]
    frame = frame.join(
        history.select("session", "aid", *item_columns, "events_since_last", "seconds_since_last"),
        on=["session", "aid"],
        how="left",
    ).with_columns(pl.col(item_columns).fill_null(0.0))
    sessions = history.group_by("session").agg(
        pl.col("session_length").first().cast(pl.Float32),
        ((pl.col("session_last_ts").first() - pl.col("first_ts").first()) / 1000.0)
        .cast(pl.Float32)
        .alias("session_duration_s"),
        pl.col("session_items").first().cast(pl.Float32),
    )
    frame = frame.join(sessions, on="session", how="left")

    popularity = item_popularity(fit_events.select("aid", "ts", "type"), config.recent_days)
    pop_columns = [c for c in popularity.columns if c != "aid"]
    frame = frame.join(popularity, on="aid", how="left").with_columns(pl.col(pop_columns).fill_null(0.0))
    return frame.sort(["type", "session", "aid"])


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The feature columns of a feature table (everything but ids and labels), in table order."""
    return [c for c in frame.columns if c not in ID_COLUMNS and c not in LABEL_COLUMNS]


__all__ = [
    "ID_COLUMNS",
    "LABEL_COLUMNS",
    "TYPE_CODES",
    "build_features",
    "feature_columns",
    "item_popularity",
]
