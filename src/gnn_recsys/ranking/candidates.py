"""Candidate lists per (session, type) for the ranker: the union of every source's top list and the
session's own items.

Sources are candidate tables of docs/architecture.md ("Candidates"), typed or untyped; an untyped
table's one list serves all three types.  Nothing here knows which model produced a list, so a
better co-visitation (one list per type) drops in without changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES, EVENT_TYPES
from gnn_recsys.export.candidates import TYPED_CANDIDATE_SCHEMA, as_candidates

#: Key of a candidate row.
KEY = ["session", "type", "aid"]
TYPE_CODES = tuple(EVENT_TYPE_CODES.values())


@dataclass(frozen=True)
class CandidateConfig:
    """How many items each source contributes per (session, type), and the rank-fusion constants.

    ``source_k`` maps a source name to the length of its list kept as candidates (features still read
    the whole list); ``history_k`` is the number of the session's most recent distinct items added.
    ``fusion_weights`` / ``fusion_offset`` define the untrained reciprocal-rank fusion
    ``sum over sources of weight / (offset + rank)``.
    """

    source_k: Mapping[str, int] = field(default_factory=lambda: {"covisitation": 50, "dgsr": 50})
    history_k: int = 30
    fusion_weights: Mapping[str, float] = field(default_factory=lambda: {"covisitation": 2.0, "dgsr": 1.0})
    fusion_offset: float = 10.0
    recent_days: float = 1.0

    def __post_init__(self) -> None:
        bad = {name: k for name, k in self.source_k.items() if k < 1}
        if bad or self.history_k < 0 or self.fusion_offset <= 0 or self.recent_days <= 0:
            raise ValueError(
                f"CandidateConfig: need source_k >= 1 (got {dict(self.source_k)}), history_k >= 0 "
                f"(got {self.history_k}), fusion_offset > 0 (got {self.fusion_offset}), "
                f"recent_days > 0 (got {self.recent_days})"
            )

    @classmethod
    def from_dict(cls, params: Mapping) -> CandidateConfig:
        known = {"source_k", "history_k", "fusion_weights", "fusion_offset", "recent_days"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"ranking.candidates: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**params)


def source_lists(candidates: pl.DataFrame, name: str) -> tuple[pl.DataFrame, bool]:
    """A source's lists as ``session, type, aid, rank, score`` (one row per key, its best rank).

    Returns the table and whether the source was typed; an untyped list is repeated for each type.
    """
    frame = as_candidates(candidates, name=name)
    typed = "type" in frame.columns
    if not typed:
        types = pl.DataFrame({"type": list(TYPE_CODES)}, schema={"type": pl.Int8})
        frame = frame.join(types, how="cross")
    return (
        frame.select("session", "type", "aid", "rank", "score")
        .sort([*KEY, "rank"])
        .unique(subset=KEY, keep="first", maintain_order=True),
        typed,
    )


def history_items(session_events: pl.DataFrame) -> pl.DataFrame:
    """Per (session, aid) of the observed events: counts by type, last position and time.

    ``position`` is the event's index in its session (file order); ``events_since_last`` counts the
    session's events after the item's last occurrence.
    """
    events = session_events.select("session", "aid", "ts", "type").with_columns(
        pl.int_range(pl.len()).over("session").alias("position")
    )
    per_item = events.group_by(["session", "aid"]).agg(
        *[
            (pl.col("type") == code).sum().cast(pl.Float32).alias(f"item_{name}")
            for name, code in EVENT_TYPE_CODES.items()
        ],
        pl.col("position").max().alias("last_position"),
        pl.col("ts").max().alias("last_ts"),
    )
    per_session = events.group_by("session").agg(
        pl.len().alias("session_length"),
        pl.col("ts").min().alias("first_ts"),
        pl.col("ts").max().alias("session_last_ts"),
        pl.col("aid").n_unique().alias("session_items"),
    )
    return per_item.join(per_session, on="session").with_columns(
        (pl.col("session_length") - 1 - pl.col("last_position")).cast(pl.Float32).alias("events_since_last"),
        ((pl.col("session_last_ts") - pl.col("last_ts")) / 1000.0)
        .cast(pl.Float32)
        .alias("seconds_since_last"),
    )


def most_recent_items(history: pl.DataFrame, k: int) -> pl.DataFrame:
    """Each session's ``k`` latest distinct items of :func:`history_items`'s table, latest first."""
    return (
        history.sort(["session", "last_position"], descending=[False, True])
        .group_by("session", maintain_order=True)
        .head(k)
    )


def candidate_keys(
    sources: Mapping[str, pl.DataFrame], history: pl.DataFrame, config: CandidateConfig
) -> pl.DataFrame:
    """Unique ``session, type, aid`` keys: each source's top ``source_k`` plus the recent history.

    ``sources`` are the normalised lists of :func:`source_lists`; ``history`` the table of
    :func:`history_items` (its sessions get history candidates for every type).
    """
    parts = []
    for name, lists in sources.items():
        k = config.source_k.get(name)
        if k is None:
            raise ValueError(f"ranking.candidates.source_k has no entry for source {name!r}")
        parts.append(lists.filter(pl.col("rank") <= k).select(KEY))
    if config.history_k:
        recent = most_recent_items(history, config.history_k).select("session", "aid")
        types = pl.DataFrame({"type": list(TYPE_CODES)}, schema={"type": pl.Int8})
        parts.append(recent.join(types, how="cross").select(KEY))
    if not parts:
        return pl.DataFrame(schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32})
    return (
        pl.concat(
            [
                p.select(
                    pl.col("session").cast(pl.Int32),
                    pl.col("type").cast(pl.Int8),
                    pl.col("aid").cast(pl.Int32),
                )
                for p in parts
            ]
        )
        .unique()
        .sort(KEY)
    )


def ranked_candidates(scored: pl.DataFrame, score: str, model: str, k: int | None = None) -> pl.DataFrame:
    """Typed candidates table from scored keys: best ``score`` first per (session, type), ties by aid.

    ``k`` keeps the top ``k`` of each list (all when ``None``).
    """
    ordered = scored.select(
        *KEY, pl.col(score).cast(pl.Float64).fill_null(float("-inf")).alias("score")
    ).sort(["session", "type", "score", "aid"], descending=[False, False, True, False])
    ordered = ordered.with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(["session", "type"]).alias("rank")
    )
    if k is not None:
        ordered = ordered.filter(pl.col("rank") <= k)
    return ordered.with_columns(pl.col("score").cast(pl.Float32), pl.lit(model).alias("model")).select(
        list(TYPED_CANDIDATE_SCHEMA)
    )


def attach_labels(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """``features`` with ``target`` (1: the key is a label) and ``n_true`` (labels of the session-type).

    ``n_true`` counts every label, also those missing from the candidates, so recall computed on this
    table has the official denominator ``min(20, n_true)``.
    """
    truth = labels.select(
        pl.col("session").cast(pl.Int32), pl.col("type").cast(pl.Int8), pl.col("aid").cast(pl.Int32)
    ).unique()
    n_true = truth.group_by(["session", "type"]).agg(pl.len().cast(pl.Int32).alias("n_true"))
    return (
        features.join(
            truth.with_columns(pl.lit(1, pl.Int8).alias("target")), on=KEY, how="left", maintain_order="left"
        )
        .join(n_true, on=["session", "type"], how="left", maintain_order="left")
        .with_columns(pl.col("target").fill_null(0), pl.col("n_true").fill_null(0))
    )


def candidate_ceiling(labelled: pl.DataFrame, model: str = "candidate_ceiling") -> pl.DataFrame:
    """The best ranking these candidates allow: every label among them first (an oracle, for reports)."""
    return ranked_candidates(
        labelled.with_columns(pl.col("target").cast(pl.Float64).alias("_oracle")), "_oracle", model
    )


def type_name(code: int) -> str:
    return EVENT_TYPES[code]
