"""Co-visitation baselines, the shape of the classic OTTO public notebooks, vectorised with polars.

Two variants share this module:

* ``candidate_rerank`` (:class:`CandidateRerankModel`, the default): the design of the well-known
  public "candidate rerank" notebook, with several matrices and one list per event type;
* ``legacy`` (:class:`CovisitationModel`): one matrix and one list shared by clicks, carts and
  orders.  It is kept unchanged so that the gain of the newer design is measured in the same code.

Legacy fit
    Two items are co-visited when they occur in the same session within ``time_window_ms`` of each
    other.  Only the last ``max_events_per_session`` events of a session form pairs (long sessions
    would otherwise dominate both cost and weights).  A pair ``aid -> neighbour`` found in a session
    weighs ``type_weight[type of the neighbour event] * time_weight(ts of the neighbour event)``, where
    the time weight grows linearly from ``time_weight_min`` at the first timestamp of the fitted
    events to ``time_weight_max`` at the last (later evidence matters more).  Each pair counts once
    per session, with the largest weight it reached there; the weights are then summed over
    sessions (in fixed point, :mod:`gnn_recsys.fixed_point`: the same total in any order, so chunks,
    partitions and Spark agree to the last bit, as do the recommend scores below) and every aid keeps
    its ``top_neighbours`` heaviest neighbours (ties: smaller aid).

Legacy recommend
    Three tiers, concatenated and deduplicated in this order, cut at ``k``:

    1. the session's own items, scored by ``sum over their events of recency * history_type_weight``
       (recency halves every ``history_half_life`` events back from the last event, so repeats and
       carts/orders push an item up);
    2. neighbours of the session's ``max_history_items`` most recent distinct items, scored by
       ``sum over those items of recency(item's last event) * co-visitation weight``;
    3. the most popular items of the fitted events, to fill up to ``k``.

    Nothing is excluded.  ``score`` in the output is the score within the row's tier (tiers have
    different units); ``rank`` is the authoritative order.

Candidate-rerank fit (see :class:`MatrixConfig`)
    Each named matrix takes the last ``max_events_per_session`` events of each session among the
    event types it is built from, pairs every two events of different items within its
    ``window_ms``, and weighs a pair per session either by time (once per session, the linear time
    weight of its latest neighbour event, as in the legacy fit) or by type (the sum of
    ``type_weights`` over the distinct event types the neighbour had in those pairs: a neighbour
    that was clicked and carted counts click + cart).  Weights are summed over sessions and every
    aid keeps its ``top_neighbours`` heaviest neighbours.  Matrices built from the same event types
    share one self-join per chunk.  Default set: ``clicks`` (time-weighted), ``carts_orders``
    (type-weighted), ``buy2buy`` (carts and orders only, 14-day window, one per session).

Candidate-rerank recommend (see :class:`ListConfig`), one list per event type
    1. history: the session's items scored by ``sum over their events of type weight * recency``,
       recency rising from ``2**start - 1`` at the first event to 1 at the last
       (``history_recency_start``);  in sessions with at least ``history_min_items`` distinct
       items, ``history_bonus`` matrices add ``bonus * appearances`` to this score and their
       neighbours compete with the history in this tier (the list then mostly re-ranks the history);
    2. neighbours: each matrix of ``neighbours`` is looked up for the session's distinct items of
       the matrix's event types; a neighbour scores ``factor`` per appearance in those top lists
       (``neighbour_score: count``) or ``factor * weight / heaviest weight of that list``
       (``weight``), each appearance scaled by the recency of the source item's last event when
       ``neighbour_recency`` is on (the notebooks count every source alike: ``false``);
    3. fillers: the most frequent items of the list's ``filler`` type among the filler events (the
       test period's sessions in the pipeline), then the most frequent items of any type.

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
    and ~8 for the 217M-event train file); the candidate-rerank fit counts a joined row once per
    matrix that shares the join, as each keeps its own pair table.  Recommendation is chunked by
    ``sessions_per_recommend_chunk`` sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from gnn_recsys.baselines.popularity import UNIFORM_TYPE_WEIGHTS, PopularityModel, type_weight_expr
from gnn_recsys.data.schema import CART, CLICK, EVENT_TYPE_CODES, EVENT_TYPES, ORDER, event_type_code
from gnn_recsys.data.split import as_event_table, positions_in_session, session_runs
from gnn_recsys.export.candidates import CANDIDATE_SCHEMA, TYPED_CANDIDATE_SCHEMA
from gnn_recsys.fixed_point import WEIGHT_SCALE, exact_sum, fixed_point

logger = logging.getLogger(__name__)

NEIGHBOUR_SCHEMA: pl.Schema = pl.Schema({"aid": pl.Int32, "neighbour": pl.Int32, "weight": pl.Float32})
_MERGE_EVERY = 4  # partial pair tables merged after this many chunks
# Summed pair weights between the steps of a fit: ``weight`` in units of ``1 / WEIGHT_SCALE`` (exact sums)
_PAIR_SUM_SCHEMA = {"aid": pl.Int32, "neighbour": pl.Int32, "weight": pl.Int64}


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


def neighbour_long_table(neighbours: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Named neighbour tables (``NEIGHBOUR_SCHEMA``) as one table ``matrix, aid, neighbour, weight``."""
    parts = [
        table.select(pl.lit(name).alias("matrix"), *NEIGHBOUR_SCHEMA.names())
        for name, table in neighbours.items()
    ]
    if not parts:
        return pl.DataFrame(schema={"matrix": pl.String, **dict(NEIGHBOUR_SCHEMA)})
    return pl.concat(parts)


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
            pl.col("aid").cast(pl.Int32), pl.col("neighbour").cast(pl.Int32), _weight_from_fixed_point()
        )
        logger.info(
            "co-visitation: %d neighbour rows for %d aids", neighbours.height, neighbours["aid"].n_unique()
        )
        return cls(neighbours, popularity, config)

    def neighbour_table(self) -> pl.DataFrame:
        """The one matrix as ``matrix, aid, neighbour, weight`` (matrix ``covisitation``), the long
        table :meth:`CandidateRerankModel.neighbour_table` writes, for ranking features."""
        return neighbour_long_table({"covisitation": self.neighbours})

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
                exact_sum(pl.col("recency") * type_weight_expr("type", config.history_type_weights)).alias(
                    "score"
                ),
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
            .agg(exact_sum(pl.col("recency") * pl.col("weight")).alias("score"))
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
    """Summed pair weights ``aid, neighbour, weight`` (fixed point) for aids with ``aid % n_parts == part``."""
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
            .agg(fixed_point(pl.col("weight"), WEIGHT_SCALE).sum())
        )
        partial.append(pairs.collect())
        if len(partial) >= _MERGE_EVERY:
            partial = [_merge(partial)]
    if not partial:
        return pl.DataFrame(schema=_PAIR_SUM_SCHEMA)
    return _merge(partial)


