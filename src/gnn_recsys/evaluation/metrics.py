"""Official OTTO score and next-click ranking metrics, computed with polars joins.

The OTTO score (otto-de/recsys-dataset ``src/evaluate.py``) is, per event type,

    recall@20 = sum over sessions of hits / sum over sessions of min(20, number of true aids)

with ``hits`` = 1 if the next click is in the top 20 (clicks) or ``|top20 ∩ true set|`` (carts,
orders), and the total ``0.10 * clicks + 0.30 * carts + 0.60 * orders``.

Choices made where the official script is silent or would fail:

* a type with no labels at all would divide by zero there; here its recall is ``None`` and the total
  is taken over the types that have labels, with their weights renormalised to sum to 1;
* labelled sessions without candidates count as 0 hits (as in the official script);
* a session's list is read the way the submission export writes it (``export.candidates``): each
  aid once, at its best rank, ordered by rank with ties broken by the smaller aid, then cut at the
  first ``k`` *positions* (the official ``prediction[:k]``). Ranks only order the list; tied or
  gapped ranks (30 candidates all at rank 1) can therefore never give more than ``k`` hits, recall
  stays <= 1, and the local score equals the score of the exported submission file;
* the next-click ranking metrics (HR/NDCG/MRR@K) use the position of the true aid in that list and
  are averaged over the sessions that have a click label.

Candidates come in two shapes (docs/architecture.md, "Candidates"): without a ``type`` column one
ranked list per session serves the three event types; with it, the labels of type ``t`` are looked up
only in the rows of type ``t`` (a session without a list for ``t`` scores 0 hits there), and the
next-click metrics use the clicks list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from gnn_recsys.data.schema import CLICK, EVENT_TYPE_CODES, check_type_codes

OTTO_WEIGHTS: dict[str, float] = {"clicks": 0.10, "carts": 0.30, "orders": 0.60}

MetricValue = float | int | None


def _pair_key(session: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """One int64 per (session, aid) pair: sorting and searching one column beats multi-column hashing."""
    return (session.astype(np.int64) << 32) | (aid.astype(np.int64) & 0xFFFFFFFF)


def _check_columns(frame: pl.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; got columns {frame.columns}")
    for column in columns:
        if frame[column].null_count():
            row = int(frame[column].is_null().arg_true()[0])
            raise ValueError(f"{name}: row {row}, field {column!r}: null value")


def _check_candidates(candidates: pl.DataFrame) -> None:
    """Columns, nulls, one model and 1-based ranks; shared by the typed and untyped paths."""
    _check_columns(candidates, "candidates", ("session", "rank", "aid"))
    if "model" in candidates.columns and candidates.height:
        other = candidates["model"] != candidates["model"][0]
        if other.any():
            second = candidates["model"][int(other.arg_true()[0])]
            raise ValueError(
                f"candidates: several models ({candidates['model'][0]!r}, {second!r}, ...); "
                "evaluate one model at a time"
            )
    ranks = candidates["rank"].cast(pl.Int64)
    bad_rank = ranks < 1
    if bad_rank.any():
        row = int(bad_rank.arg_true()[0])
        raise ValueError(f"candidates: row {row}, field 'rank': {ranks[row]} (ranks are 1-based)")


def _candidates_for_scoring(candidates: pl.DataFrame, max_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique (session, aid) keys with their 1-based position in the session's list.

    The list is the exported one: duplicates keep their best rank, order by (rank, aid), and only the
    first ``max_rank`` positions are kept; ranks themselves are never trusted to be 1..K.
    """
    frame = candidates.select(
        pl.col("session").cast(pl.Int32), pl.col("aid").cast(pl.Int32), pl.col("rank").cast(pl.Int64)
    )
    key = _pair_key(frame["session"].to_numpy(), frame["aid"].to_numpy())
    best = (
        pl.DataFrame({"key": key, "rank": frame["rank"]})
        .sort(["key", "rank"])
        .filter((pl.col("key") != pl.col("key").shift(1)).fill_null(True))
    )
    best_key = best["key"].to_numpy()
    # (session, rank, aid) order: the key sorts by (session, aid), so a stable sort by
    # (session, rank) keeps the smaller aid first among tied ranks.
    order = np.lexsort((best["rank"].to_numpy(), best_key >> 32))
    best_key = best_key[order]
    session = best_key >> 32
    if session.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    position = np.arange(session.size) - np.repeat(starts, np.diff(np.r_[starts, session.size])) + 1
    keep = position <= max_rank
    kept_key, kept_position = best_key[keep], position[keep]
    order = np.argsort(kept_key, kind="stable")
    return kept_key[order], kept_position[order]


