"""Candidate tables and the Kaggle submission file.

Every model (baselines and the GNN) hands over its top-K recommendations as the long candidates
table of docs/architecture.md: ``session Int32, rank Int32 (1-based), aid Int32, score Float32,
model Utf8``, optionally with ``type Int8`` after ``session``.  Without ``type`` one ranked list per
session serves clicks, carts and orders; with it every (session, type) has its own list (OTTO is
multi-objective, so a model may rank differently per type).  This module builds that table from
dense ``[n_sessions, K]`` arrays and turns it into the Kaggle ``session_type,labels`` submission.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from gnn_recsys.data.schema import EVENT_TYPE_CODES, EVENT_TYPES, check_type_codes

logger = logging.getLogger(__name__)

CANDIDATE_SCHEMA: pl.Schema = pl.Schema(
    {"session": pl.Int32, "rank": pl.Int32, "aid": pl.Int32, "score": pl.Float32, "model": pl.String}
)
#: The same table with one ranked list per (session, type); ``type`` codes as in the event table.
TYPED_CANDIDATE_SCHEMA: pl.Schema = pl.Schema(
    {
        "session": pl.Int32,
        "type": pl.Int8,
        "rank": pl.Int32,
        "aid": pl.Int32,
        "score": pl.Float32,
        "model": pl.String,
    }
)
SUBMISSION_SCHEMA: pl.Schema = pl.Schema({"session_type": pl.String, "labels": pl.String})
#: Value marking an empty slot in the dense aid matrix given to :func:`candidates_frame`.
PAD_AID = -1


def _check_type_code(event_type: Any, name: str) -> int:
    """``event_type`` as a plain int code, or ``ValueError`` naming the valid codes."""
    valid = set(EVENT_TYPE_CODES.values())
    if (
        isinstance(event_type, bool)
        or not isinstance(event_type, int | np.integer)
        or event_type not in valid
    ):
        raise ValueError(
            f"{name}: event type {event_type!r} is not a type code; expected one of {dict(EVENT_TYPE_CODES)}"
        )
    return int(event_type)


def as_candidates(candidates: pl.DataFrame, name: str = "candidates") -> pl.DataFrame:
    """Validate a candidates table and return it with the contract's columns and dtypes.

    A table with a ``type`` column is typed and comes back in ``TYPED_CANDIDATE_SCHEMA`` order;
    without it, in ``CANDIDATE_SCHEMA`` order.  Raises ``ValueError`` naming the column and the first
    offending row for missing columns, nulls (a null ``type`` is an untyped row mixed into a typed
    table), values that do not fit the dtype, unknown type codes and ranks below 1.
    """
    schema = TYPED_CANDIDATE_SCHEMA if "type" in candidates.columns else CANDIDATE_SCHEMA
    missing = [c for c in schema if c not in candidates.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; got columns {candidates.columns}")
    frame = candidates.select(list(schema))
    for column, dtype in schema.items():
        values = frame[column]
        if values.null_count():
            row = int(values.is_null().arg_true()[0])
            if column == "type":
                check_type_codes(values, name)  # raises: a null type is an untyped row
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
    if "type" in schema:
        check_type_codes(frame["type"], name)
    return frame


def candidates_frame(
    session: Any,
    aid_matrix: Any,
    score_matrix: Any | None,
    model: str,
    event_type: int | None = None,
) -> pl.DataFrame:
    """Long candidates table from dense per-session arrays (e.g. a GNN's top-K output).

    ``session`` is ``[n]``, ``aid_matrix`` and ``score_matrix`` are ``[n, K]`` (NumPy arrays or CPU
    tensors), row ``i`` ordered best first.  Slots holding ``-1`` in ``aid_matrix`` are padding and
    are dropped; ranks are the positions among the remaining slots (1, 2, ...), so a padded slot in
    the middle does not leave a gap.  ``score_matrix=None`` scores by rank (``K - position``).
    ``event_type`` (a code of ``gnn_recsys.data.schema``) marks every row as that type's list and
    gives a typed table; combine the per-type tables with :func:`typed_candidates`.
    """
    code = None if event_type is None else _check_type_code(event_type, "candidates_frame")
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
    # The model name as one literal column, not one Python string per row (~83M rows per type at OTTO scale).
    frame = pl.DataFrame(
        {
            "session": sessions[rows[0]].astype(np.int32, copy=False),
            "rank": ranks[valid],
            "aid": aids[valid].astype(np.int32, copy=False),
            "score": scores[valid],
        }
    ).with_columns(pl.lit(model).alias("model"))
    frame = frame.cast(dict(CANDIDATE_SCHEMA)).select(list(CANDIDATE_SCHEMA))
    if code is None:
        return frame
    return frame.with_columns(pl.lit(code, pl.Int8).alias("type")).select(list(TYPED_CANDIDATE_SCHEMA))


def typed_candidates(frames_by_type: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """One typed candidates table from one table per event type code, sorted by session, type, rank.

    Each frame may be untyped (it gets its key as ``type``) or already typed with that key in every
    row; any other ``type`` value is an error rather than a silent relabel.  A type left out simply
    has no lists (its sessions score 0 hits for it and export empty labels).
    """
    parts = []
    for event_type, frame in frames_by_type.items():
        code = _check_type_code(event_type, "typed_candidates")
        name = f"typed_candidates[{code}]"
        checked = as_candidates(frame, name=name)
        if "type" in checked.columns:
            wrong = checked["type"] != code
            if wrong.any():
                row = int(wrong.arg_true()[0])
                raise ValueError(
                    f"{name}: row {row}, field 'type': {checked['type'][row]} in the frame given for type {code}"
                )
        else:
            checked = checked.with_columns(pl.lit(code, pl.Int8).alias("type"))
        parts.append(checked.select(list(TYPED_CANDIDATE_SCHEMA)))
    if not parts:
        return pl.DataFrame(schema=TYPED_CANDIDATE_SCHEMA)
    return pl.concat(parts).sort(["session", "type", "rank"], maintain_order=True)


def to_submission(candidates: pl.DataFrame, k: int = 20) -> pl.DataFrame:
    """Kaggle submission rows ``session_type, labels`` (e.g. ``"42_clicks", "12 34 56"``).

    One row per session and event type, the top ``k`` distinct aids by rank separated by spaces; rows
    sorted by session, then clicks, carts, orders, as in ``sample_submission.csv``.  Without a
    ``type`` column the session's one list fills all three rows; with it each row takes its own
    type's list, and a type without a list for that session gets empty labels (counted in a log
    warning).  A duplicate aid keeps its best rank (ties in rank: smaller aid first).  Only sessions
    present in ``candidates`` get rows.

    Built with sorts and a dense ``[n_lists, k]`` matrix rather than hash group-bys, which are
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
    n_types = len(EVENT_TYPES)
    if "type" not in frame.columns:
        sessions, labels = _labels_per_session(frame, k, "")
        labels = labels.gather(np.repeat(np.arange(sessions.size), n_types))
    else:
        # One pass of the untyped machinery per type (single int64 sort keys stay fast; sorting on
        # (type, session, aid) columns together is several times slower), then each list goes to
        # its (session, type) slot.
        per_type = [
            _labels_per_session(frame.filter(pl.col("type") == code), k, f"{name} ")
            for name, code in EVENT_TYPE_CODES.items()
        ]
        sessions = np.unique(np.concatenate([type_sessions for type_sessions, _ in per_type]))
        slot = np.concatenate(
            [
                np.searchsorted(sessions, type_sessions) * n_types + code
                for code, (type_sessions, _) in enumerate(per_type)
            ]
        )
        missing = sessions.size * n_types - slot.size
        if missing:
            logger.warning(
                "to_submission: %d (session, type) rows have no list in the typed candidates; "
                "writing them with empty labels",
                missing,
            )
        labels = pl.repeat("", sessions.size * n_types, eager=True, dtype=pl.String).scatter(
            slot, pl.concat([type_labels for _, type_labels in per_type])
        )
    suffix = pl.Series([f"_{name}" for name in EVENT_TYPES], dtype=pl.String).gather(
        np.tile(np.arange(n_types), sessions.size)
    )
    session_str = pl.Series(sessions).cast(pl.String).gather(np.repeat(np.arange(sessions.size), n_types))
    return pl.DataFrame({"session_type": session_str + suffix, "labels": labels}, schema=SUBMISSION_SCHEMA)


