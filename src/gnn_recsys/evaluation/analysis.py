"""Breakdowns of one model's local-validation results: recall@K curves, recall by session length and
how popular the recommended items are.

Every function reads candidate lists exactly as :func:`gnn_recsys.evaluation.metrics.evaluate` does
(each aid once at its best rank, cut by position), so recall@20 here equals the headline figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES
from gnn_recsys.evaluation.metrics import _candidates_for_scoring, label_positions

#: Upper-inclusive bounds of the session-length buckets (events seen before the cut); the last is open.
LENGTH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


def recall_at_k_curve(candidates: pl.DataFrame, labels: pl.DataFrame, max_k: int = 50) -> pl.DataFrame:
    """``k, type, recall`` for k = 1..``max_k`` and every event type that has labels.

    recall@k = hits in the first k positions / sum over sessions of min(k, labels), the official
    definition at every cut-off; one pass over the label positions serves all k.
    """
    if max_k < 1:
        raise ValueError(f"recall_at_k_curve: max_k must be >= 1, got {max_k}")
    positions = label_positions(candidates, labels, max_rank=max_k)
    ks = np.arange(1, max_k + 1)
    rows = []
    for name, code in EVENT_TYPE_CODES.items():
        of_type = positions.filter(pl.col("type") == code)
        if of_type.is_empty():
            continue
        position = of_type["position"].to_numpy()
        hits = np.cumsum(np.bincount(position[position > 0], minlength=max_k + 1)[1:])
        # sum over sessions of min(k, n): from the histogram of n capped at max_k
        n_true = np.minimum(of_type.group_by("session").len()["len"].to_numpy(), max_k)
        count_by_n = np.bincount(n_true, minlength=max_k + 1)
        denominator = np.minimum.outer(ks, np.arange(max_k + 1)) @ count_by_n
        rows.append(pl.DataFrame({"k": ks, "type": name, "recall": hits / denominator}))
    return (
        pl.concat(rows)
        if rows
        else pl.DataFrame(schema={"k": pl.Int64, "type": pl.String, "recall": pl.Float64})
    )


def _bucket_labels(bounds: Sequence[int]) -> list[str]:
    labels, low = [], 1
    for high in bounds:
        labels.append(str(high) if high == low else f"{low}-{high}")
        low = high + 1
    return [*labels, f"{low}+"]


def recall_by_session_length(
    candidates: pl.DataFrame,
    labels: pl.DataFrame,
    test_inputs: pl.DataFrame,
    k: int = 20,
    bounds: Sequence[int] = LENGTH_BUCKETS,
) -> pl.DataFrame:
    """``length, type, sessions, recall``: recall@k of the sessions whose input has that many events.

    Buckets follow ``bounds`` (``1, 2, 3-4, 5-8, ...``, the last open-ended) and are listed in that
    order; a bucket or type without labelled sessions is left out.
    """
    names = _bucket_labels(bounds)
    lengths = test_inputs.group_by("session").len().select(pl.col("session").cast(pl.Int32), pl.col("len"))
    positions = label_positions(candidates, labels, max_rank=k).join(lengths, on="session", how="left")
    missing = positions["len"].is_null()
    if missing.any():
        session = positions["session"][int(missing.arg_true()[0])]
        raise ValueError(f"recall_by_session_length: labelled session {session} has no input events")
    bucket = np.searchsorted(np.asarray(bounds), positions["len"].to_numpy(), side="left")
    per_session = (
        positions.with_columns(
            pl.Series("bucket", bucket), ((pl.col("position") >= 1) & (pl.col("position") <= k)).alias("hit")
        )
        .group_by("bucket", "type", "session")
        .agg(pl.col("hit").sum().alias("hits"), pl.len().clip(upper_bound=k).alias("denominator"))
        .group_by("bucket", "type")
        .agg(pl.len().alias("sessions"), pl.col("hits").sum(), pl.col("denominator").sum())
        .sort("bucket", "type")
    )
    type_names = {code: name for name, code in EVENT_TYPE_CODES.items()}
    return per_session.select(
        pl.col("bucket").map_elements(names.__getitem__, return_dtype=pl.String).alias("length"),
        pl.col("type").replace_strict(type_names, return_dtype=pl.String),
        pl.col("sessions").cast(pl.Int64),
        (pl.col("hits") / pl.col("denominator")).alias("recall"),
    )


def popularity_deciles(train_events: pl.DataFrame) -> pl.DataFrame:
    """``aid, decile``: items ranked by their number of train events (ties: smaller aid first), cut
    into ten groups of equal item count; decile 1 holds the 10% most popular items."""
    counts = train_events.group_by("aid").len().sort(["len", "aid"], descending=[True, False])
    n = counts.height
    return counts.select(
        pl.col("aid").cast(pl.Int32), (pl.int_range(0, n) * 10 // max(n, 1) + 1).cast(pl.Int8).alias("decile")
    )


def recommendation_popularity(candidates: pl.DataFrame, deciles: pl.DataFrame, k: int = 20) -> pl.DataFrame:
    """``decile, share``: the share of the first ``k`` slots of every list (each type's list for typed
    candidates) that holds items of each popularity decile; ``unseen`` = items without train events.
    Rows for the ten deciles and ``unseen``, also when their share is 0."""
    if "type" in candidates.columns:
        keys = [_candidates_for_scoring(candidates.filter(pl.col("type") == code), k)[0]
                for code in EVENT_TYPE_CODES.values()]  # fmt: skip
        key = np.concatenate(keys)
    else:
        key = _candidates_for_scoring(candidates, k)[0]
    slots = pl.DataFrame({"aid": (key & 0xFFFFFFFF).astype(np.int32)})
    decile = slots.join(deciles, on="aid", how="left")["decile"]
    labels = [str(d) for d in range(1, 11)]
    counts = decile.cast(pl.String).fill_null("unseen").value_counts()
    by_label = dict(zip(counts[counts.columns[0]].to_list(), counts["count"].to_list(), strict=True))
    total = max(len(key), 1)
    return pl.DataFrame(
        {
            "decile": [*labels, "unseen"],
            "share": [by_label.get(label, 0) / total for label in [*labels, "unseen"]],
        }
    )
