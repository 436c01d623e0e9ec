"""Co-visitation baseline, the shape of the classic OTTO public notebooks, vectorised with polars.

Fit
    Two items are co-visited when they occur in the same session within ``time_window_ms`` of each
    other.  Only the last ``max_events_per_session`` events of a session form pairs (long sessions
    would otherwise dominate both cost and weights).  A pair ``aid -> neighbour`` found in a session
    weighs ``type_weight[type of the neighbour event] * time_weight(ts of the neighbour event)``, where
    the time weight grows linearly from ``time_weight_min`` at the first timestamp of the fitted
    events to ``time_weight_max`` at the last (later evidence matters more).  Each pair counts once
    per session, with the largest weight it reached there; the weights are then summed over
    sessions and every aid keeps its ``top_neighbours`` heaviest neighbours (ties: smaller aid).

Recommend
    Three tiers, concatenated and deduplicated in this order, cut at ``k``:

    1. the session's own items, scored by ``sum over their events of recency * history_type_weight``
       (recency halves every ``history_half_life`` events back from the last event, so repeats and
       carts/orders push an item up);
    2. neighbours of the session's ``max_history_items`` most recent distinct items, scored by
       ``sum over those items of recency(item's last event) * co-visitation weight``;
    3. the most popular items of the fitted events, to fill up to ``k``.

    Nothing is excluded.  ``score`` in the output is the score within the row's tier (tiers have
    different units); ``rank`` is the authoritative order.

Chunking (memory bound on the full 217M events)
    Pair generation is a self-join of each session's (at most ``max_events_per_session``) events, so a
    session of ``m`` kept events produces ``m * m`` joined rows.  Sessions are cut into consecutive
    ranges whose joined rows total about ``max_pairs_per_chunk`` (one session never exceeds
    ``max_events_per_session**2``), each range is joined, filtered and reduced to per-pair sums on its
    own, and the partial sums are merged every few chunks.  The accumulated pair table itself grows
    with the number of distinct pairs; ``aid_partitions > 1`` splits it by ``aid % aid_partitions``
    and builds one partition at a time (each reduced to its top neighbours before the next), trading
    repeated joins for a proportionally smaller peak; by default (``None``) it is chosen so that each
    partition joins at most ``max_joined_rows_per_partition`` rows (the joined rows bound the distinct
    pairs; OTTO-shaped synthetic data gives ~14 joined rows per event, so 1 partition up to ~30M events
    and ~8 for the 217M-event train file).  Recommendation is chunked by
    ``sessions_per_recommend_chunk`` sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from gnn_recsys.baselines.popularity import UNIFORM_TYPE_WEIGHTS, PopularityModel, type_weight_expr
from gnn_recsys.data.schema import CART, CLICK, ORDER
from gnn_recsys.data.split import as_event_table, positions_in_session, session_runs
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA

logger = logging.getLogger(__name__)

NEIGHBOUR_SCHEMA: pl.Schema = pl.Schema({"aid": pl.Int32, "neighbour": pl.Int32, "weight": pl.Float32})
_MERGE_EVERY = 4  # partial pair tables merged after this many chunks


def _default_type_weights() -> dict[int, float]:
    return {CLICK: 1.0, CART: 6.0, ORDER: 3.0}


@dataclass(frozen=True)
class CovisitationConfig:
    """Parameters of :class:`CovisitationModel` (see the module docstring for their role)."""

    time_window_ms: int = 24 * 60 * 60 * 1000
    max_events_per_session: int = 30
    type_weights: Mapping[int, float] = field(default_factory=_default_type_weights)
    time_weight_min: float = 1.0
    time_weight_max: float = 4.0
    top_neighbours: int = 20
    history_type_weights: Mapping[int, float] = field(default_factory=_default_type_weights)
    history_half_life: float = 5.0
    max_history_items: int = 30
    popularity_type_weights: Mapping[int, float] = field(default_factory=lambda: dict(UNIFORM_TYPE_WEIGHTS))
    max_pairs_per_chunk: int = 20_000_000
    aid_partitions: int | None = None
    max_joined_rows_per_partition: int = 400_000_000
    sessions_per_recommend_chunk: int = 200_000
    name: str = "covisitation"

    def __post_init__(self) -> None:
        positive = {
            "time_window_ms": self.time_window_ms,
            "max_events_per_session": self.max_events_per_session,
            "top_neighbours": self.top_neighbours,
            "history_half_life": self.history_half_life,
            "max_history_items": self.max_history_items,
            "max_pairs_per_chunk": self.max_pairs_per_chunk,
            "aid_partitions": 1 if self.aid_partitions is None else self.aid_partitions,
            "max_joined_rows_per_partition": self.max_joined_rows_per_partition,
            "sessions_per_recommend_chunk": self.sessions_per_recommend_chunk,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"CovisitationConfig.{key} must be > 0, got {value}")
        if self.time_weight_min > self.time_weight_max:
            raise ValueError(
                f"CovisitationConfig: time_weight_min {self.time_weight_min} > time_weight_max {self.time_weight_max}"
            )


def _chunk_row_ranges(lengths: np.ndarray, max_pairs: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``(row offset, row count)`` ranges of whole sessions with about ``max_pairs`` joined rows."""
    pairs = lengths.astype(np.int64) ** 2
    chunk_of_session = (np.cumsum(pairs) - pairs) // max_pairs
    row_end = np.cumsum(lengths)
    # last session of each chunk: where the chunk id changes (or the final session)
    last = np.flatnonzero(np.r_[chunk_of_session[1:] != chunk_of_session[:-1], True])
    start = 0
    for end in row_end[last]:
        yield start, int(end) - start
        start = int(end)


