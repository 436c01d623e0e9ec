"""Candidate tables and the Kaggle submission file.

Every model (baselines and the GNN) hands over its top-K recommendations as the long candidates
table of docs/architecture.md: ``session Int32, rank Int32 (1-based), aid Int32, score Float32,
model Utf8``.  This module builds that table from dense ``[n_sessions, K]`` arrays and turns it into
the Kaggle ``session_type,labels`` submission (same ranked list for clicks, carts and orders).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gnn_recsys.data.schema import EVENT_TYPES

logger = logging.getLogger(__name__)

CANDIDATE_SCHEMA: pl.Schema = pl.Schema(
    {"session": pl.Int32, "rank": pl.Int32, "aid": pl.Int32, "score": pl.Float32, "model": pl.String}
)
SUBMISSION_SCHEMA: pl.Schema = pl.Schema({"session_type": pl.String, "labels": pl.String})
#: Value marking an empty slot in the dense aid matrix given to :func:`candidates_frame`.
PAD_AID = -1


def as_candidates(candidates: pl.DataFrame, name: str = "candidates") -> pl.DataFrame:
    """Validate a candidates table and return it with the contract's columns and dtypes.

    Raises ``ValueError`` naming the column and the first offending row for missing columns, nulls,
    values that do not fit the dtype, and ranks below 1.
    """
    missing = [c for c in CANDIDATE_SCHEMA if c not in candidates.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; got columns {candidates.columns}")
    frame = candidates.select(list(CANDIDATE_SCHEMA))
    for column, dtype in CANDIDATE_SCHEMA.items():
        values = frame[column]
        if values.null_count():
            row = int(values.is_null().arg_true()[0])
            raise ValueError(f"{name}: row {row}, field {column!r}: null value")
        if values.dtype != dtype:
            cast = values.cast(dtype, strict=False)
            if cast.null_count():
                row = int(cast.is_null().arg_true()[0])
                raise ValueError(f"{name}: row {row}, field {column!r}: {values[row]!r} does not fit {dtype}")
            frame = frame.with_columns(cast)
    bad_rank = frame["rank"] < 1
    if bad_rank.any():
        row = int(bad_rank.arg_true()[0])
        raise ValueError(f"{name}: row {row}, field 'rank': {frame['rank'][row]} (ranks are 1-based)")
    return frame


def candidates_frame(
    session: Any,
    aid_matrix: Any,
    score_matrix: Any | None,
    model: str,
) -> pl.DataFrame:
    """Long candidates table from dense per-session arrays (e.g. a GNN's top-K output).

    ``session`` is ``[n]``, ``aid_matrix`` and ``score_matrix`` are ``[n, K]`` (NumPy arrays or CPU
    tensors), row ``i`` ordered best first.  Slots holding ``-1`` in ``aid_matrix`` are padding and
    are dropped; ranks are the positions among the remaining slots (1, 2, ...), so a padded slot in
    the middle does not leave a gap.  ``score_matrix=None`` scores by rank (``K - position``).
    """
    sessions = np.asarray(session)
    aids = np.asarray(aid_matrix)
    if aids.ndim != 2 or sessions.ndim != 1 or aids.shape[0] != sessions.shape[0]:
        raise ValueError(
            f"candidates_frame: expected session [n] and aid_matrix [n, K], got {sessions.shape} and {aids.shape}"
        )
    if score_matrix is None:
        scores = np.broadcast_to(np.arange(aids.shape[1], 0, -1, dtype=np.float32), aids.shape)
    else:
        scores = np.asarray(score_matrix, dtype=np.float32)
        if scores.shape != aids.shape:
            raise ValueError(
                f"candidates_frame: score_matrix {scores.shape} does not match aid_matrix {aids.shape}"
            )
    if aids.size and (aids.min() < PAD_AID or aids.max() > np.iinfo(np.int32).max):
        raise ValueError(
            f"candidates_frame: aids must be in 0..2^31-1 or {PAD_AID} for padding, "
            f"got range {aids.min()}..{aids.max()}"
        )
    valid = aids != PAD_AID
    ranks = np.cumsum(valid, axis=1, dtype=np.int32)
    rows = np.nonzero(valid)
    return pl.DataFrame(
        {
            "session": sessions[rows[0]].astype(np.int32, copy=False),
            "rank": ranks[valid],
            "aid": aids[valid].astype(np.int32, copy=False),
            "score": scores[valid],
            "model": np.full(int(valid.sum()), model, dtype=object),
        },
        schema=CANDIDATE_SCHEMA,
    )


def to_submission(candidates: pl.DataFrame, k: int = 20) -> pl.DataFrame:
    """Kaggle submission rows ``session_type, labels`` (e.g. ``"42_clicks", "12 34 56"``).

    One row per session and event type, the top ``k`` distinct aids by rank separated by spaces and the
    same list for clicks, carts and orders; rows sorted by session, then clicks, carts, orders, as in
    ``sample_submission.csv``.  A duplicate aid keeps its best rank (ties in rank: smaller aid first).
    Only sessions present in ``candidates`` get rows.

    Built with sorts and a dense ``[n_sessions, k]`` matrix rather than hash group-bys, which are
    several times slower on the 33M rows of a full OTTO candidate table.
    """
    if k < 1:
        raise ValueError(f"to_submission: k must be >= 1, got {k}")
    frame = as_candidates(candidates)
    if frame.height:
        other = frame["model"] != frame["model"][0]
        if other.any():
            second = frame["model"][int(other.arg_true()[0])]
            raise ValueError(
                f"candidates: several models ({frame['model'][0]!r}, {second!r}, ...); export one model at a time"
            )
    pair_key = (pl.col("session").cast(pl.Int64) * (1 << 32) + pl.col("aid").cast(pl.Int64)).alias("key")
    by_key = frame.select("session", "rank", "aid", pair_key).sort(["key", "rank"])
    best = by_key.filter((pl.col("key") != pl.col("key").shift(1)).fill_null(True))
    if best.height < frame.height:
        logger.warning(
            "to_submission: %d duplicate (session, aid) rows; keeping each aid's best rank",
            frame.height - best.height,
        )
    ordered = best.sort(["session", "rank", "aid"])
    session = ordered["session"].to_numpy()
    starts = (
        np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if session.size else np.zeros(0, np.int64)
    )
    lengths = np.diff(np.r_[starts, session.size])
    position = np.arange(session.size) - np.repeat(starts, lengths)
    top = position < k
    row = np.repeat(np.arange(starts.size), lengths)[top]
    aids = np.zeros((starts.size, k), dtype=np.int64)
    aids[row, position[top]] = ordered["aid"].to_numpy()[top]
    filled = np.minimum(lengths, k)
    columns = pl.DataFrame({f"a{j}": aids[:, j] for j in range(k)} | {"filled": filled})
    labels = columns.select(
        pl.concat_str(
            [pl.when(pl.col("filled") > j).then(pl.col(f"a{j}").cast(pl.String)) for j in range(k)],
            separator=" ",
            ignore_nulls=True,
        ).alias("labels")
    )["labels"]
    n_types = len(EVENT_TYPES)
    repeat = np.repeat(np.arange(starts.size), n_types)
    suffix = pl.Series(
        np.tile(np.array([f"_{name}" for name in EVENT_TYPES], dtype=object), starts.size), dtype=pl.String
    )
    session_str = pl.Series(session[starts]).cast(pl.String).gather(repeat)
    return pl.DataFrame(
        {"session_type": session_str + suffix, "labels": labels.gather(repeat)}, schema=SUBMISSION_SCHEMA
    )


def write_submission(candidates: pl.DataFrame, path: str | Path, k: int = 20) -> pl.DataFrame:
    """Write the Kaggle submission CSV (header ``session_type,labels``) and return its rows."""
    submission = to_submission(candidates, k=k)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    submission.write_csv(path)
    logger.info("wrote %d submission rows to %s", submission.height, path)
    return submission
