"""Tests for candidate tables and the Kaggle submission export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from gnn_recsys.export.candidates import (
    CANDIDATE_SCHEMA,
    TYPED_CANDIDATE_SCHEMA,
    as_candidates,
    candidates_frame,
    to_submission,
    typed_candidates,
    write_submission,
)

CLICK, CART, ORDER = 0, 1, 2


def test_candidates_frame_drops_padding_and_ranks_densely() -> None:
    sessions = np.array([7, 3, 9])
    aids = np.array([[10, 11, 12], [20, -1, 21], [-1, -1, -1]])
    scores = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4], [0.3, 0.2, 0.1]])
    frame = candidates_frame(sessions, aids, scores, "gnn")
    assert frame.schema == CANDIDATE_SCHEMA
    assert frame.rows() == [
        (7, 1, 10, pytest.approx(0.9), "gnn"),
        (7, 2, 11, pytest.approx(0.8), "gnn"),
        (7, 3, 12, pytest.approx(0.7), "gnn"),
        (3, 1, 20, pytest.approx(0.6), "gnn"),
        (3, 2, 21, pytest.approx(0.4), "gnn"),  # the padded middle slot leaves no rank gap
    ]


def test_candidates_frame_accepts_tensors_and_no_scores() -> None:
    frame = candidates_frame(torch.tensor([1, 2]), torch.tensor([[5, 6], [7, -1]]), None, "m")
    assert frame.select("session", "rank", "aid", "score").rows() == [
        (1, 1, 5, 2.0),
        (1, 2, 6, 1.0),
        (2, 1, 7, 2.0),
    ]


def test_candidates_frame_rejects_bad_shapes_and_values() -> None:
    with pytest.raises(ValueError, match="expected session"):
        candidates_frame(np.array([1, 2]), np.array([[1, 2]]), None, "m")
    with pytest.raises(ValueError, match="does not match"):
        candidates_frame(np.array([1]), np.array([[1, 2]]), np.array([[1.0]]), "m")
    with pytest.raises(ValueError, match="padding"):
        candidates_frame(np.array([1]), np.array([[1, -2]]), None, "m")


def make_candidates(lists: dict[int, list[int]], model: str = "m") -> pl.DataFrame:
    rows = [(s, r + 1, a, 1.0 / (r + 1), model) for s, aids in lists.items() for r, a in enumerate(aids)]
    return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA, orient="row")


def test_to_submission_format_and_order() -> None:
    # Rows deliberately shuffled; sessions compared numerically (10 after 9).
    cands = make_candidates({10: [5, 6], 9: list(range(100, 125)), 0: [0, 3]}).reverse()
    submission = to_submission(cands, k=20)
    assert submission.columns == ["session_type", "labels"]
    assert submission["session_type"].to_list() == [
        "0_clicks", "0_carts", "0_orders",
        "9_clicks", "9_carts", "9_orders",
        "10_clicks", "10_carts", "10_orders",
    ]  # fmt: skip
    top20 = " ".join(str(a) for a in range(100, 120))
    assert submission["labels"].to_list() == ["0 3"] * 3 + [top20] * 3 + ["5 6"] * 3


def test_to_submission_dedupes_and_cuts() -> None:
    cands = make_candidates({1: [4, 4, 8, 2, 9]})
    assert to_submission(cands, k=3)["labels"].to_list() == ["4 8 2"] * 3
    with pytest.raises(ValueError, match="several models"):
        to_submission(pl.concat([make_candidates({1: [1]}, "a"), make_candidates({1: [1]}, "b")]))


def test_write_submission_csv(tmp_path: Path) -> None:
    path = tmp_path / "out" / "submission.csv"
    write_submission(make_candidates({12: [3, 1, 2]}), path)
    assert path.read_text().splitlines() == [
        "session_type,labels",
        "12_clicks,3 1 2",
        "12_carts,3 1 2",
        "12_orders,3 1 2",
    ]


def test_as_candidates_validation() -> None:
    good = make_candidates({1: [1, 2]})
    assert as_candidates(good.with_columns(pl.col("rank").cast(pl.Int64))).schema == CANDIDATE_SCHEMA
    with pytest.raises(ValueError, match="missing column"):
        as_candidates(good.drop("model"))
    with pytest.raises(ValueError, match="row 1, field 'rank'"):
        as_candidates(good.with_columns(pl.Series("rank", [1, 0], dtype=pl.Int32)))
    with pytest.raises(ValueError, match="row 0, field 'aid'"):
        as_candidates(good.with_columns(pl.Series("aid", [None, 2], dtype=pl.Int32)))


def test_empty_inputs_keep_the_schema() -> None:
    empty = candidates_frame(np.zeros(0, np.int32), np.zeros((0, 20), np.int64), np.zeros((0, 20)), "m")
    assert empty.schema == CANDIDATE_SCHEMA and empty.height == 0
    submission = to_submission(empty)
    assert submission.columns == ["session_type", "labels"] and submission.height == 0


def test_candidates_frame_with_event_type_gives_a_typed_table() -> None:
    frame = candidates_frame(np.array([4, 2]), np.array([[8, -1], [6, 7]]), None, "gnn", event_type=CART)
    assert frame.schema == TYPED_CANDIDATE_SCHEMA
    assert frame.columns == ["session", "type", "rank", "aid", "score", "model"]
    assert frame.rows() == [
        (4, CART, 1, 8, 2.0, "gnn"),
        (2, CART, 1, 6, 2.0, "gnn"),
        (2, CART, 2, 7, 1.0, "gnn"),
    ]
    for bad in (3, -1, True, "carts"):
        with pytest.raises(ValueError, match="is not a type code"):
            candidates_frame(np.array([1]), np.array([[1]]), None, "m", event_type=bad)


def test_typed_candidates_concatenates_and_sorts() -> None:
    orders = candidates_frame(np.array([9, 1]), np.array([[3, 4], [5, -1]]), None, "m")
    clicks = candidates_frame(np.array([9]), np.array([[6, 7]]), None, "m", event_type=CLICK)
    table = typed_candidates({ORDER: orders, CLICK: clicks})
    assert table.schema == TYPED_CANDIDATE_SCHEMA
    assert table.select("session", "type", "rank", "aid").rows() == [
        (1, ORDER, 1, 5),
        (9, CLICK, 1, 6),
        (9, CLICK, 2, 7),
        (9, ORDER, 1, 3),
        (9, ORDER, 2, 4),
    ]
    assert typed_candidates({}).schema == TYPED_CANDIDATE_SCHEMA
    with pytest.raises(
        ValueError, match=r"typed_candidates\[1\]: row 0, field 'type': 0 in the frame given for type 1"
    ):
        typed_candidates({CART: clicks})
    with pytest.raises(ValueError, match="event type 7 is not a type code"):
        typed_candidates({7: orders})


def make_typed(lists_by_type: dict[int, dict[int, list[int]]], model: str = "m") -> pl.DataFrame:
    return typed_candidates({code: make_candidates(lists, model) for code, lists in lists_by_type.items()})


def test_to_submission_uses_each_types_list() -> None:
    typed = make_typed(
        {
            ORDER: {3: [30, 31], 10: [1, 2, 3, 4]},
            CLICK: {10: [7, 7, 8], 3: [9]},  # duplicate 7 in one list counts once
            CART: {10: [7, 5]},  # the same aid in another type's list is kept there
        }
    ).reverse()
    submission = to_submission(typed, k=3)
    assert submission.rows() == [
        ("3_clicks", "9"),
        ("3_carts", ""),  # no carts list for session 3: empty labels
        ("3_orders", "30 31"),
        ("10_clicks", "7 8"),
        ("10_carts", "7 5"),
        ("10_orders", "1 2 3"),
    ]


def test_to_submission_typed_with_one_list_copied_matches_untyped() -> None:
    lists = {10: [5, 6], 9: list(range(100, 125)), 0: [0, 3, 0]}
    typed = make_typed({code: lists for code in (CLICK, CART, ORDER)})
    assert to_submission(typed).rows() == to_submission(make_candidates(lists)).rows()


def test_write_submission_typed_csv(tmp_path: Path) -> None:
    path = tmp_path / "submission.csv"
    write_submission(make_typed({CLICK: {12: [3, 1]}, ORDER: {12: [2]}}), path)
    assert path.read_text().splitlines() == [
        "session_type,labels",
        "12_clicks,3 1",
        '12_carts,""',
        "12_orders,2",
    ]


def test_as_candidates_typed_validation() -> None:
    good = make_typed({CLICK: {1: [1, 2]}, CART: {1: [3]}})
    wide = good.with_columns(pl.col("type").cast(pl.Int64)).select(
        "model", "aid", "session", "type", "rank", "score"
    )
    assert as_candidates(wide).schema == TYPED_CANDIDATE_SCHEMA
    with pytest.raises(ValueError, match="row 2, field 'type': null in a typed table"):
        as_candidates(good.with_columns(pl.Series("type", [0, 0, None], dtype=pl.Int8)))
    with pytest.raises(ValueError, match="row 1, field 'type': unknown event type code 3"):
        as_candidates(good.with_columns(pl.Series("type", [0, 3, 1], dtype=pl.Int8)))
    with pytest.raises(ValueError, match="row 0, field 'type': 300 does not fit Int8"):
        as_candidates(good.with_columns(pl.Series("type", [300, 0, 1], dtype=pl.Int64)))
    with pytest.raises(ValueError, match="row 1, field 'type'"):
        to_submission(good.with_columns(pl.Series("type", [0, None, 1], dtype=pl.Int8)))