def _merge(partial: list[pl.DataFrame]) -> pl.DataFrame:
    if len(partial) == 1:
        return partial[0]
    return pl.concat(partial).group_by(["aid", "neighbour"]).agg(pl.col("weight").sum())


def _weight_from_fixed_point() -> pl.Expr:
    return (pl.col("weight").cast(pl.Float64) / WEIGHT_SCALE).cast(pl.Float32)


def _top_neighbours(pairs: pl.DataFrame, top: int) -> pl.DataFrame:
    return (
        pairs.sort(["aid", "weight", "neighbour"], descending=[False, True, False])
        .group_by("aid", maintain_order=True)
        .head(top)
    )


# ---------------------------------------------------------------------------- candidate rerank variant

ALL_TYPES: tuple[int, ...] = (CLICK, CART, ORDER)
_WEIGHTINGS = ("time", "type")
_NEIGHBOUR_SCORES = ("count", "weight")


def _type_code(value: int | str, where: str) -> int:
    """A type code from a code or an OTTO type name, or ``ValueError`` naming ``where``."""
    if isinstance(value, str):
        try:
            return event_type_code(value)
        except KeyError as error:
            raise ValueError(f"{where}: {error.args[0]}") from None
    if isinstance(value, bool) or value not in ALL_TYPES:
        raise ValueError(f"{where}: event type {value!r} is not one of {dict(EVENT_TYPE_CODES)}")
    return int(value)


