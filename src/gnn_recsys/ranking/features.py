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
  overall and in their last ``recent_days`` days;
* ``covis_{matrix}_sum`` / ``_max`` / ``_last`` when co-visitation matrices are given: the candidate's
  weight as a neighbour of the session's items in each matrix (``clicks``, ``carts_orders``,
  ``buy2buy``, ...), summed and maximal over the session's distinct items, and from its most recent
  item alone.  A weight enters as its share of the heaviest weight in the item's list, so the ranker
  period's matrices (fitted on less data) and the final ones speak the same scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES, MS_PER_DAY
from gnn_recsys.fixed_point import exact_sum
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


#: Rows of (session item x neighbour) joined at once by :func:`covisitation_features`: bounds its
#: memory at OTTO scale (1.67M test sessions x their items x every matrix's neighbours).
COVIS_JOIN_ROWS = 20_000_000
STATS = ("sum", "max", "last")


def covisitation_features(
    pairs: pl.DataFrame, history: pl.DataFrame, neighbours: pl.DataFrame, join_rows: int = COVIS_JOIN_ROWS
) -> pl.DataFrame:
    """``session, aid, covis_<matrix>_{sum,max,last}`` for the (session, aid) ``pairs`` asked for.

    ``history`` is :func:`~gnn_recsys.ranking.candidates.history_items`'s table (the session's
    distinct items and their last position); ``neighbours`` the long table ``matrix, aid, neighbour,
    weight`` of :meth:`~gnn_recsys.baselines.covisitation.CandidateRerankModel.neighbour_table`.  A pair
    no matrix links to the session gets 0: the absence of co-visitation is information too.
    """
    matrices = sorted(neighbours["matrix"].unique().to_list())
    columns = [f"covis_{m}_{stat}" for m in matrices for stat in STATS]
    pairs = pairs.select(pl.col("session").cast(pl.Int32), pl.col("aid").cast(pl.Int32)).unique()
    if not matrices:
        return pairs
    shares = neighbours.select(
        "matrix",
        pl.col("aid").cast(pl.Int32),
        pl.col("neighbour").cast(pl.Int32),
        (pl.col("weight").cast(pl.Float64) / pl.col("weight").max().over(["matrix", "aid"]).cast(pl.Float64))
        .cast(pl.Float32)
        .alias("share"),
    )
    sources = history.select(
        pl.col("session").cast(pl.Int32),
        pl.col("aid").cast(pl.Int32),
        (pl.col("last_position") == pl.col("session_length") - 1).alias("is_last"),
    ).sort("session")
    # Chunks of whole sessions, sized by the rows the join will produce.
    per_aid = shares.group_by("aid").len()
    fan_out = (
        sources.join(per_aid, on="aid", how="left", maintain_order="left")["len"].fill_null(0).to_numpy()
    )
    session_ids = sources["session"].to_numpy()
    # exclusive end of each session's rows (none without sessions: a run without a test file)
    ends = (
        np.flatnonzero(np.r_[session_ids[1:] != session_ids[:-1], True]) + 1
        if len(session_ids)
        else np.zeros(0, np.int64)
    )
    chunk = np.cumsum(fan_out)[ends - 1] // join_rows if len(ends) else np.zeros(0, np.int64)
    boundaries = [0, *ends[np.r_[chunk[1:] != chunk[:-1], True]].tolist()] if len(ends) else [0]
    parts = []
    for first, last in zip(boundaries[:-1], boundaries[1:], strict=True):
        linked = (
            sources.slice(first, last - first)
            .join(shares, on="aid")
            .select("session", pl.col("neighbour").alias("aid"), "matrix", "share", "is_last")
            .join(pairs, on=["session", "aid"], how="semi")
        )
        parts.append(
            linked.group_by(["session", "aid", "matrix"]).agg(
                exact_sum(pl.col("share")).alias("sum"),
                pl.col("share").max().alias("max"),
                exact_sum(pl.col("share").filter(pl.col("is_last"))).alias("last"),
            )
        )
    empty = {"session": pl.Int32, "aid": pl.Int32, "matrix": pl.String} | dict.fromkeys(STATS, pl.Float32)
    linked = pl.concat(parts) if parts else pl.DataFrame(schema=empty)
    frame = pairs
    for matrix in matrices:
        frame = frame.join(
            linked.filter(pl.col("matrix") == matrix).select(
                "session",
                "aid",
                *[pl.col(stat).cast(pl.Float32).alias(f"covis_{matrix}_{stat}") for stat in STATS],
            ),
            on=["session", "aid"],
            how="left",
        )
    return frame.with_columns(pl.col(columns).fill_null(0.0))


def build_features(
    sources: Mapping[str, pl.DataFrame],
    session_events: pl.DataFrame,
    fit_events: pl.DataFrame,
    config: CandidateConfig | None = None,
    covisitation_neighbours: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Candidates and their features for every session of ``session_events``.

    ``sources`` maps a source name (``covisitation``, ``dgsr``, ...) to its candidates table;
    ``session_events`` are the sessions' observed events (event-table contract, sorted by session);
    ``fit_events`` are the events the sources were fitted on (for popularity);
    ``covisitation_neighbours`` the co-visitation matrices fitted on them (``covis_*`` columns; none
    without).  Rows come sorted by type, session, aid: each (type, session) list is contiguous, as the
    ranker's groups need.
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
    if covisitation_neighbours is not None:
        covis = covisitation_features(frame.select("session", "aid"), history, covisitation_neighbours)
        frame = frame.join(covis, on=["session", "aid"], how="left")
    return frame.sort(["type", "session", "aid"])


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The feature columns of a feature table (everything but ids and labels), in table order."""
    return [c for c in frame.columns if c not in ID_COLUMNS and c not in LABEL_COLUMNS]


__all__ = [
    "ID_COLUMNS",
    "LABEL_COLUMNS",
    "TYPE_CODES",
    "build_features",
    "covisitation_features",
    "feature_columns",
    "item_popularity",
]
