"""Recall curves, recall by session length, popularity deciles and the figures drawn from them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gnn_recsys.evaluation.analysis import (
    popularity_deciles,
    recall_at_k_curve,
    recall_by_session_length,
    recommendation_popularity,
)
from gnn_recsys.evaluation.metrics import evaluate
from gnn_recsys.evaluation.plots import (
    popularity_figure,
    recall_at_k_figure,
    recall_by_length_figure,
    training_curves_figure,
)
from gnn_recsys.pipelines.evaluation.nodes import training_curves_plot

CLICK, CART, ORDER = 0, 1, 2
CANDIDATE_SCHEMA = {
    "session": pl.Int32,
    "rank": pl.Int32,
    "aid": pl.Int32,
    "score": pl.Float32,
    "model": pl.String,
}
LABEL_SCHEMA = {"session": pl.Int32, "type": pl.Int8, "aid": pl.Int32}


def candidates(lists: dict[int, list[int]]) -> pl.DataFrame:
    rows = [(s, r + 1, aid, 0.0, "m") for s, aids in lists.items() for r, aid in enumerate(aids)]
    return pl.DataFrame(rows, schema=CANDIDATE_SCHEMA, orient="row")


def labels(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LABEL_SCHEMA, orient="row")


def random_case(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    lists = {s: rng.integers(0, 80, size=int(rng.integers(1, 60))).tolist() for s in range(200)}
    rows = [(s, CLICK, int(rng.integers(0, 80))) for s in range(200)]
    rows += [(s, t, int(a)) for t in (CART, ORDER) for s in range(0, 200, 3) for a in rng.integers(0, 80, 30)]
    return candidates(lists), labels(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_recall_curve_agrees_with_the_evaluator_at_every_k(seed: int) -> None:
    cands, labs = random_case(seed)
    curve = recall_at_k_curve(cands, labs, max_k=50)
    assert curve["k"].unique().sort().to_list() == list(range(1, 51))
    for k in (1, 7, 20, 50):
        expected = evaluate(cands, labs, k=k, ks=(k,))
        for name in ("clicks", "carts", "orders"):
            got = curve.filter((pl.col("k") == k) & (pl.col("type") == name))["recall"].item()
            assert got == pytest.approx(expected[f"recall@{k}_{name}"])
    # clicks (one label per session) can only grow with K
    clicks = curve.filter(pl.col("type") == "clicks")["recall"].to_numpy()
    assert (np.diff(clicks) >= 0).all()


def test_recall_by_session_length_by_hand() -> None:
    inputs = pl.DataFrame(
        {"session": [1, 2, 2, 3, 3, 3, 3, 3], "aid": [0] * 8, "ts": list(range(8)), "type": [0] * 8},
        schema={"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8},
    )
    cands = candidates({1: [10, 11], 2: [20], 3: [30, 31]})
    labs = labels([(1, CLICK, 11), (2, CLICK, 99), (3, CLICK, 30), (3, ORDER, 31), (3, ORDER, 32)])
    frame = recall_by_session_length(cands, labs, inputs, k=1, bounds=(1, 2, 4))
    got = {(r["length"], r["type"]): (r["sessions"], r["recall"]) for r in frame.iter_rows(named=True)}
    # session 1 (1 event): 11 is at position 2 > k; session 2 (2 events): miss; session 3 (5 events): hit
    # its click at position 1, orders {31, 32} with k=1 -> 0 hits / min(1, 2)
    assert got == {("1", "clicks"): (1, 0.0), ("2", "clicks"): (1, 0.0), ("5+", "clicks"): (1, 1.0),
                   ("5+", "orders"): (1, 0.0)}  # fmt: skip
    assert frame["length"].to_list() == ["1", "2", "5+", "5+"]
    with pytest.raises(ValueError, match="labelled session 3 has no input events"):
        recall_by_session_length(cands, labs, inputs.filter(pl.col("session") != 3))


def test_popularity_deciles_and_recommendation_shares() -> None:
    # aid i has 20 - i train events: aid 0 is the most popular of 20 items, two items per decile
    train = pl.DataFrame({"aid": [i for i in range(20) for _ in range(20 - i)]}, schema={"aid": pl.Int32})
    deciles = popularity_deciles(train)
    assert dict(deciles.iter_rows()) == {i: i // 2 + 1 for i in range(20)}
    cands = candidates({1: [0, 1, 0, 19, 500], 2: [2]})  # 0 twice counts once; 500 has no train events
    share = recommendation_popularity(cands, deciles, k=3)
    assert share["decile"].to_list() == [*(str(d) for d in range(1, 11)), "unseen"]
    by_decile = dict(share.iter_rows())
    # slots: session 1 -> [0, 1, 19] (k=3 after dedupe), session 2 -> [2]
    assert by_decile["1"] == pytest.approx(2 / 4) and by_decile["2"] == pytest.approx(1 / 4)
    assert by_decile["10"] == pytest.approx(1 / 4) and by_decile["unseen"] == 0.0
    assert sum(by_decile.values()) == pytest.approx(1.0)


def test_figures_draw_one_line_per_model_and_type() -> None:
    cands, labs = random_case(2)
    curve = pl.concat(
        [recall_at_k_curve(cands, labs, 10).with_columns(pl.lit(m).alias("model")) for m in ("a", "b")]
    )
    figure = recall_at_k_figure(curve)
    assert [len(ax.get_lines()) for ax in figure.axes] == [3, 3, 3]  # two models + the cut-off line
    history = {"best_epoch": 2, "epochs": [{"epoch": 1, "train_loss": 3.0, "val_recall@20": 0.2},
                                           {"epoch": 2, "train_loss": 2.5, "val_recall@20": 0.3}]}  # fmt: skip
    loss_ax, val_ax = training_curves_figure(history).axes
    assert list(loss_ax.get_lines()[0].get_ydata()) == [3.0, 2.5]
    assert list(val_ax.get_lines()[0].get_ydata()) == [0.2, 0.3]
    assert training_curves_figure({"epochs": []})._suptitle.get_text().endswith("no epochs recorded")
    length = pl.DataFrame({"length": ["1", "2"], "type": ["clicks"] * 2, "sessions": [3, 4], "recall": [0.5, 0.6],
                           "model": ["a"] * 2})  # fmt: skip
    assert len(recall_by_length_figure(length).axes[0].get_lines()) == 1
    shares = pl.DataFrame({"decile": ["1", "2"], "share": [0.7, 0.3], "model": ["a", "a"]})
    assert len(popularity_figure(shares).axes[0].patches) == 2


def test_resumed_epochs_are_logged_again_for_the_rerun() -> None:
    """A rerun that resumed at epoch 3 logs epochs 1-2 from the history; epoch 3 its loop logged."""
    history = {
        "start_epoch": 3,
        "best_epoch": 3,
        "epochs": [
            {"epoch": 1.0, "train_loss": 5.0, "val_recall@20": 0.2},
            {"epoch": 2.0, "train_loss": 4.0, "val_recall@20": 0.3},
            {"epoch": 3.0, "train_loss": 3.5, "val_recall@20": 0.35},
        ],
    }
    figure, curves = training_curves_plot(history)
    assert curves == {
        "train_loss": [{"value": 5.0, "step": 1}, {"value": 4.0, "step": 2}],
        "val_recall_at_20": [{"value": 0.2, "step": 1}, {"value": 0.3, "step": 2}],
    }
    assert list(figure.axes[0].get_lines()[0].get_ydata()) == [5.0, 4.0, 3.5]
    assert training_curves_plot(history | {"start_epoch": 1})[1] == {}