def _type_map(weights: Mapping[int | str, float], where: str) -> dict[int, float]:
    return {_type_code(key, where): float(value) for key, value in weights.items()}


@dataclass(frozen=True)
class MatrixConfig:
    """One co-visitation matrix of :class:`CandidateRerankModel` (module docstring: "Candidate-rerank fit")."""

    types: tuple[int, ...] = ALL_TYPES  # events that form pairs; also its source items at recommend time
    window_ms: int = 24 * 60 * 60 * 1000
    weighting: str = "time"  # time: once per session, time-weighted; type: summed type weights
    time_weight_min: float = 1.0
    time_weight_max: float = 4.0
    type_weights: Mapping[int, float] = field(default_factory=_default_type_weights)
    top_neighbours: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "types", tuple(sorted({_type_code(t, "MatrixConfig.types") for t in self.types}))
        )
        object.__setattr__(self, "type_weights", _type_map(self.type_weights, "MatrixConfig.type_weights"))
        if not self.types:
            raise ValueError("MatrixConfig.types must name at least one event type")
        if self.weighting not in _WEIGHTINGS:
            raise ValueError(f"MatrixConfig.weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}")
        if self.window_ms <= 0 or self.top_neighbours <= 0:
            raise ValueError(
                f"MatrixConfig: window_ms and top_neighbours must be > 0, got {self.window_ms}, {self.top_neighbours}"
            )
        if self.time_weight_min > self.time_weight_max:
            raise ValueError(
                f"MatrixConfig: time_weight_min {self.time_weight_min} > time_weight_max {self.time_weight_max}"
            )
        if self.weighting == "type":
            missing = sorted(set(self.types) - set(self.type_weights))
            if missing:
                raise ValueError(f"MatrixConfig.type_weights lack event type code(s) {missing}")
            # types the matrix is not built from never occur in its pairs
            object.__setattr__(self, "type_weights", dict.fromkeys(ALL_TYPES, 0.0) | dict(self.type_weights))


@dataclass(frozen=True)
class ListConfig:
    """How one event type's list is built (module docstring: "Candidate-rerank recommend")."""

    neighbours: Mapping[str, float]  # matrix name -> score factor per appearance
    filler: int  # event type whose test-period popularity fills the list
    history_bonus: Mapping[str, float] = field(default_factory=dict)  # long sessions only
    history_recency_start: float = 0.1
    neighbour_score: str = "count"  # count | weight (see the module docstring)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filler", _type_code(self.filler, "ListConfig.filler"))
        if self.neighbour_score not in _NEIGHBOUR_SCORES:
            raise ValueError(
                f"ListConfig.neighbour_score must be one of {_NEIGHBOUR_SCORES}, got {self.neighbour_score!r}"
            )
        if not 0.0 <= self.history_recency_start <= 1.0:
            raise ValueError(
                f"ListConfig.history_recency_start must be in [0, 1], got {self.history_recency_start}"
            )


def _default_matrices() -> dict[str, MatrixConfig]:
    return {
        "clicks": MatrixConfig(weighting="time"),
        "carts_orders": MatrixConfig(weighting="type", top_neighbours=15),
        "buy2buy": MatrixConfig(
            types=(CART, ORDER), window_ms=14 * 24 * 60 * 60 * 1000, time_weight_min=1.0,
            time_weight_max=1.0, top_neighbours=15,
        ),
    }  # fmt: skip


def _default_lists() -> dict[int, ListConfig]:
    buys = {"carts_orders": 1.0, "buy2buy": 1.0}
    return {
        CLICK: ListConfig({"clicks": 1.0}, filler=CLICK, history_recency_start=0.1, neighbour_score="weight"),
        CART: ListConfig(
            buys | {"clicks": 1.0}, filler=CART, history_bonus={"buy2buy": 0.1}, history_recency_start=0.5
        ),
        ORDER: ListConfig(buys, filler=ORDER, history_bonus={"buy2buy": 0.1}, history_recency_start=0.5),
    }


