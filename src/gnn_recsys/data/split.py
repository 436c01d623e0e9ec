"""Local validation split following the official OTTO protocol.

The official repository (otto-de/recsys-dataset, ``src/testset.py`` + ``src/labels.py``) builds the
local test set session by session in Python.  This module reproduces the same algorithm with
vectorised polars/numpy operations so that it runs on the full 12.9M-session / 217M-event train file:

1. ``max_ts`` is the latest event time; ``split_ts = max_ts - test_days * 86_400_000``.
2. A session whose first event is strictly after ``split_ts`` goes to test whole.  Every other
   session is trimmed to its events with ``ts < split_ts`` and kept when >= 2 events remain.
3. Test events whose aid never appears in the trimmed train set are removed; test sessions left with
   < 2 events are dropped.
4. Every test session of ``n`` events is cut after ``k`` events, ``k`` uniform in ``1..n-1``.  The
   labels are what follows the cut: the aid of the next click, the set of later cart aids and the set
   of later order aids.  A type without a later event has no label.

Departures from the official code (both deliberate):

* the official ``ground_truth`` tests ``if prev_labels['clicks']`` and therefore treats a next click on
  aid 0 as "no click label"; here aid 0 is an ordinary item and gets its label;
* the official code draws the cut with Python's ``random.randint`` one session at a time; here the cut
  points are drawn by :func:`draw_cut_points` with a seeded ``numpy.random.Generator`` in one call over
  the test sessions in ascending session order.  The split is therefore deterministic for a seed, but
  not bit-identical to a file produced by the official script.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from gnn_recsys.data.schema import CART, CLICK, EVENT_SCHEMA, EVENT_TYPE_CODES, MS_PER_DAY, ORDER

logger = logging.getLogger(__name__)

#: Long label table of the split: one row per true aid of a test session.
LABEL_SCHEMA: pl.Schema = pl.Schema({"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32})


def as_event_table(events: pl.DataFrame, name: str = "events") -> pl.DataFrame:
    """Validate ``events`` against the event-table contract and return it in canonical form.

    Returns exactly the columns ``session, aid, ts, type`` with the contract dtypes, sorted by session
    (stable, so the file order of events inside a session is kept).  ``type`` may also be given as the
    OTTO strings ``clicks/carts/orders``.  Anything that cannot be represented raises ``ValueError``
    naming the table, the column and the first offending row, rather than being dropped.
    """
    missing = [c for c in EVENT_SCHEMA if c not in events.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; got columns {events.columns}")
    frame = events.select(list(EVENT_SCHEMA))
    if frame.schema["type"] in (pl.String, pl.Categorical, pl.Enum):
        type_str = frame["type"].cast(pl.String)
        unknown = ~type_str.is_in(list(EVENT_TYPE_CODES)) & type_str.is_not_null()
        if unknown.any():
            row = int(unknown.arg_true()[0])
            raise ValueError(
                f"{name}: row {row}, field 'type': unknown event type {type_str[row]!r} "
                f"(expected one of {list(EVENT_TYPE_CODES)})"
            )
        frame = frame.with_columns(pl.col("type").cast(pl.String).replace_strict(EVENT_TYPE_CODES))
    for column, dtype in EVENT_SCHEMA.items():
        values = frame[column]
        if values.null_count():
            row = int(values.is_null().arg_true()[0])
            raise ValueError(
                f"{name}: row {row}, field {column!r}: null value ({values.null_count()} nulls in total)"
            )
        if values.dtype != dtype:
            cast = values.cast(dtype, strict=False)
            bad = cast.is_null()
            if bad.any():
                row = int(bad.arg_true()[0])
                raise ValueError(
                    f"{name}: row {row}, field {column!r}: value {values[row]!r} does not fit {dtype}"
                )
            frame = frame.with_columns(cast)
    bad_type = ~frame["type"].is_in(list(EVENT_TYPE_CODES.values()))
    if bad_type.any():
        row = int(bad_type.arg_true()[0])
        raise ValueError(
            f"{name}: row {row}, field 'type': event type code {frame['type'][row]} "
            f"(expected one of {sorted(EVENT_TYPE_CODES.values())})"
        )
    if not frame["session"].is_sorted():
        logger.info("%s: rows not grouped by ascending session; sorting them (stable)", name)
        frame = frame.sort("session", maintain_order=True)
    return frame


def session_runs(session: pl.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start row and length of each session in a session column sorted ascending.

    Works on contiguous runs, which is what the sorted event table guarantees; this is the cheap way
    to get per-session sizes and positions without a hash group-by.
    """
    values = session.to_numpy() if isinstance(session, pl.Series) else np.asarray(session)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lengths = np.diff(np.r_[starts, values.size])
    return starts, lengths