@dataclass
class CovisitationModel:
    """Co-visitation neighbours plus the popularity filler."""

    neighbours: pl.DataFrame  # NEIGHBOUR_SCHEMA, sorted by aid then weight descending
    popularity: PopularityModel
    config: CovisitationConfig

    @classmethod
    def fit(cls, events: pl.DataFrame, config: CovisitationConfig | None = None) -> CovisitationModel:
        """Build the co-visitation neighbour lists from an event table (train + observed test prefixes)."""
        config = CovisitationConfig() if config is None else config
        frame = as_event_table(events)
        popularity = PopularityModel.fit(frame, config.popularity_type_weights, name="popularity")
        if frame.height == 0:
            return cls(pl.DataFrame(schema=NEIGHBOUR_SCHEMA), popularity, config)

        recent, kept_lengths = weighted_recent_events(frame, config)
        ranges = list(_chunk_row_ranges(kept_lengths, config.max_pairs_per_chunk))
        joined_rows = int((kept_lengths.astype(np.int64) ** 2).sum())
        n_parts = config.aid_partitions or max(1, -(-joined_rows // config.max_joined_rows_per_partition))
        logger.info(
            "co-visitation: %d events of %d sessions, %d joined rows, %d chunk(s) x %d aid partition(s)",
            recent.height, len(kept_lengths), joined_rows, len(ranges), n_parts,
        )  # fmt: skip

        parts = [
            _top_neighbours(_pair_weights(recent, ranges, config, part, n_parts), config.top_neighbours)
            for part in range(n_parts)
        ]
        neighbours = pl.concat(parts).sort(["aid", "weight", "neighbour"], descending=[False, True, False])
        neighbours = neighbours.select(
            pl.col("aid").cast(pl.Int32),
            pl.col("neighbour").cast(pl.Int32),
            pl.col("weight").cast(pl.Float32),
        )
        logger.info(
            "co-visitation: %d neighbour rows for %d aids", neighbours.height, neighbours["aid"].n_unique()
        )
        return cls(neighbours, popularity, config)

    def recommend(self, session_events: pl.DataFrame, k: int = 20) -> pl.DataFrame:
        """Top-``k`` candidates (contract table) for every session present in ``session_events``."""
        if k < 1:
            raise ValueError(f"recommend: k must be >= 1, got {k}")
        frame = as_event_table(session_events, name="session_events")
        starts, lengths = session_runs(frame["session"])
        step = self.config.sessions_per_recommend_chunk
        out = []
        for first in range(0, len(starts), step):
            last = min(first + step, len(starts))
            offset = int(starts[first])
            count = int(starts[last - 1] + lengths[last - 1]) - offset
            out.append(self._recommend_chunk(frame.slice(offset, count), lengths[first:last], k))
        if not out:
            return pl.DataFrame(schema=CANDIDATE_SCHEMA)
        return pl.concat(out)

    def _recommend_chunk(self, events: pl.DataFrame, lengths: np.ndarray, k: int) -> pl.DataFrame:
        config = self.config
        age = np.repeat(lengths - 1, lengths) - positions_in_session(lengths)
        recency = np.power(0.5, age / config.history_half_life)
        history = (
            events.with_columns(pl.Series("recency", recency))
            .group_by(["session", "aid"])
            .agg(
                (pl.col("recency") * type_weight_expr("type", config.history_type_weights))
                .sum()
                .alias("score"),
                pl.col("recency").max(),
            )
        )
        sources = (
            history.sort(["session", "recency", "aid"], descending=[False, True, False])
            .group_by("session", maintain_order=True)
            .head(config.max_history_items)
        )
        covisited = (
            sources.join(self.neighbours, on="aid")
            .group_by(["session", "neighbour"])
            .agg((pl.col("recency") * pl.col("weight")).sum().alias("score"))
            .rename({"neighbour": "aid"})
        )
        popular = events.select("session").unique().join(self.popularity.top(k), how="cross")
        tiers = [
            history.select(
                "session", "aid", pl.lit(0, pl.Int8).alias("tier"), pl.col("score").cast(pl.Float64)
            ),
            covisited.select(
                "session", "aid", pl.lit(1, pl.Int8).alias("tier"), pl.col("score").cast(pl.Float64)
            ),
            popular.select(
                "session", "aid", pl.lit(2, pl.Int8).alias("tier"), pl.col("score").cast(pl.Float64)
            ),
        ]
        return (
            pl.concat(tiers)
            .sort(["session", "tier", "score", "aid"], descending=[False, False, True, False])
            .unique(subset=["session", "aid"], keep="first", maintain_order=True)
            .group_by("session", maintain_order=True)
            .head(k)
            .with_columns(
                pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session").alias("rank"),
                pl.lit(config.name).alias("model"),
            )
            .select(
                pl.col("session").cast(pl.Int32),
                "rank",
                pl.col("aid").cast(pl.Int32),
                pl.col("score").cast(pl.Float32),
                "model",
            )
        )


def weighted_recent_events(
    frame: pl.DataFrame, config: CovisitationConfig
) -> tuple[pl.DataFrame, np.ndarray]:
    """The events that form pairs (last N of sessions with >= 2 of them) with their pair ``weight``.

    Returns the filtered event table (still sorted by session) with ``weight = type weight * time
    weight`` of each event, and the number of kept events of each of its sessions in order.
    """
    t_min, t_max = int(frame["ts"].min()), int(frame["ts"].max())  # type: ignore[arg-type]
    slope = (config.time_weight_max - config.time_weight_min) / max(t_max - t_min, 1)
    time_weight = config.time_weight_min + (pl.col("ts") - t_min).cast(pl.Float64) * slope
    _, lengths = session_runs(frame["session"])
    position = positions_in_session(lengths)
    keep_from = np.repeat(lengths - config.max_events_per_session, lengths)
    kept_lengths = np.minimum(lengths, config.max_events_per_session)
    keep = (position >= keep_from) & np.repeat(kept_lengths >= 2, lengths)
    recent = frame.filter(pl.Series(keep)).with_columns(
        (type_weight_expr("type", config.type_weights).cast(pl.Float64) * time_weight).alias("weight")
    )
    return recent, kept_lengths[kept_lengths >= 2]


def _pair_weights(
    recent: pl.DataFrame, ranges: list[tuple[int, int]], config: CovisitationConfig, part: int, n_parts: int
) -> pl.DataFrame:
    """Summed pair weights ``aid, neighbour, weight`` for source aids with ``aid % n_parts == part``."""
    partial: list[pl.DataFrame] = []
    for offset, count in ranges:
        chunk = recent.slice(offset, count).lazy()
        left = chunk.select("session", "aid", "ts")
        if n_parts > 1:
            left = left.filter(pl.col("aid") % n_parts == part)
        right = chunk.select(
            "session", pl.col("aid").alias("neighbour"), pl.col("ts").alias("ts_nb"), "weight"
        )
        pairs = (
            left.join(right, on="session")
            .filter(
                (pl.col("aid") != pl.col("neighbour"))
                & ((pl.col("ts") - pl.col("ts_nb")).abs() < config.time_window_ms)
            )
            .group_by(["session", "aid", "neighbour"])
            .agg(pl.col("weight").max())
            .group_by(["aid", "neighbour"])
            .agg(pl.col("weight").sum())
        )
        partial.append(pairs.collect())
        if len(partial) >= _MERGE_EVERY:
            partial = [_merge(partial)]
    if not partial:
        return pl.DataFrame(schema={"aid": pl.Int32, "neighbour": pl.Int32, "weight": pl.Float64})
    return _merge(partial)


def _merge(partial: list[pl.DataFrame]) -> pl.DataFrame:
    if len(partial) == 1:
        return partial[0]
    return pl.concat(partial).group_by(["aid", "neighbour"]).agg(pl.col("weight").sum())


def _top_neighbours(pairs: pl.DataFrame, top: int) -> pl.DataFrame:
    return (
        pairs.sort(["aid", "weight", "neighbour"], descending=[False, True, False])
        .group_by("aid", maintain_order=True)
        .head(top)
    )