@dataclass(frozen=True)
class CandidateRerankConfig:
    """Parameters of :class:`CandidateRerankModel`; ``from_params`` reads the YAML shape."""

    matrices: Mapping[str, MatrixConfig] = field(default_factory=_default_matrices)
    lists: Mapping[int, ListConfig] = field(default_factory=_default_lists)
    max_events_per_session: int = 30
    history_type_weights: Mapping[int, float] = field(default_factory=_default_type_weights)
    history_min_items: int = 20
    neighbour_recency: bool = True
    max_pairs_per_chunk: int = 20_000_000
    aid_partitions: int | None = None
    max_joined_rows_per_partition: int = 400_000_000
    sessions_per_recommend_chunk: int = 200_000
    name: str = "covisitation"

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "lists", {_type_code(t, "CandidateRerankConfig.lists"): v for t, v in self.lists.items()}
        )
        object.__setattr__(
            self,
            "history_type_weights",
            _type_map(self.history_type_weights, "CandidateRerankConfig.history_type_weights"),
        )
        positive = {
            "max_events_per_session": self.max_events_per_session,
            "history_min_items": self.history_min_items,
            "max_pairs_per_chunk": self.max_pairs_per_chunk,
            "aid_partitions": 1 if self.aid_partitions is None else self.aid_partitions,
            "max_joined_rows_per_partition": self.max_joined_rows_per_partition,
            "sessions_per_recommend_chunk": self.sessions_per_recommend_chunk,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ValueError(f"CandidateRerankConfig.{key} must be > 0, got {value}")
        if not self.lists:
            raise ValueError("CandidateRerankConfig.lists must define at least one event type's list")
        for code, spec in self.lists.items():
            for key in ("neighbours", "history_bonus"):
                unknown = sorted(set(getattr(spec, key)) - set(self.matrices))
                if unknown:
                    raise ValueError(
                        f"CandidateRerankConfig.lists[{EVENT_TYPES[code]}].{key}: unknown matrix name(s) "
                        f"{unknown}; defined: {sorted(self.matrices)}"
                    )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CandidateRerankConfig:
        """Build from the YAML shape (event types by name, matrices and lists as nested mappings)."""
        options = dict(params)
        try:
            if "matrices" in options:
                options["matrices"] = {
                    name: MatrixConfig(**dict(spec)) for name, spec in dict(options["matrices"]).items()
                }
            if "lists" in options:
                options["lists"] = {
                    _type_code(name, "lists"): ListConfig(**dict(spec))
                    for name, spec in dict(options["lists"]).items()
                }
            return cls(**options)
        except TypeError as error:  # unknown or missing keys
            raise ValueError(f"covisitation candidate_rerank parameters: {error}") from None


@dataclass
class CandidateRerankModel:
    """Several co-visitation matrices, one candidate list per event type."""

    neighbours: dict[str, pl.DataFrame]  # matrix name -> NEIGHBOUR_SCHEMA, by aid then weight descending
    fillers: dict[int, pl.DataFrame]  # type code (and -1: any type) -> aid, score; most frequent first
    config: CandidateRerankConfig

    @classmethod
    def fit(
        cls,
        events: pl.DataFrame,
        config: CandidateRerankConfig | None = None,
        filler_events: pl.DataFrame | None = None,
    ) -> CandidateRerankModel:
        """Fit every matrix on ``events``; fillers count ``filler_events`` (default: ``events``)."""
        config = CandidateRerankConfig() if config is None else config
        frame = as_event_table(events)
        fill_from = frame if filler_events is None else as_event_table(filler_events, name="filler_events")
        return cls(_fit_matrices(frame, config), _fillers(fill_from), config)

    def neighbour_table(self) -> pl.DataFrame:
        """Every matrix as one long table ``matrix, aid, neighbour, weight`` (e.g. for ranking features)."""
        return neighbour_long_table(self.neighbours)

    def recommend(self, session_events: pl.DataFrame, k: int = 20) -> pl.DataFrame:
        """Typed candidates: the top-``k`` list of every configured type for every session given."""
        if k < 1:
            raise ValueError(f"recommend: k must be >= 1, got {k}")
        frame = as_event_table(session_events, name="session_events")
        starts, lengths = session_runs(frame["session"])
        scored = self._scored_neighbours()
        fillers = {code: self._filler_list(spec.filler, 2 * k) for code, spec in self.config.lists.items()}
        step = self.config.sessions_per_recommend_chunk
        out = []
        for first in range(0, len(starts), step):
            last = min(first + step, len(starts))
            offset = int(starts[first])
            count = int(starts[last - 1] + lengths[last - 1]) - offset
            out.append(
                self._recommend_chunk(frame.slice(offset, count), lengths[first:last], scored, fillers, k)
            )
        if not out:
            return pl.DataFrame(schema=TYPED_CANDIDATE_SCHEMA)
        return pl.concat(out)

    def _scored_neighbours(self) -> dict[str, pl.DataFrame]:
        """``aid, neighbour, share``: the neighbour's weight / the heaviest weight of the aid's list.

        ``neighbour_score: weight`` sums shares; ``count`` counts appearances and breaks ties by
        shares, so a neighbour near the top of a list goes first, as in the notebooks' ordered counters.
        """
        share = pl.col("weight").cast(pl.Float64) / pl.col("weight").max().over("aid").cast(pl.Float64)
        return {
            name: table.select("aid", "neighbour", share.alias("share"))
            for name, table in self.neighbours.items()
        }

    def _recommend_chunk(
        self,
        events: pl.DataFrame,
        lengths: np.ndarray,
        scored: dict[str, pl.DataFrame],
        fillers: dict[int, pl.DataFrame],
        k: int,
    ) -> pl.DataFrame:
        config = self.config
        position = positions_in_session(lengths)
        fraction = position / np.maximum(np.repeat(lengths, lengths) - 1, 1)
        starts = sorted({spec.history_recency_start for spec in config.lists.values()})
        type_weight = type_weight_expr("type", config.history_type_weights).cast(pl.Float64)
        events = events.with_columns(pl.Series("fraction", fraction))
        history = events.group_by(["session", "aid"]).agg(
            [
                exact_sum(_recency(s, pl.col("fraction")) * type_weight).alias(f"h{i}")
                for i, s in enumerate(starts)
            ]
        )
        long_sessions = (
            history.group_by("session")
            .agg((pl.len() >= config.history_min_items).alias("long"))
            .filter(pl.col("long"))
            .select("session", "long")
        )
        appearances: dict[tuple[str, float], pl.DataFrame] = {}
        for spec in config.lists.values():
            start = spec.history_recency_start if config.neighbour_recency else 1.0
            for name in {*spec.neighbours, *spec.history_bonus}:
                if (name, start) not in appearances:
                    appearances[name, start] = self._appearances(events, scored[name], name, start)
        sessions = events.select("session").unique()
        lists = []
        for code, spec in config.lists.items():
            start = spec.history_recency_start if config.neighbour_recency else 1.0
            ranked = self._one_list(
                history.select("session", "aid", pl.col(f"h{starts.index(spec.history_recency_start)}")),
                long_sessions=long_sessions,
                appearances={name: table for (name, s), table in appearances.items() if s == start},
                sessions=sessions,
                spec=spec,
                filler=fillers[code],
                k=k,
            )
            lists.append(ranked.with_columns(pl.lit(code, pl.Int8).alias("type")))
        return pl.concat(lists).select(list(TYPED_CANDIDATE_SCHEMA)).sort(["session", "type", "rank"])

    def _appearances(
        self, events: pl.DataFrame, scored: pl.DataFrame, name: str, start: float
    ) -> pl.DataFrame:
        """``session, aid, count, share`` summed over the session's source items of one matrix.

        Each distinct source item counts once, scaled by the recency of its last event when
        ``neighbour_recency`` is on (``start`` 1.0: every source weighs 1).
        """
        types = self.config.matrices[name].types
        sources = events.filter(pl.col("type").is_in(types)) if len(types) < len(ALL_TYPES) else events
        return (
            sources.group_by(["session", "aid"])
            .agg(_recency(start, pl.col("fraction").max()).alias("recency"))
            .join(scored, on="aid")
            .group_by(["session", "neighbour"])
            .agg(exact_sum(pl.col("recency")).alias("count"), exact_sum(pl.col("share") * pl.col("recency")))
            .rename({"neighbour": "aid"})
        )

    def _one_list(
        self,
        history: pl.DataFrame,
        *,
        long_sessions: pl.DataFrame,
        appearances: dict[str, pl.DataFrame],
        sessions: pl.DataFrame,
        spec: ListConfig,
        filler: pl.DataFrame,
        k: int,
    ) -> pl.DataFrame:
        """One type's ranked list: history (+ bonus in long sessions), neighbours, fillers."""
        value = pl.col("count") if spec.neighbour_score == "count" else pl.col("share")
        parts = [
            appearances[name].select(
                "session",
                "aid",
                (value * spec.neighbours.get(name, 0.0)).alias("neighbour_score"),
                (pl.col("share") * spec.neighbours.get(name, 0.0)).alias("tiebreak"),
                (value * spec.history_bonus.get(name, 0.0)).alias("bonus"),
            )
            for name in sorted({*spec.neighbours, *spec.history_bonus})
        ]
        related_schema = {"session": pl.Int32, "aid": pl.Int32} | dict.fromkeys(
            ("neighbour_score", "tiebreak", "bonus"), pl.Float64
        )
        if not parts:
            related = pl.DataFrame(schema=related_schema)
        elif len(parts) == 1:  # already one row per (session, aid)
            related = parts[0]
        else:
            related = pl.concat(parts).group_by(["session", "aid"]).agg(exact_sum(pl.all()))
        merged = (
            history.rename({history.columns[2]: "history"})
            .join(related, on=["session", "aid"], how="full", coalesce=True)
            .join(long_sessions, on="session", how="left")
            .with_columns(
                pl.col("long").fill_null(False), pl.col("neighbour_score", "tiebreak", "bonus").fill_null(0.0)
            )
        )
        first_tier = pl.col("history").is_not_null() | (pl.col("long") & (pl.col("bonus") > 0))
        history_score = pl.col("history").fill_null(0.0) + pl.when(pl.col("long")).then(
            pl.col("bonus")
        ).otherwise(0.0)
        ranked = merged.filter(first_tier | (pl.col("neighbour_score") > 0)).select(
            "session",
            "aid",
            pl.when(first_tier).then(0).otherwise(1).cast(pl.Int8).alias("tier"),
            pl.when(first_tier).then(history_score).otherwise(pl.col("neighbour_score")).alias("score"),
            pl.when(first_tier).then(0.0).otherwise(pl.col("tiebreak")).alias("tiebreak"),
        )
        # (session, aid) is unique here (full join), so only the top k per session need sorting
        top = (
            ranked.sort(
                ["session", "tier", "score", "tiebreak", "aid"], descending=[False, False, True, True, False]
            )
            .group_by("session", maintain_order=True)
            .head(k)
            .select(
                "session", pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session").alias("rank"), "aid", "score"
            )
        )  # fmt: skip
        # Fillers, in order, for the sessions with fewer than k: the first ones not already listed.
        short = (
            sessions.join(top.group_by("session").agg(pl.len().cast(pl.Int32).alias("listed")), on="session", how="left")
            .with_columns(pl.col("listed").fill_null(0))
            .filter(pl.col("listed") < k)
            .sort("session")
        )  # fmt: skip
        fill = (
            short.join(filler, how="cross", maintain_order="left_right")
            .join(top.select("session", "aid"), on=["session", "aid"], how="anti", maintain_order="left")
            .with_columns(
                (pl.col("listed") + pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("session")).alias(
                    "rank"
                )
            )
            .filter(pl.col("rank") <= k)
            .select("session", "rank", "aid", "score")
        )
        return (
            pl.concat([top, fill])
            .sort(["session", "rank"])
            .select(
                pl.col("session").cast(pl.Int32),
                pl.col("rank").cast(pl.Int32),
                pl.col("aid").cast(pl.Int32),
                pl.col("score").cast(pl.Float32),
                pl.lit(self.config.name).alias("model"),
            )
        )

    def _filler_list(self, event_type: int, size: int) -> pl.DataFrame:
        """``aid, score``: the most frequent items of ``event_type``, then of any type, ``size`` distinct.

        ``2 k`` of them always leave ``k`` that are not among a session's (at most ``k``) listed items.
        """
        return (
            pl.concat([self.fillers[event_type].head(size), self.fillers[-1].head(size)])
            .unique(subset="aid", keep="first", maintain_order=True)
            .head(size)
            .select("aid", pl.col("score").cast(pl.Float64))
        )


def _recency(start: float, fraction: pl.Expr) -> pl.Expr:
    """``2**(start + (1 - start) * fraction) - 1``: from ``2**start - 1`` (first event) to 1 (last)."""
    return 2.0 ** (start + (1.0 - start) * fraction) - 1.0


def _fillers(events: pl.DataFrame) -> dict[int, pl.DataFrame]:
    """Event counts per aid of each type (key: type code) and of all types (key ``-1``), best first."""

    def count(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.group_by("aid")
            .agg(pl.len().cast(pl.Float32).alias("score"))
            .sort(["score", "aid"], descending=[True, False])
            .select(pl.col("aid").cast(pl.Int32), "score")
        )

    fillers = {code: count(events.filter(pl.col("type") == code)) for code in ALL_TYPES}
    fillers[-1] = count(events)
    return fillers


def _fit_matrices(frame: pl.DataFrame, config: CandidateRerankConfig) -> dict[str, pl.DataFrame]:
    """Top neighbours of every matrix; matrices built from the same event types share their joins."""
    empty = pl.DataFrame(schema=NEIGHBOUR_SCHEMA)
    if frame.height == 0:
        return dict.fromkeys(config.matrices, empty)
    t_min, t_max = int(frame["ts"].min()), int(frame["ts"].max())  # type: ignore[arg-type]
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, spec in config.matrices.items():
        groups.setdefault(spec.types, []).append(name)
    result: dict[str, pl.DataFrame] = {}
    for types, names in groups.items():
        sub = frame if len(types) == len(ALL_TYPES) else frame.filter(pl.col("type").is_in(types))
        recent, kept_lengths = _last_events(sub, config.max_events_per_session)
        if kept_lengths.size == 0:  # e.g. buy2buy on click-only data
            logger.info("co-visitation %s: no session with 2 events of types %s", "/".join(names), types)
            result |= dict.fromkeys(names, empty)
            continue
        ranges = list(_chunk_row_ranges(kept_lengths, config.max_pairs_per_chunk))
        joined_rows = int((kept_lengths.astype(np.int64) ** 2).sum())
        n_parts = config.aid_partitions or max(
            1, -(-joined_rows * len(names) // config.max_joined_rows_per_partition)
        )
        logger.info(
            "co-visitation %s: %d events of %d sessions, %d joined rows, %d chunk(s) x %d aid partition(s)",
            "/".join(names), recent.height, len(kept_lengths), joined_rows, len(ranges), n_parts,
        )  # fmt: skip
        specs = {name: config.matrices[name] for name in names}
        parts: dict[str, list[pl.DataFrame]] = {name: [] for name in names}
        for part in range(n_parts):
            sums = _group_pair_weights(
                recent, ranges, specs, time_span=(t_min, t_max), part=part, n_parts=n_parts
            )
            for name, pairs in sums.items():
                parts[name].append(_top_neighbours(pairs, specs[name].top_neighbours))
        for name in names:
            result[name] = (
                pl.concat(parts[name])
                .sort(["aid", "weight", "neighbour"], descending=[False, True, False])
                .select(
                    pl.col("aid").cast(pl.Int32),
                    pl.col("neighbour").cast(pl.Int32),
                    _weight_from_fixed_point(),
                )
            )
            logger.info("co-visitation %s: %d neighbour rows", name, result[name].height)
    return {name: result[name] for name in config.matrices}


def _last_events(frame: pl.DataFrame, max_events: int) -> tuple[pl.DataFrame, np.ndarray]:
    """The last ``max_events`` events of sessions that keep >= 2, and the kept count per session."""
    if frame.height == 0:
        return frame, np.zeros(0, dtype=np.int64)
    _, lengths = session_runs(frame["session"])
    position = positions_in_session(lengths)
    kept_lengths = np.minimum(lengths, max_events)
    keep = (position >= np.repeat(lengths - max_events, lengths)) & np.repeat(kept_lengths >= 2, lengths)
    return frame.filter(pl.Series(keep)), kept_lengths[kept_lengths >= 2]


def _group_pair_weights(
    recent: pl.DataFrame,
    ranges: list[tuple[int, int]],
    specs: Mapping[str, MatrixConfig],
    *,
    time_span: tuple[int, int],
    part: int,
    n_parts: int,
) -> dict[str, pl.DataFrame]:
    """Summed pair weights ``aid, neighbour, weight`` (fixed point) of each matrix in ``specs`` (one join per chunk)."""
    widest = max(spec.window_ms for spec in specs.values())
    partial: dict[str, list[pl.DataFrame]] = {name: [] for name in specs}
    for offset, count in ranges:
        chunk = recent.slice(offset, count).lazy()
        left = chunk.select("session", "aid", "ts")
        if n_parts > 1:
            left = left.filter(pl.col("aid") % n_parts == part)
        right = chunk.select(
            "session",
            pl.col("aid").alias("neighbour"),
            pl.col("ts").alias("ts_nb"),
            pl.col("type").alias("type_nb"),
        )
        joined = (
            left.join(right, on="session")
            .filter(pl.col("aid") != pl.col("neighbour"))
            .select(
                "session", "aid", "neighbour", "ts_nb", "type_nb", (pl.col("ts") - pl.col("ts_nb")).abs().alias("gap")
            )
            .filter(pl.col("gap") < widest)
        )  # fmt: skip
        # One reduction of the join per window (the neighbour's latest event of each type per session
        # pair), shared by the matrices that use that window: the join is the expensive part.
        for window in sorted({spec.window_ms for spec in specs.values()}):
            typed_pairs = (
                (joined if window == widest else joined.filter(pl.col("gap") < window))
                .group_by(["session", "aid", "neighbour", "type_nb"])
                .agg(pl.col("ts_nb").max())
                .collect()
            )
            for name, spec in specs.items():
                if spec.window_ms == window:
                    partial[name].append(_session_pair_weights(typed_pairs, spec, time_span))
                    if len(partial[name]) >= _MERGE_EVERY:
                        partial[name] = [_merge(partial[name])]
    empty = pl.DataFrame(schema=_PAIR_SUM_SCHEMA)
    return {name: _merge(tables) if tables else empty for name, tables in partial.items()}


def _session_pair_weights(
    typed_pairs: pl.DataFrame, spec: MatrixConfig, time_span: tuple[int, int]
) -> pl.DataFrame:
    """One matrix's pair weights summed over sessions, from ``session, aid, neighbour, type_nb, ts_nb``
    rows (one per neighbour event type of a session's pair, with its latest timestamp)."""
    if spec.weighting == "type":
        per_session = typed_pairs.lazy().select(
            "aid",
            "neighbour",
            type_weight_expr("type_nb", spec.type_weights).cast(pl.Float64).alias("weight"),
        )
    else:
        t_min, t_max = time_span
        slope = (spec.time_weight_max - spec.time_weight_min) / max(t_max - t_min, 1)
        per_session = (
            typed_pairs.lazy()
            .group_by(["session", "aid", "neighbour"])
            .agg(pl.col("ts_nb").max())
            .select(
                "aid", "neighbour",
                (spec.time_weight_min + (pl.col("ts_nb") - t_min).cast(pl.Float64) * slope).alias("weight"),
            )
        )  # fmt: skip
    return (
        per_session.group_by(["aid", "neighbour"])
        .agg(fixed_point(pl.col("weight"), WEIGHT_SCALE).sum())
        .collect()
    )