def positions_in_session(lengths: np.ndarray) -> np.ndarray:
    """0-based position of every row inside its session, given the run lengths in row order."""
    total = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)


def draw_cut_points(n_events: np.ndarray, seed: int) -> np.ndarray:
    """Number of events kept as input for each test session: uniform in ``1..n-1``.

    ``n_events`` lists the test sessions' lengths in ascending session order; one seeded
    ``numpy.random.Generator`` draws all cut points in a single call, so the result only depends on
    ``seed`` and the lengths.  Exposed so that reference implementations can reuse the same cuts.
    """
    n_events = np.asarray(n_events, dtype=np.int64)
    if n_events.size and n_events.min() < 2:
        raise ValueError(f"draw_cut_points: every session needs >= 2 events, got min {n_events.min()}")
    rng = np.random.default_rng(seed)
    return rng.integers(1, n_events, size=n_events.shape, dtype=np.int64)


@dataclass
class SplitResult:
    """Outcome of :func:`split_events` (tables follow docs/architecture.md)."""

    train: pl.DataFrame
    test_inputs: pl.DataFrame
    test_labels: pl.DataFrame
    split_ts: int
    max_ts: int
    counts: dict[str, int] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        """Counts of every stage of the split, for logging and sanity checks."""
        return {"max_ts": self.max_ts, "split_ts": self.split_ts, **self.counts}


def _keep_sessions_with_at_least(frame: pl.DataFrame, min_events: int) -> pl.DataFrame:
    _, lengths = session_runs(frame["session"])
    keep = np.repeat(lengths >= min_events, lengths)
    return frame.filter(pl.Series(keep))