def _labels_for_scoring(labels: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``session, type, aid`` arrays sorted by (type, session, aid) without duplicate rows.

    Carts/orders are sets, so repeated rows collapse; two different click labels of one session are an
    error (the next click is a single aid).
    """
    _check_columns(labels, "labels", ("session", "type", "aid"))
    type_code = labels["type"].cast(pl.Int8)
    bad_type = ~type_code.is_in(list(EVENT_TYPE_CODES.values()))
    if bad_type.any():
        row = int(bad_type.arg_true()[0])
        raise ValueError(f"labels: row {row}, field 'type': unknown event type code {type_code[row]}")
    frame = labels.select(
        pl.col("session").cast(pl.Int32), type_code.alias("type"), pl.col("aid").cast(pl.Int32)
    ).sort(["type", "session", "aid"])
    session, event_type, aid = (frame[c].to_numpy() for c in ("session", "type", "aid"))
    same_group = (event_type[1:] == event_type[:-1]) & (session[1:] == session[:-1])
    keep = np.r_[True, ~(same_group & (aid[1:] == aid[:-1]))] if session.size else np.zeros(0, dtype=bool)
    session, event_type, aid = session[keep], event_type[keep], aid[keep]
    clicks = event_type == CLICK
    repeated = np.flatnonzero((session[1:] == session[:-1]) & clicks[1:] & clicks[:-1])
    if repeated.size:
        bad_session = session[repeated[0]]
        raise ValueError(
            f"labels: session {bad_session} has {int((session[clicks] == bad_session).sum())} different "
            "click labels (the next click is a single aid)"
        )
    return session, event_type, aid


def _label_ranks(cand_key: np.ndarray, cand_rank: np.ndarray, label_key: np.ndarray) -> np.ndarray:
    """Best rank of each label key among the sorted candidate keys; 0 = not recommended."""
    where = np.searchsorted(cand_key, label_key)
    inside = where < cand_key.size
    found = np.zeros(label_key.size, dtype=bool)
    found[inside] = cand_key[where[inside]] == label_key[inside]
    rank = np.zeros(label_key.size, dtype=np.int64)
    rank[found] = cand_rank[where[found]]
    return rank


def _label_positions(
    candidates: pl.DataFrame, labels: pl.DataFrame, max_rank: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels sorted by (type, session, aid), each with its position in the session's list (0 = absent
    from the first ``max_rank``), and the sessions that have any candidate list."""
    _check_candidates(candidates)
    candidate_type = (
        check_type_codes(candidates["type"], "candidates") if "type" in candidates.columns else None
    )
    session, event_type, aid = _labels_for_scoring(labels)
    label_key = _pair_key(session, aid)
    if candidate_type is None:
        cand_key, cand_rank = _candidates_for_scoring(candidates, max_rank)
        rank = _label_ranks(cand_key, cand_rank, label_key)
        cand_sessions = np.unique(cand_key >> 32).astype(np.int32)
    else:
        # Labels are sorted by type, so each type is a slice; one sorted key array per type's list.
        rank = np.zeros(label_key.size, dtype=np.int64)
        type_sessions = []
        for code in EVENT_TYPE_CODES.values():
            of_type = event_type == code
            type_key, type_rank = _candidates_for_scoring(candidates.filter(candidate_type == code), max_rank)
            rank[of_type] = _label_ranks(type_key, type_rank, label_key[of_type])
            type_sessions.append(type_key >> 32)
        cand_sessions = np.unique(np.concatenate(type_sessions)).astype(np.int32)
    return session, event_type, aid, rank, cand_sessions


def label_positions(candidates: pl.DataFrame, labels: pl.DataFrame, max_rank: int = 50) -> pl.DataFrame:
    """One row per distinct label: ``session, type, aid, position`` (1-based place in the session's
    list as :func:`evaluate` reads it; 0 when not among the first ``max_rank``).

    The raw material of recall curves and breakdowns: recall@K of type t is the number of rows with
    ``1 <= position <= K`` over the sum, per session, of ``min(K, labels of t)``.
    """
    session, event_type, aid, rank, _ = _label_positions(candidates, labels, max_rank)
    return pl.DataFrame(
        {"session": session, "type": event_type, "aid": aid, "position": rank},
        schema={"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32, "position": pl.Int32},
    )


def evaluate(
    candidates: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    k: int = 20,
    ks: Sequence[int] = (20,),
) -> dict[str, MetricValue]:
    """Score one model's ranked candidates against the long label table.

    Without a ``type`` column the same ranked list serves the three event types; with one (codes of
    ``gnn_recsys.data.schema``), each type's labels are scored against that type's list only and the
    next-click metrics use the clicks list.  Returns ``recall@{k}_{type}`` (``None`` when
    the type has no labels), ``score`` (weighted over the present types, weights renormalised),
    ``hr@K``, ``ndcg@K``, ``mrr@K`` for every K in ``ks`` (next click, ``None`` without click labels)
    and the counts behind them (``n_sessions``, ``n_sessions_{type}``, ``n_labels_{type}``,
    ``n_sessions_without_candidates``: labelled sessions with no candidate row of any type).

    Implementation: candidates and labels are reduced to one int64 key per (session, aid); the best
    rank of every label is found by ``searchsorted`` in the sorted candidate keys, and per-session
    sums are run-length reductions over the sorted labels (no multi-column hash joins, which dominate
    the cost at OTTO scale: 1.7M sessions x 20 candidates).
    """
    if k < 1 or any(K < 1 for K in ks):
        raise ValueError(f"evaluate: k and ks must be >= 1, got k={k}, ks={list(ks)}")
    max_rank = max(k, *ks)
    session, event_type, _, rank, cand_sessions = _label_positions(candidates, labels, max_rank)
    hit = (rank >= 1) & (rank <= k)

    # Per (type, session) groups: the labels are sorted by (type, session).
    if session.size:
        starts = np.flatnonzero(
            np.r_[True, (event_type[1:] != event_type[:-1]) | (session[1:] != session[:-1])]
        )
        n_true = np.diff(np.r_[starts, session.size])
        group_hits = np.add.reduceat(hit.astype(np.int64), starts)
        group_type = event_type[starts]
    else:
        n_true = group_hits = group_type = np.zeros(0, dtype=np.int64)

    result: dict[str, MetricValue] = {}
    present: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, code in EVENT_TYPE_CODES.items():
        of_type = group_type == code
        denominator = int(np.minimum(n_true[of_type], k).sum())
        counts[f"n_sessions_{name}"] = int(of_type.sum())
        counts[f"n_labels_{name}"] = int(n_true[of_type].sum())
        if denominator == 0:
            result[f"recall@{k}_{name}"] = None
        else:
            recall = float(group_hits[of_type].sum()) / denominator
            result[f"recall@{k}_{name}"] = recall
            present[name] = recall
    if present:
        weight_sum = sum(OTTO_WEIGHTS[name] for name in present)
        result["score"] = sum(OTTO_WEIGHTS[name] * r for name, r in present.items()) / weight_sum
    else:
        result["score"] = None

    # Next-click ranking metrics over the candidate list up to max(ks) (not cut at k).
    click_rank = rank[event_type == CLICK].astype(np.float64)
    for K in ks:
        if click_rank.size == 0:
            result[f"hr@{K}"] = result[f"ndcg@{K}"] = result[f"mrr@{K}"] = None
            continue
        in_top = (click_rank >= 1) & (click_rank <= K)
        safe = np.where(in_top, click_rank, 1.0)
        result[f"hr@{K}"] = float(in_top.mean())
        result[f"ndcg@{K}"] = float(np.where(in_top, 1.0 / np.log2(safe + 1.0), 0.0).mean())
        result[f"mrr@{K}"] = float(np.where(in_top, 1.0 / safe, 0.0).mean())

    labelled = np.unique(session)
    result["n_sessions"] = int(labelled.size)
    result.update(counts)
    result["n_sessions_without_candidates"] = int((~np.isin(labelled, cand_sessions)).sum())
    return result


def metrics_frame(results: Mapping[str, Mapping[str, MetricValue]]) -> pl.DataFrame:
    """One row per model (column ``model``) and one Float64 column per metric; missing -> null."""
    names = _metric_names(results)
    return pl.DataFrame(
        [
            {"model": model, **{name: _as_float(metrics.get(name)) for name in names}}
            for model, metrics in results.items()
        ],
        schema={"model": pl.String, **dict.fromkeys(names, pl.Float64)},
    )


def metrics_table(results: Mapping[str, Mapping[str, MetricValue]], digits: int = 4) -> str:
    """Plain-text table with one row per metric and one column per model, for logs and terminals."""
    names = _metric_names(results)
    models = list(results)
    header = ["metric", *models]
    body = [[name, *(_format(results[m].get(name), digits) for m in models)] for name in names]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def _metric_names(results: Mapping[str, Mapping[str, MetricValue]]) -> list[str]:
    names: dict[str, None] = {}
    for metrics in results.values():
        names.update(dict.fromkeys(metrics))
    return list(names)


def _as_float(value: MetricValue) -> float | None:
    return None if value is None else float(value)


def _format(value: MetricValue, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"