def _labels_per_session(frame: pl.DataFrame, k: int, list_name: str) -> tuple[np.ndarray, pl.Series]:
    """Sorted sessions of ``frame`` (one list each) and their top-``k`` distinct aids as labels."""
    pair_key = (pl.col("session").cast(pl.Int64) * (1 << 32) + pl.col("aid").cast(pl.Int64)).alias("key")
    by_key = frame.select("session", "rank", "aid", pair_key).sort(["key", "rank"])
    best = by_key.filter((pl.col("key") != pl.col("key").shift(1)).fill_null(True))
    if best.height < frame.height:
        logger.warning(
            "to_submission: %d duplicate (session, aid) rows in the %scandidates; keeping each aid's best rank",
            frame.height - best.height,
            list_name,
        )
    ordered = best.sort(["session", "rank", "aid"])
    session = ordered["session"].to_numpy()
    starts = (
        np.flatnonzero(np.r_[True, session[1:] != session[:-1]]) if session.size else np.zeros(0, np.int64)
    )
    return session[starts], _top_aids_as_labels(ordered["aid"].to_numpy(), starts, k)


def _top_aids_as_labels(aid: np.ndarray, starts: np.ndarray, k: int) -> pl.Series:
    """Space-separated first ``k`` aids of each run ``aid[starts[i]:starts[i + 1]]`` (runs best first)."""
    lengths = np.diff(np.r_[starts, aid.size])
    position = np.arange(aid.size) - np.repeat(starts, lengths)
    top = position < k
    row = np.repeat(np.arange(starts.size), lengths)[top]
    aids = np.zeros((starts.size, k), dtype=np.int64)
    aids[row, position[top]] = aid[top]
    filled = np.minimum(lengths, k)
    columns = pl.DataFrame({f"a{j}": aids[:, j] for j in range(k)} | {"filled": filled})
    return columns.select(
        pl.concat_str(
            [pl.when(pl.col("filled") > j).then(pl.col(f"a{j}").cast(pl.String)) for j in range(k)],
            separator=" ",
            ignore_nulls=True,
        ).alias("labels")
    )["labels"]


def write_submission(candidates: pl.DataFrame, path: str | Path, k: int = 20) -> pl.DataFrame:
    """Write the Kaggle submission CSV (header ``session_type,labels``) and return its rows."""
    submission = to_submission(candidates, k=k)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    submission.write_csv(path)
    logger.info("wrote %d submission rows to %s", submission.height, path)
    return submission