def split_events(events: pl.DataFrame, test_days: int = 7, seed: int = 42) -> SplitResult:
    """Split an OTTO event table into trimmed train sessions, truncated test sessions and labels.

    See the module docstring for the algorithm and for the two documented departures from the
    official script.  ``events`` must follow the event-table contract.
    """
    if test_days < 0:
        raise ValueError(f"split_events: test_days must be >= 0, got {test_days}")
    frame = as_event_table(events)
    if frame.height == 0:
        raise ValueError("split_events: the event table is empty")
    max_ts = int(frame["ts"].max())  # type: ignore[arg-type]
    split_ts = max_ts - test_days * MS_PER_DAY
    counts: dict[str, int] = {"events": frame.height}

    # First event of each session in file order; the table is sorted by session, so a forward fill
    # from each session's first row gives it to every row without a group-by.
    first_ts = pl.when(pl.col("session").is_first_distinct()).then(pl.col("ts")).forward_fill()
    flagged = frame.with_columns((first_ts > split_ts).alias("_is_test"))
    counts["sessions"] = len(session_runs(frame["session"])[0])

    # Test: whole sessions that start after the split.
    test_full = flagged.filter(pl.col("_is_test")).drop("_is_test")
    counts["test_sessions_full"] = len(session_runs(test_full["session"])[0])
    counts["test_events_full"] = test_full.height

    # Train: every other session trimmed to ts < split_ts, kept with >= 2 remaining events.
    train_trimmed = flagged.filter(~pl.col("_is_test") & (pl.col("ts") < split_ts)).drop("_is_test")
    train = _keep_sessions_with_at_least(train_trimmed, 2)
    counts["train_sessions"] = len(session_runs(train["session"])[0])
    counts["train_events"] = train.height
    counts["train_sessions_dropped_short"] = (
        counts["sessions"] - counts["test_sessions_full"] - counts["train_sessions"]
    )

    # Test minus items never seen in the trimmed train set.
    known = test_full["aid"].is_in(train["aid"].unique())
    test_known = test_full.filter(known)
    counts["test_events_unknown_aid"] = test_full.height - test_known.height
    test = _keep_sessions_with_at_least(test_known, 2)
    _, lengths = session_runs(test["session"])
    counts["test_sessions"] = len(lengths)
    counts["test_sessions_dropped_short"] = counts["test_sessions_full"] - counts["test_sessions"]

    # Seeded random cut: the first k events are the input, the rest define the labels.
    cut = draw_cut_points(lengths, seed)
    position = positions_in_session(lengths)
    observed = pl.Series(position < np.repeat(cut, lengths))
    test_inputs = test.filter(observed)
    future = test.filter(~observed)
    counts["test_input_events"] = test_inputs.height
    counts["test_future_events"] = future.height

    clicks = future.filter(pl.col("type") == CLICK).unique(
        subset="session", keep="first", maintain_order=True
    )
    carts = future.filter(pl.col("type") == CART).unique(subset=["session", "aid"])
    orders = future.filter(pl.col("type") == ORDER).unique(subset=["session", "aid"])
    test_labels = (
        pl.concat([clicks, carts, orders]).select(list(LABEL_SCHEMA)).sort(["session", "type", "aid"])
    )
    for type_name, code in EVENT_TYPE_CODES.items():
        of_type = test_labels.filter(pl.col("type") == code)
        counts[f"label_sessions_{type_name}"] = int(of_type["session"].n_unique())
        counts[f"label_rows_{type_name}"] = of_type.height

    result = SplitResult(
        train=train,
        test_inputs=test_inputs,
        test_labels=test_labels,
        split_ts=split_ts,
        max_ts=max_ts,
        counts=counts,
    )
    logger.info("OTTO split (test_days=%d, seed=%d): %s", test_days, seed, result.stats())
    return result


def labels_to_official_json(labels: pl.DataFrame) -> list[dict[str, Any]]:
    """Convert the long label table to the official ``test_labels.jsonl`` records.

    One record per session (ascending) of the form
    ``{"session": s, "labels": {"clicks": aid, "carts": [...], "orders": [...]}}``; a type without
    labels is left out, as in the official file.  Cart/order lists are sorted ascending.
    """
    missing = [c for c in LABEL_SCHEMA if c not in labels.columns]
    if missing:
        raise ValueError(f"labels: missing column(s) {missing}; got columns {labels.columns}")
    clicks_per_session = labels.filter(pl.col("type") == CLICK)["session"].value_counts()
    several = clicks_per_session.filter(pl.col("count") > 1)
    if several.height:
        raise ValueError(
            f"labels: session {several['session'][0]} has {several['count'][0]} click labels (expected 1)"
        )
    per_session = (
        labels.sort(["session", "type", "aid"])
        .group_by("session", maintain_order=True)
        .agg(
            pl.col("aid").filter(pl.col("type") == CLICK).first().alias("clicks"),
            pl.col("aid").filter(pl.col("type") == CART).unique(maintain_order=True).alias("carts"),
            pl.col("aid").filter(pl.col("type") == ORDER).unique(maintain_order=True).alias("orders"),
        )
    )
    records: list[dict[str, Any]] = []
    for row in per_session.iter_rows(named=True):
        record_labels: dict[str, Any] = {}
        if row["clicks"] is not None:
            record_labels["clicks"] = row["clicks"]
        if row["carts"]:
            record_labels["carts"] = row["carts"]
        if row["orders"]:
            record_labels["orders"] = row["orders"]
        records.append({"session": row["session"], "labels": record_labels})
    return records
